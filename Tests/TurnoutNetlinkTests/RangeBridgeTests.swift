import Testing
@testable import TurnoutNetlink

/// Interval maps (pipapo) cannot keep a service's old ranges beside its new ones, and show new
/// elements a moment after the hash map that leads to them. Each test replays a patch's phases
/// on the map's elements and checks, after every phase, that every value old or new rules draw
/// (`numgen mod` the old or the new total) finds a range.
@Suite("Table delta: range bridges")
struct RangeBridgeTests {
    static let ranges = "endpoint-ranges4"

    /// The map's elements after each phase, starting from `installed`'s.
    static func replay(_ delta: TableDelta, from installed: WireTable) -> [(TableDelta.Phase, Set<WireElement>)] {
        var elements = Set(installed.set(named: ranges)?.elements ?? [])
        return delta.phases.map { phase in
            for change in delta.elementChanges(in: phase) where change.set == ranges {
                for element in change.removed { #expect(elements.remove(element) != nil, "\(phase) deletes an element that is not there") }
                for element in change.added { #expect(elements.insert(element).inserted, "\(phase) adds an element twice") }
            }
            return (phase, elements)
        }
    }

    /// The drawn values (the key's last field, big-endian) no element covers, of `0..<total`.
    static func missing(_ elements: Set<WireElement>, total: UInt64) -> [UInt64] {
        let covered = elements.map { element in
            (element.key.suffix(4).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })...((element.keyEnd ?? element.key).suffix(4).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        }
        return (0..<total).filter { value in !covered.contains { $0.contains(value) } }
    }

    /// Overlapping elements, which the kernel refuses.
    static func overlaps(_ elements: Set<WireElement>) -> Bool {
        let sorted = elements.map { ($0.key, $0.keyEnd ?? $0.key) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        return zip(sorted, sorted.dropFirst()).contains { !$0.1.lexicographicallyPrecedes($1.0) }
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var from: (UInt32, UInt32)
        var to: (UInt32, UInt32)
        /// What the old and the new rules draw from in this map (`numgen mod` the total); nil
        /// where that side's split uses exact slots, in the other map.
        var oldTotal: UInt64?
        var newTotal: UInt64?
        var bridges: Int
        var testDescription: String { "\(from.0):\(from.1) → \(to.0):\(to.1)" }
    }

    @Test("a range split changed → after every phase each old and new draw finds a range, nothing overlaps; at the end the map is the desired one",
          arguments: [
              // Shrinking: 200–999 only the old ranges covered, bridged from the switchover to the retire.
              Case(from: (999, 1), to: (199, 1), oldTotal: 1000, newTotal: 200, bridges: 1),
              // Growing: 200–999 only the new ranges cover, bridged from the prepare to the switchover.
              Case(from: (199, 1), to: (999, 1), oldTotal: 200, newTotal: 1000, bridges: 1),
              // Same total, boundary moved: nothing to bridge.
              Case(from: (997, 3), to: (993, 7), oldTotal: 1000, newTotal: 1000, bridges: 0),
              // Exact slots → ranges: the service's ranges are added in the prepare phase.
              Case(from: (9, 1), to: (999, 1), oldTotal: nil, newTotal: 1000, bridges: 0),
              // Ranges → exact slots: the service's ranges stay until the retire phase.
              Case(from: (999, 1), to: (9, 1), oldTotal: 1000, newTotal: nil, bridges: 0),
          ])
    func phasesKeepEveryDrawCovered(_ example: Case) {
        let installed = TableDeltaTests.splits(1, first: example.from.0, second: example.from.1)
        let desired = TableDeltaTests.splits(1, first: example.to.0, second: example.to.1)
        let delta = TableDelta(installed: installed, desired: desired)
        #expect(delta.plan == .patch)
        let states = Self.replay(delta, from: installed)
        for (phase, elements) in states {
            // Old draws may still come until the retire phase; after it, only new ones.
            let drawn = phase == .retire ? [example.newTotal] : [example.oldTotal, example.newTotal]
            for total in drawn.compactMap({ $0 }) {
                #expect(Self.missing(elements, total: total).isEmpty, "after \(phase), mod \(total) misses \(Self.missing(elements, total: total).prefix(3))…")
            }
            #expect(!Self.overlaps(elements), "after \(phase)")
        }
        #expect(states.last.map { Array($0.1).sorted() } == desired.set(named: Self.ranges)!.elements)
        #expect(delta.changes.contains { $0.contains("+\(example.bridges) bridge range") } == (example.bridges > 0), "\(delta.changes)")
    }

    @Test("999:1 → 199:1 → the bridge for 200–999 points at the new second endpoint")
    func bridgePointsAtNewEndpoint() throws {
        let installed = TableDeltaTests.splits(1, first: 999, second: 1)
        let desired = TableDeltaTests.splits(1, first: 199, second: 1)
        let switchover = try #require(TableDelta(installed: installed, desired: desired).elementChanges(in: .switchover).first { $0.set == Self.ranges })
        let newSecond = try #require(desired.set(named: Self.ranges)?.elements.max { $0.key.lexicographicallyPrecedes($1.key) })
        let bridge = try #require(switchover.added.first { !desired.set(named: Self.ranges)!.elements.contains($0) })
        #expect(Self.missing([bridge], total: 1000) == Array(0..<200))
        #expect(bridge.data == newSecond.data)
    }

    @Test("uncovered: [0–998, 999] minus [0–198, 199] → one joined range 200–999")
    func uncoveredJoins() {
        #expect(RangeBridge.uncovered([0...998, 999...999], by: [0...198, 199...199]) == [200...999])
        #expect(RangeBridge.uncovered([0...9], by: [3...4, 7...7]) == [0...2, 5...6, 8...9])
        #expect(RangeBridge.uncovered([0...9], by: [0...9]) == [])
    }
}
