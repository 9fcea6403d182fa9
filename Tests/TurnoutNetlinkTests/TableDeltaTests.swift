import Testing
import TurnoutModel
import TurnoutNetlink
import TurnoutRules

/// How `TableDelta` chooses between patching and rebuilding, on lowered tables (no kernel).
@Suite("Table delta: patch or rebuild")
struct TableDeltaTests {
    /// `count` services, each split `first:second` over two endpoints.
    static func splits(_ count: Int, first: UInt32, second: UInt32, changing changed: Int = 0, to newFirst: UInt32 = 0) -> WireTable {
        let services = (0..<count).map { index in
            let (high, low) = (index / 250, index % 250 + 1)
            let weight = index < changed ? newFirst : first
            return Service(name: ServiceName("split/svc-\(index)")!, addresses: [IPAddress("10.96.\(high).\(low)")!],
                           ports: [ServicePort(name: "http", port: 80, targetPort: 8080)],
                           endpoints: [Endpoint(address: IPAddress("10.1.\(high).\(low)")!, weight: weight),
                                       Endpoint(address: IPAddress("10.2.\(high).\(low)")!, weight: second)])
        }
        return NftablesLowering.lower(NftablesServiceCompiler.compile(ServiceTable(services: services)))
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var what: String
        var weights: (first: UInt32, second: UInt32, changedTo: UInt32)
        var changed: Int
        var rebuild: Bool
        var testDescription: String { what }
    }

    @Test("1,000 services, some splits changed → patch or rebuild", arguments: [
        // 997:3 → 998:3 moves one range boundary: two deletions from a 2,000-element pipapo set.
        Case(what: "one fine split changed (pipapo) → patch", weights: (997, 3, 998), changed: 1, rebuild: false),
        // Every range changes: 2,000 deletions × 2,000 elements, far above a rebuild's cost.
        Case(what: "every fine split changed (pipapo) → rebuild", weights: (997, 3, 998), changed: 1_000, rebuild: true),
        // Hash-map deletions cost the same at any size: patched however many change.
        Case(what: "every 9:1 split changed to 8:2 (hash map) → patch", weights: (9, 1, 8), changed: 1_000, rebuild: false),
    ])
    func choice(_ example: Case) {
        let installed = Self.splits(1_000, first: example.weights.first, second: example.weights.second)
        let desired = Self.splits(1_000, first: example.weights.first, second: example.weights.second,
                                  changing: example.changed, to: example.weights.changedTo)
        let delta = TableDelta(installed: installed, desired: desired)
        if example.rebuild {
            guard case .rebuild(let reason) = delta.plan else { Issue.record("expected a rebuild, got \(delta.plan)"); return }
            #expect(reason.contains("interval maps"), "\(reason)")
        } else {
            #expect(delta.plan == .patch)
        }
    }

    @Test("the same table → unchanged; nothing installed → create")
    func trivial() {
        let table = Self.splits(10, first: 9, second: 1)
        #expect(TableDelta(installed: table, desired: table).plan == .unchanged)
        #expect(TableDelta(installed: nil, desired: table).plan == .create)
    }
}
