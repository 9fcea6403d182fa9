import Glibc
import Testing
@testable import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// Where an apply waits for packets to leave the hooks: once, between its switchover and its
/// retire, so that no packet walks the old rules' path across both (see ``GracePeriod``).
@Suite("apply waits one grace period between switchover and retire",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct GracePeriodTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        /// The table installed first (nil: none), and whether the second apply's backend wrote it.
        var before: (Int, Int)?
        var after: (Int, Int)
        var sameWriter = true
        /// The phases sent and the waits, in order.
        var events: [String]
        var testDescription: String { name }
    }

    static let cases = [
        Case(name: "create (nothing installed) → one switchover, no wait", before: nil, after: (9, 1), events: ["switchover"]),
        Case(name: "patch of exact slots 9:1 → 2:1 → the wait before the retire", before: (9, 1), after: (2, 1),
             events: ["prepare", "switchover", "wait", "retire"]),
        Case(name: "patch of ranges 999:1 → 199:1 → the wait before the retire", before: (999, 1), after: (199, 1),
             events: ["prepare", "switchover", "wait", "retire"]),
        Case(name: "rebuild (no record of the installed table) → the wait before the copy is deleted", before: (9, 1), after: (2, 1),
             sameWriter: false, events: ["prepare", "switchover", "wait", "retire"]),
        Case(name: "unchanged → nothing sent, no wait", before: (9, 1), after: (9, 1), events: []),
    ]

    @Test("phases sent and grace periods awaited, in order", arguments: cases)
    func waitsBetweenSwitchoverAndRetire(_ test: Case) throws {
        try withNetworkNamespace(prefix: "tx-grace") { ns in
            let first = try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/first")
            if let before = test.before {
                _ = try first.apply(InterruptedApplyTests.canary(before.0, before.1), options: ServiceCompilerOptions())
            }
            let backend = test.sameWriter ? first : try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/second")
            var events: [String] = []
            backend.beforePhase = { events.append("\($0)") }
            backend.awaitGracePeriod = { events.append("wait") }
            let desired = try InterruptedApplyTests.canary(test.after.0, test.after.1)
            _ = try backend.apply(desired, options: ServiceCompilerOptions())
            #expect(events == test.events)
            #expect(try backend.status(comparingWith: desired, options: ServiceCompilerOptions()).drift == [])
        }
    }

    /// The phases and waits a backend went through, in order.
    final class PhaseLog {
        var lines: [String] = []
    }

    /// A backend with deferred retires whose phases and waits are recorded, in a namespace holding 9:1.
    static func deferredBackend(_ ns: NetworkNamespace) throws -> (NftablesBackend, PhaseLog) {
        let events = PhaseLog()
        let backend = try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/records")
        _ = try backend.apply(InterruptedApplyTests.canary(9, 1), options: ServiceCompilerOptions())
        backend.retireTiming = .deferred
        backend.beforePhase = { events.lines.append("\($0)") }
        backend.awaitGracePeriod = { events.lines.append("wait") }
        return (backend, events)
    }

    /// How the kernel's table compares with `desired`, read by another backend (which has no
    /// pending retire of its own to settle first).
    static func drift(_ ns: NetworkNamespace, from desired: ServiceTable) throws -> [String] {
        try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/reader")
            .status(comparingWith: desired, options: ServiceCompilerOptions()).drift ?? []
    }

    @Test("deferred retire: 9:1 → 2:1 returns after the switchover with the old pick chain still installed; settle() → the wait, the retire, the exact table and its record")
    func deferredRetireWaitsInSettle() throws {
        try withNetworkNamespace(prefix: "tx-defer") { ns in
            let (backend, events) = try Self.deferredBackend(ns)
            let desired = try InterruptedApplyTests.canary(2, 1)
            let report = try backend.apply(desired, options: ServiceCompilerOptions())
            #expect(events.lines == ["prepare", "switchover"])
            #expect(backend.hasPendingRetire)
            #expect(report.outcome == .incremental)
            // Only what the retire deletes is left over: the old pick chain, nothing missing.
            let before = try Self.drift(ns, from: desired)
            #expect(!before.isEmpty && before.allSatisfy { $0.hasPrefix("-") }, "\(before)")
            #expect(before.contains { $0.contains("weighted-pick-10") }, "\(before)")

            #expect(try backend.settle() > 0)
            #expect(events.lines == ["prepare", "switchover", "wait", "retire"])
            #expect(!backend.hasPendingRetire)
            #expect(try Self.drift(ns, from: desired) == [])
            #expect(try backend.settle() == 0, "nothing left to settle")
            // The record was written at settle: a fresh process finds the table is Turnout's.
            let fresh = try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/records")
            let summary = try fresh.status(comparingWith: nil, options: ServiceCompilerOptions()).summary
            #expect(summary.contains { $0.hasPrefix("matches what Turnout last applied") }, "\(summary)")
        }
    }

    @Test("deferred retire, then another apply → that apply settles first (wait, retire) and patches on the daemon's path")
    func nextApplySettlesFirst() throws {
        try withNetworkNamespace(prefix: "tx-defer") { ns in
            let (backend, events) = try Self.deferredBackend(ns)
            _ = try backend.apply(InterruptedApplyTests.canary(2, 1), options: ServiceCompilerOptions())
            let back = try InterruptedApplyTests.canary(9, 1)
            let report = try backend.apply(back, options: ServiceCompilerOptions())
            #expect(events.lines == ["prepare", "switchover", "wait", "retire", "prepare", "switchover"])
            #expect(report.outcome == .incremental, "a patch, not a rebuild: \(report.reason ?? "")")
            #expect(report.changedServices == 1, "the daemon's path: the settled generation is its own, no read-back")
            try backend.settle()
            #expect(try Self.drift(ns, from: back) == [])
        }
    }

    @Test("deferred retire, another process commits before it → settle() throws ERESTART; the next apply rebuilds to exactly the table, no copy left")
    func refusedDeferredRetire() throws {
        try withNetworkNamespace(prefix: "tx-defer") { ns in
            let (backend, events) = try Self.deferredBackend(ns)
            let desired = try InterruptedApplyTests.canary(2, 1)
            _ = try backend.apply(desired, options: ServiceCompilerOptions())
            #expect(try ns.run("nft", ["add table inet other"]).status == 0)
            do throws(NetlinkError) {
                try backend.settle()
                Issue.record("the retire was committed over another process's commit")
            } catch {
                #expect(error.errno == ERESTART, "\(error)")
            }
            #expect(!backend.hasPendingRetire)
            let report = try backend.apply(desired, options: ServiceCompilerOptions())
            #expect(report.outcome == .rebuilt, "\(report.changes)")
            try backend.settle()
            // The refused retire, then the rebuild's three phases (its copy deleted at settle).
            #expect(events.lines == ["prepare", "switchover", "wait", "retire", "prepare", "switchover", "wait", "retire"])
            #expect(try Self.drift(ns, from: desired) == [])
            #expect(try backend.readInstalled(TableDelta.bridgeName(of: NftablesServiceCompiler.tableName)) == nil)
        }
    }

    @Test("GracePeriod.wait() on this kernel → a real RCU grace period (membarrier), not the fallback sleep")
    func kernelHasMembarrier() {
        #expect(GracePeriod.wait() == .membarrier)
    }
}
