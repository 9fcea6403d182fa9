import Synchronization
import Testing
@testable import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// The daemon's kernel target (`apply --watch`): installs at the switchover, sends the retire
/// from a thread of its own, and repairs at once a retire that another process's commit made
/// the kernel refuse.
@Suite("kernel rules target: deferred retires",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct KernelRulesTargetTests {
    /// A target whose nft backend works in `ns` and records into its scratch directory;
    /// `interruptRetire` lands an `nft` commit before the first retire, as kube-proxy or
    /// firewalld committing at that moment would.
    static func target(_ ns: NetworkNamespace, interruptRetire: Bool) -> KernelRulesTarget {
        KernelRulesTarget(backend: .nft, options: ServiceCompilerOptions()) { () throws(NetlinkError) in
            let backend = try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/records")
            let interrupted = Mutex(!interruptRetire)
            backend.beforePhase = { phase in
                guard phase == .retire, !interrupted.withLock({ done in defer { done = true }; return done }) else { return }
                _ = try? ns.run("nft", ["add table inet other"])
            }
            return backend
        }
    }

    /// 9:1 installed, then 2:1 (a change of pick chain, so a retire): the target, the desired
    /// table and the second install's line.
    static func changePickChain(_ ns: NetworkNamespace, interruptRetire: Bool) throws -> (KernelRulesTarget, ServiceTable, String) {
        let target = Self.target(ns, interruptRetire: interruptRetire)
        _ = try target.install(InterruptedApplyTests.canary(9, 1))
        let desired = try InterruptedApplyTests.canary(2, 1)
        return (target, desired, try target.install(desired))
    }

    @Test("a change of pick chain → installed at the switchover, its line says the retire follows; the thread retires it → the kernel holds exactly the table")
    func retireFollows() throws {
        try withNetworkNamespace(prefix: "krt") { ns in
            let (target, desired, line) = try Self.changePickChain(ns, interruptRetire: false)
            #expect(line.hasPrefix("incremental, ") && line.contains(" messages (retire after one grace period): "), "\(line)")
            #expect(ProxyLab.eventually(within: .seconds(5)) { (try? GracePeriodTests.drift(ns, from: desired)) == [] })
            #expect(target.settle() == nil)
        }
    }

    @Test("another commit before the deferred retire → the thread applies the table again at once (a rebuild), the next line says so; the kernel ends exact, no copy, the other table kept")
    func refusedRetireRepaired() throws {
        try withNetworkNamespace(prefix: "krt") { ns in
            let (target, desired, _) = try Self.changePickChain(ns, interruptRetire: true)
            // The repair is the settling thread's, before any next change.
            #expect(ProxyLab.eventually(within: .seconds(5)) { (try? GracePeriodTests.drift(ns, from: desired)) == [] })
            let next = try target.install(InterruptedApplyTests.canary(9, 1))
            #expect(next.hasPrefix("(after the last change: the retire failed ("), "\(next)")
            #expect(next.contains("; applied again: rebuilt,"), "\(next)")
            #expect(target.settle() == nil)
            #expect(try GracePeriodTests.drift(ns, from: InterruptedApplyTests.canary(9, 1)) == [])
            let reader = try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/reader")
            #expect(try reader.readInstalled(TableDelta.bridgeName(of: NftablesServiceCompiler.tableName)) == nil)
            #expect(try ns.run("nft", ["list", "table", "inet", "other"]).status == 0)
        }
    }
}
