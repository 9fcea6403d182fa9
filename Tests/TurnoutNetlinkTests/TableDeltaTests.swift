import Testing
import TurnoutModel
import TurnoutNetlink
import TurnoutRules

/// How `TableDelta` chooses between patching and rebuilding, on lowered tables (no kernel).
@Suite("Table delta: patch or rebuild")
struct TableDeltaTests {
    /// `count` services (numbered from `start`), each split `first:second` over two endpoints;
    /// the first `changed` of them split `newSplit` instead.
    static func splits(_ count: Int, from start: Int = 0, first: UInt32, second: UInt32, changing changed: Int = 0, to newSplit: (UInt32, UInt32) = (0, 0)) -> WireTable {
        let services = (start..<start + count).map { index in
            let (high, low) = (index / 250, index % 250 + 1)
            let weights = index - start < changed ? newSplit : (first, second)
            return Service(name: ServiceName("split/svc-\(index)")!, addresses: [IPAddress("10.96.\(high).\(low)")!],
                           ports: [ServicePort(name: "http", port: 80, targetPort: 8080)],
                           endpoints: [Endpoint(address: IPAddress("10.1.\(high).\(low)")!, weight: weights.0),
                                       Endpoint(address: IPAddress("10.2.\(high).\(low)")!, weight: weights.1)])
        }
        return NftablesLowering.lower(NftablesServiceCompiler.compile(ServiceTable(services: services)))
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var what: String
        var weights: (first: UInt32, second: UInt32)
        var changedTo: (UInt32, UInt32)
        var changed: Int
        var rebuild: Bool
        var testDescription: String { what }
    }

    @Test("1,000 services, some splits changed → patch or rebuild", arguments: [
        // 997:3 → 993:7 moves one range boundary: two deletions from a 2,000-element pipapo set.
        Case(what: "one fine split changed (pipapo) → patch", weights: (997, 3), changedTo: (993, 7), changed: 1, rebuild: false),
        // Every range changes: 2,000 deletions × 2,000 elements, far above a rebuild's cost.
        Case(what: "every fine split changed (pipapo) → rebuild", weights: (997, 3), changedTo: (993, 7), changed: 1_000, rebuild: true),
        // 997:3 → 998:3 draws mod 1,001: every service moves to a new map and the old one is
        // deleted whole, which costs no per-element rewrite.
        Case(what: "every fine split changes modulus (pipapo) → patch", weights: (997, 3), changedTo: (998, 3), changed: 1_000, rebuild: false),
        // Hash-map deletions cost the same at any size: patched however many change.
        Case(what: "every 9:1 split changed to 8:2 (hash map) → patch", weights: (9, 1), changedTo: (8, 2), changed: 1_000, rebuild: false),
    ])
    func choice(_ example: Case) {
        let installed = Self.splits(1_000, first: example.weights.first, second: example.weights.second)
        let desired = Self.splits(1_000, first: example.weights.first, second: example.weights.second,
                                  changing: example.changed, to: example.changedTo)
        let delta = TableDelta(installed: installed, desired: desired)
        if example.rebuild {
            guard case .rebuild(let reason) = delta.plan else { Issue.record("expected a rebuild, got \(delta.plan)"); return }
            #expect(reason.contains("interval maps"), "\(reason)")
        } else {
            #expect(delta.plan == .patch)
        }
    }

    /// 1:1 splits draw 2 slots each from `endpoint-picks4-mod2`: 408 services hold 816 of its
    /// 1,024. The services that leave keep their slots until the retire, beside those of the
    /// services that join.
    @Test("816 of 1,024 slots held, n services leave and n others join → patch while both fit, rebuild when the kernel would refuse the overflow", arguments: [
        (104, false),  // 816 + 208 = 1,024
        (105, true),  // 816 + 210 = 1,026
    ])
    func overflow(swapped: Int, rebuild: Bool) throws {
        let installed = Self.splits(408, first: 1, second: 1)
        let desired = Self.splits(408, from: swapped, first: 1, second: 1)
        #expect(installed.set(named: "endpoint-picks4-mod2")?.capacity == 1024)
        #expect(desired.set(named: "endpoint-picks4-mod2")?.capacity == 1024)
        let delta = TableDelta(installed: installed, desired: desired)
        if rebuild {
            guard case .rebuild(let reason) = delta.plan else { Issue.record("expected a rebuild, got \(delta.plan)"); return }
            #expect(reason == "endpoint-picks4-mod2 would hold 1026 elements before the retire, over its size 1024")
        } else {
            #expect(delta.plan == .patch)
            let change = try #require(delta.elementChanges(in: .switchover).first { $0.set == "endpoint-picks4-mod2" })
            #expect((change.removed.count, change.added.count) == (0, 2 * swapped))
        }
    }

    @Test("the same table → unchanged; nothing installed → create")
    func trivial() {
        let table = Self.splits(10, first: 9, second: 1)
        #expect(TableDelta(installed: table, desired: table).plan == .unchanged)
        #expect(TableDelta(installed: nil, desired: table).plan == .create)
    }
}

