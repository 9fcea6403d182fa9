import Foundation
import Synchronization
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutTestSupport

/// The reconciler with a scripted source and a recording target: no kernel, real threads and
/// real time (every wait is bounded).
@Suite("reconciler: debounce, keep the last good table, retry")
struct ReconcilerTests {
    /// A source the test drives: `send` delivers an event as a real source's thread would.
    final class ScriptedSource: TableSource {
        let location = "scripted:test"
        private let deliver = Mutex<(@Sendable (TableSourceEvent) -> Void)?>(nil)
        let refreshes = Atomic(0)

        func start(_ deliver: @escaping @Sendable (TableSourceEvent) -> Void) throws(SystemCallError) {
            self.deliver.withLock { $0 = deliver }
        }

        func refresh() { refreshes.wrappingAdd(1, ordering: .relaxed) }

        func stop() { deliver.withLock { $0 = nil } }

        func send(_ event: TableSourceEvent) {
            deliver.withLock { $0 }?(event)
        }
    }

    /// Records every table installed; fails while `failing` is set.
    final class RecordingTarget: ReconcileTarget {
        let name = "recorder"
        let installed = Mutex<[ServiceTable]>([])
        let failing = Atomic(false)

        struct Refused: Error {}

        func install(_ table: ServiceTable) throws -> String {
            if failing.load(ordering: .relaxed) { throw Refused() }
            installed.withLock { $0.append(table) }
            return "ok"
        }

        var tables: [ServiceTable] { installed.withLock { $0 } }
    }

    /// A table with one service whose single endpoint has `weight`: distinct tables by weight.
    static func table(weight: UInt32) throws -> ServiceTable {
        try TableDecoder.decode("""
            services:
              - {name: shop/api, addresses: [10.96.0.10], ports: [{port: 80}], endpoints: [{address: 10.1.0.5, weight: \(weight)}]}
            """, name: "test.yaml")
    }

    static func invalid() -> TableError {
        do {
            _ = try TableDecoder.decode("services: [oops", name: "bad.yaml")
        } catch {
            return error
        }
        fatalError("the invalid table decoded")
    }

    static func started(_ source: ScriptedSource, _ target: RecordingTarget, lastGood: String? = nil,
                        debounce: Debounce = .standard) throws -> (Reconciler, Locked<[String]>) {
        let lines = Locked<[String]>([])
        let reconciler = try Reconciler(source: source, targets: [target], lastGoodFile: lastGood, debounce: debounce) { line in
            lines.mutate { $0.append(line) }
        }
        try reconciler.start()
        return (reconciler, lines)
    }

    /// The bound follows the burst's real length: a loaded machine (the suites run in parallel)
    /// can stretch 200 sleeps of 5 ms past 2 s, and the 1 s limit then rightly installs more
    /// often; a stall of this thread longer than the quiet time ends a burst early, once more.
    @Test("a burst of 200 changes 5 ms apart (about 1 s) → at most 2 installs + 1 per whole second the burst lasted (3 for 1 s), the last one the burst's final table")
    func burst() throws {
        let source = ScriptedSource(), target = RecordingTarget()
        let (reconciler, _) = try Self.started(source, target)
        defer { reconciler.stop() }
        let start = ContinuousClock.now
        var previous = start, stalls = 0
        for weight in 1...200 {
            source.send(.table(try Self.table(weight: UInt32(weight)), revision: "\(weight)"))
            Thread.sleep(forTimeInterval: 0.005)
            let now = ContinuousClock.now
            if now - previous >= Debounce.standard.quiet { stalls += 1 }
            previous = now
        }
        let length = ContinuousClock.now - start
        let bound = 2 + Int(length / Debounce.standard.maxDelay) + stalls
        let final = try Self.table(weight: 200)
        #expect(ProxyLab.eventually(within: .seconds(3)) { target.tables.last == final })
        #expect((1...bound).contains(target.tables.count), "\(target.tables.count) installs; the burst lasted \(length), \(stalls) stalls")
        // The status follows the targets' installs, on the same thread, a moment later.
        #expect(ProxyLab.eventually(within: .seconds(1)) { reconciler.status.installedRevision == "200" })
    }

