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

    @Test("GracePeriod.wait() on this kernel → a real RCU grace period (membarrier), not the fallback sleep")
    func kernelHasMembarrier() {
        #expect(GracePeriod.wait() == .membarrier)
    }
}