/// How a patch is split into transactions so that a packet crossing a commit (old rules, new
/// elements) is still translated: nothing new is reachable before it exists in both generations,
/// and no map key an old rule may draw disappears until the rules that draw it are gone.
@Suite("Table delta: phases of a patch")
struct TableDeltaPhaseTests {
    static func messages(_ delta: TableDelta, _ phase: TableDelta.Phase) -> [String] {
        let batch = NetlinkBatch()
        delta.append(phase, to: batch)
        return batch.messageDescriptions.filter { $0 != "begin transaction" && $0 != "end transaction" }
    }

    @Test("9:1 → 2:1 (pick chain 10 → 3) → prepare adds chain 3 and its maps, filled; switchover only redirects the VIP; retire deletes chain 10, then its maps")
    func shrinkingSplit() {
        let delta = TableDelta(installed: TableDeltaTests.splits(1, first: 9, second: 1), desired: TableDeltaTests.splits(1, first: 2, second: 1))
        #expect(delta.phases == [.prepare, .switchover, .retire])
        let prepare = Self.messages(delta, .prepare)
        #expect(prepare.contains { $0.contains("chain") && $0.contains("weighted-pick-3") })
        #expect(prepare.contains { $0.contains("endpoint-picks4-mod3") })
        #expect(!prepare.contains { $0.contains("weighted-pick-10") || $0.contains("mod10") || $0.contains("service-ips") }, "\(prepare)")
        // The maps come before the rules that look them up, their elements after: the kernel
        // checks a map's elements when a rule is bound to it, and an empty map costs nothing.
        let firstRule = prepare.firstIndex { $0.hasPrefix("add rule") }, lastRule = prepare.lastIndex { $0.hasPrefix("add rule") }
        let map = prepare.firstIndex { $0.hasPrefix("add map endpoint-picks4-mod3") }
        let elements = prepare.firstIndex { $0.hasPrefix("add elements to") && $0.contains("endpoint-picks4-mod3") }
        #expect(map != nil && firstRule != nil && map! < firstRule!, "\(prepare)")
        #expect(elements != nil && lastRule != nil && lastRule! < elements!, "\(prepare)")
        let switchover = Self.messages(delta, .switchover)
        #expect(switchover.allSatisfy { $0.contains("service-ips4") }, "\(switchover)")
        // Nothing is deleted from the old map: the old chain draws from it until the retire,
        // which deletes the chain before the maps its rules look up.
        let retire = Self.messages(delta, .retire)
        #expect(!retire.contains { $0.contains("element") }, "\(retire)")
        let chain = retire.lastIndex { $0.contains("weighted-pick-10") }, oldMap = retire.firstIndex { $0.contains("endpoint-picks4-mod10") }
        #expect(chain != nil && oldMap != nil && chain! < oldMap!, "\(retire)")
    }

    @Test("9:1 → 7:3 (the same pick chain, 10) → one switchover that gives slots 7 and 8 the other endpoint; nothing to prepare or retire")
    func sameModulus() {
        let delta = TableDelta(installed: TableDeltaTests.splits(1, first: 9, second: 1), desired: TableDeltaTests.splits(1, first: 7, second: 3))
        #expect(delta.phases == [.switchover])
    }

    @Test("a rebuild → prepare makes a copy turnout-bridge; switchover replaces turnout; retire deletes the copy; an undone prepare deletes it too")
    func rebuildStandsACopyBeside() {
        var delta = TableDelta(installed: TableDeltaTests.splits(1, first: 9, second: 1), desired: TableDeltaTests.splits(1, first: 2, second: 1))
        delta.plan = .rebuild(reason: "test")
        #expect(delta.phases == [.prepare, .switchover, .retire])
        let prepare = Self.messages(delta, .prepare)
        #expect(prepare.prefix(3) == ["add table inet turnout-bridge", "delete table inet turnout-bridge", "add table inet turnout-bridge"], "\(prepare)")
        #expect(prepare.allSatisfy { !$0.contains("inet turnout ") && !$0.hasSuffix("inet turnout") }, "the copy only: \(prepare)")
        let switchover = Self.messages(delta, .switchover)
        #expect(switchover.prefix(3) == ["add table inet turnout", "delete table inet turnout", "add table inet turnout"], "\(switchover)")
        #expect(switchover.count == prepare.count, "the same table, under its own name")
        #expect(Self.messages(delta, .retire) == ["add table inet turnout-bridge", "delete table inet turnout-bridge"])
        let undo = NetlinkBatch()
        delta.appendUndoingPrepare(to: undo)
        #expect(undo.messageDescriptions.filter { $0.contains("table") } == ["add table inet turnout-bridge", "delete table inet turnout-bridge"])
    }

    @Test("2:1 → 9:1 (pick chain 3 → 10) → the new chain is prepared; old chain 3 retired after the switch")
    func growingSplit() {
        let delta = TableDelta(installed: TableDeltaTests.splits(1, first: 2, second: 1), desired: TableDeltaTests.splits(1, first: 9, second: 1))
        #expect(delta.phases == [.prepare, .switchover, .retire])
        #expect(Self.messages(delta, .retire).allSatisfy { !$0.contains("element") }, "the old maps are deleted whole, after the chain")
    }
}