    @Test("one change → installed after the 100 ms quiet time, not before")
    func quietTime() throws {
        let source = ScriptedSource(), target = RecordingTarget()
        let (reconciler, _) = try Self.started(source, target)
        defer { reconciler.stop() }
        let sent = ContinuousClock.now
        source.send(.table(try Self.table(weight: 1), revision: "1"))
        #expect(ProxyLab.eventually(within: .seconds(3)) { target.tables.count == 1 })
        #expect(ContinuousClock.now - sent >= .milliseconds(100))
        #expect(ProxyLab.eventually(within: .seconds(1)) { reconciler.status.sourceState == "up" && reconciler.status.installs == 1 })
    }

    @Test("a second table → its install logs what changed (weight 1→2); the first install logs no change line")
    func changesLogged() throws {
        let source = ScriptedSource(), target = RecordingTarget()
        let (reconciler, lines) = try Self.started(source, target)
        defer { reconciler.stop() }
        source.send(.table(try Self.table(weight: 1), revision: "1"))
        #expect(ProxyLab.eventually(within: .seconds(5)) { target.tables.count == 1 })
        source.send(.table(try Self.table(weight: 2), revision: "2"))
        #expect(ProxyLab.eventually(within: .seconds(5)) { lines.value.contains("revision 2 changes shop/api: 10.1.0.5 weight 1→2") },
                "\(lines.value)")
        #expect(!lines.value.contains { $0.hasPrefix("revision 1 changes") }, "\(lines.value)")
    }

    @Test("an invalid table → nothing installed, the last good one stays, status says invalid and counts it; a valid one after it is installed")
    func invalidKeepsLastGood() throws {
        let source = ScriptedSource(), target = RecordingTarget()
        // A quiet time of 1 s: revisions 2 and 3 must fall in one quiet window even when a
        // loaded machine stalls this thread between the two sends.
        let (reconciler, lines) = try Self.started(source, target, debounce: Debounce(quiet: .seconds(1), maxDelay: .seconds(5)))
        defer { reconciler.stop() }
        source.send(.table(try Self.table(weight: 1), revision: "1"))
        #expect(ProxyLab.eventually(within: .seconds(5)) { target.tables.count == 1 })
        source.send(.table(try Self.table(weight: 2), revision: "2"))
        source.send(.invalid(Self.invalid(), revision: "3"))
        #expect(ProxyLab.eventually(within: .seconds(5)) { reconciler.status.invalidTables == 1 })
        // Past the quiet time that would have installed revision 2, had it stayed pending.
        Thread.sleep(forTimeInterval: 1.3)
        #expect(target.tables.count == 1, "the valid table the source moved past is not installed")
        let status = reconciler.status
        #expect(status.sourceState == "invalid" && status.invalidTables == 1 && status.installedRevision == "1", "\(status)")
        #expect(ProxyLab.eventually(within: .seconds(2)) { lines.value.contains { $0.contains("revision 3 is not a valid table; keeping 1") } },
                "\(lines.value)")
        source.send(.table(try Self.table(weight: 4), revision: "4"))
        #expect(ProxyLab.eventually(within: .seconds(5)) { target.tables.last == (try? Self.table(weight: 4)) })
        #expect(ProxyLab.eventually(within: .seconds(2)) { reconciler.status.sourceState == "up" })
    }

    @Test("the source unavailable (5 times) → nothing changes, one log line, one outage; back with the same table → nothing installed again")
    func unavailable() throws {
        let source = ScriptedSource(), target = RecordingTarget()
        let (reconciler, lines) = try Self.started(source, target)
        defer { reconciler.stop() }
        source.send(.table(try Self.table(weight: 1), revision: "1"))
        #expect(ProxyLab.eventually(within: .seconds(3)) { target.tables.count == 1 })
        for _ in 0..<5 { source.send(.unavailable("connection refused")) }
        #expect(ProxyLab.eventually(within: .seconds(3)) { reconciler.status.sourceState == "unavailable" })
        #expect(reconciler.status.outages == 1)
        #expect(lines.value.count { $0.contains("unavailable; keeping 1") } == 1, "\(lines.value)")
        source.send(.table(try Self.table(weight: 1), revision: "7"))
        #expect(ProxyLab.eventually(within: .seconds(3)) { reconciler.status.unchanged == 1 })
        #expect(target.tables.count == 1)
        #expect(reconciler.status.sourceState == "up" && reconciler.status.installedRevision == "7")
    }

    @Test("a target that fails → counted, retried 2 s later, installed once it works")
    func retry() throws {
        let source = ScriptedSource(), target = RecordingTarget()
        target.failing.store(true, ordering: .relaxed)
        let (reconciler, _) = try Self.started(source, target)
        defer { reconciler.stop() }
        source.send(.table(try Self.table(weight: 1), revision: "1"))
        #expect(ProxyLab.eventually(within: .seconds(3)) { reconciler.status.installFailures == 1 })
        target.failing.store(false, ordering: .relaxed)
        #expect(ProxyLab.eventually(within: .seconds(5)) { target.tables.count == 1 })
        #expect(ProxyLab.eventually(within: .seconds(1)) { reconciler.status.installs == 1 })
        #expect(reconciler.status.lastFailure?.contains("recorder") == true)
    }

    @Test("every install is written to the last-good file; a restart with the source down installs that file at once")
    func lastGoodFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-reconciler-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/last-good.json"

        let first = RecordingTarget(), source = ScriptedSource()
        let (reconciler, _) = try Self.started(source, first, lastGood: path)
        source.send(.table(try Self.table(weight: 3), revision: "3"))
        #expect(ProxyLab.eventually(within: .seconds(3)) { first.tables.count == 1 })
        #expect(ProxyLab.eventually(within: .seconds(1)) { reconciler.status.installs == 1 })
        reconciler.stop()
        #expect(try TableFile.load(path) == Self.table(weight: 3))

        let restarted = RecordingTarget(), downSource = ScriptedSource()
        let (again, _) = try Self.started(downSource, restarted, lastGood: path)
        defer { again.stop() }
        #expect(restarted.tables == [try Self.table(weight: 3)], "installed by start(), before the source said anything")
        #expect(again.status.installedRevision == "last-good file")
        downSource.send(.unavailable("etcd down"))
        #expect(ProxyLab.eventually(within: .seconds(3)) { again.status.sourceState == "unavailable" })
        #expect(restarted.tables.count == 1)
    }

    @Test("started with the table the targets already hold → the source's equal first answer installs nothing; a different one does")
    func alreadyInstalled() throws {
        let source = ScriptedSource(), target = RecordingTarget()
        let reconciler = try Reconciler(source: source, targets: [target], lastGoodFile: nil, installed: try Self.table(weight: 1)) { _ in }
        try reconciler.start()
        defer { reconciler.stop() }
        #expect(reconciler.status.installedRevision == "startup")
        source.send(.table(try Self.table(weight: 1), revision: "1"))
        #expect(ProxyLab.eventually(within: .seconds(3)) { reconciler.status.unchanged == 1 })
        #expect(target.tables.isEmpty)
        source.send(.table(try Self.table(weight: 2), revision: "2"))
        #expect(ProxyLab.eventually(within: .seconds(3)) { target.tables == [try! Self.table(weight: 2)] })
    }

    @Test("debounce: quiet 100 ms, at most 1 s after the first change", arguments: [
        ([0], 100), ([0, 50], 150), ([0, 50, 120], 220), (Array(stride(from: 0, through: 990, by: 90)), 1_000),
    ] as [([Int], Int)])
    func debounce(_ changes: [Int], _ dueAfter: Int) throws {
        var debounce = Debounce.standard
        let start = ContinuousClock.now
        #expect(debounce.due == nil)
        for offset in changes { debounce.changed(at: start + .milliseconds(offset)) }
        #expect(debounce.due == start + .milliseconds(dueAfter))
        debounce.fired()
        #expect(debounce.due == nil)
    }
}
