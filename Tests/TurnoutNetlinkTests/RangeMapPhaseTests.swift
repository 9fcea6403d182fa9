import Testing
@testable import TurnoutNetlink

/// Interval maps (pipapo) cannot keep a service's old ranges beside its new ones, and show new
/// elements a moment after the hash map that leads to them. Each test replays a patch's phases
/// on the maps' elements and checks, after every phase, that every value the old or the new
/// rules draw (`numgen mod` the old or the new total, each in its own pick chain's map) finds
/// an element.
@Suite("Table delta: range maps")
struct RangeMapPhaseTests {
    /// Each map's elements after each phase, starting from `installed`'s.
    static func replay(_ delta: TableDelta, from installed: WireTable, maps: [String]) -> [(TableDelta.Phase, [String: Set<WireElement>])] {
        var elements = Dictionary(maps.map { ($0, Set(installed.set(named: $0)?.elements ?? [])) }, uniquingKeysWith: { first, _ in first })
        return delta.phases.map { phase in
            // A map added with its elements (the prepare phase).
            for set in delta.addedSets where phase == .prepare && elements[set.name] != nil { elements[set.name] = Set(set.elements) }
            for change in delta.elementChanges(in: phase) where elements[change.set] != nil {
                for element in change.removed { #expect(elements[change.set]!.remove(element) != nil, "\(phase) deletes an element that is not there") }
                for element in change.added { #expect(elements[change.set]!.insert(element).inserted, "\(phase) adds an element twice") }
            }
            for set in delta.removedSets where phase == .retire && elements[set.name] != nil { elements[set.name] = [] }
            return (phase, elements)
        }
    }

    /// The drawn values (the key's last field) no element covers, of `0..<total`. An interval
    /// map's keys are big-endian (the rule converts the draw), a hash map's in host order.
    static func missing(_ elements: Set<WireElement>, total: UInt64) -> [UInt64] {
        func value(_ key: [UInt8], bigEndian: Bool) -> UInt64 {
            (bigEndian ? Array(key.suffix(4)) : key.suffix(4).reversed()).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        let covered = elements.map { element in
            value(element.key, bigEndian: element.keyEnd != nil)...value(element.keyEnd ?? element.key, bigEndian: element.keyEnd != nil)
        }
        return (0..<total).filter { value in !covered.contains { $0.contains(value) } }
    }

    /// Overlapping elements, which the kernel refuses.
    static func overlaps(_ elements: Set<WireElement>) -> Bool {
        let sorted = elements.map { ($0.key, $0.keyEnd ?? $0.key) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        return zip(sorted, sorted.dropFirst()).contains { !$0.1.lexicographicallyPrecedes($1.0) }
    }

    /// The map a `first:second` split draws from, and its total: `endpoint-ranges4-mod1000`
    /// for 999:1, `endpoint-picks4-mod10` for 9:1.
    static func map(_ split: (UInt32, UInt32)) -> (name: String, total: UInt64) {
        let total = split.0 + split.1
        return ("\(total > 100 ? "endpoint-ranges" : "endpoint-picks")4-mod\(total)", UInt64(total))
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var from: (UInt32, UInt32)
        var to: (UInt32, UInt32)
        var testDescription: String { "\(from.0):\(from.1) → \(to.0):\(to.1)" }
    }

    @Test("a split changed → after every phase each old and new draw finds an element in its map, nothing overlaps; at the end the maps are the desired ones",
          arguments: [
              Case(from: (999, 1), to: (199, 1)),  // ranges, shrinking modulus: another map
              Case(from: (199, 1), to: (999, 1)),  // ranges, growing modulus: another map
              Case(from: (997, 3), to: (993, 7)),  // ranges, same modulus: one map, replaced in the switchover
              Case(from: (9, 1), to: (999, 1)),    // exact slots → ranges
              Case(from: (999, 1), to: (9, 1)),    // ranges → exact slots
          ])
    func phasesKeepEveryDrawCovered(_ example: Case) {
        let installed = TableDeltaTests.splits(1, first: example.from.0, second: example.from.1)
        let desired = TableDeltaTests.splits(1, first: example.to.0, second: example.to.1)
        let delta = TableDelta(installed: installed, desired: desired)
        #expect(delta.plan == .patch)
        let (old, new) = (Self.map(example.from), Self.map(example.to))
        for (phase, elements) in Self.replay(delta, from: installed, maps: [old.name, new.name]) {
            // Old draws may come until the retire phase. New draws come from the switchover on,
            // but a map the service moves to has its elements from the prepare phase.
            if phase != .retire {
                #expect(Self.missing(elements[old.name]!, total: old.total).isEmpty, "after \(phase), \(old.name) misses \(Self.missing(elements[old.name]!, total: old.total).prefix(3))…")
            }
            if phase != .prepare || old.name != new.name {
                #expect(Self.missing(elements[new.name]!, total: new.total).isEmpty, "after \(phase), \(new.name) misses \(Self.missing(elements[new.name]!, total: new.total).prefix(3))…")
            }
            for (map, held) in elements { #expect(!Self.overlaps(held), "\(map) after \(phase)") }
            if phase == .retire, old.name != new.name { #expect(elements[old.name]!.isEmpty, "\(old.name) is gone") }
        }
        let final = Self.replay(delta, from: installed, maps: [new.name]).last?.1[new.name]
        #expect(final.map { Array($0).sorted() } == desired.set(named: new.name)!.elements)
    }

    @Test("997:3 → 993:7 (one modulus) → the service's two ranges switched over in one transaction, none prepared or retired")
    func sameModulusSwitchesOver() throws {
        let installed = TableDeltaTests.splits(1, first: 997, second: 3)
        let delta = TableDelta(installed: installed, desired: TableDeltaTests.splits(1, first: 993, second: 7))
        #expect(delta.phases == [.switchover])
        let switchover = try #require(delta.elementChanges(in: .switchover).first { $0.set == "endpoint-ranges4-mod1000" })
        #expect(switchover.removed.count == 2 && switchover.added.count == 2)
    }
}
