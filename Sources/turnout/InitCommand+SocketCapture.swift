import TurnoutControl
import TurnoutModel
import TurnoutRules
import TurnoutSocketCapture

/// `init --backend bpf`: the socket capture installed and removed, reported as the rule
/// backends report (backend "bpf"; messages = bpf(2) calls).
extension InitCommand {
    /// Loads the programs with `options` for this namespace's addresses and attaches them to
    /// `cgroup`, or replaces the programs of a capture installed there before. (`::6` on `lo`
    /// is added by `run`, for every backend.)
    static func installSocketCapture(_ options: CaptureOptions, cgroup: String) throws -> ApplyReport {
        let plan = SocketCaptureCompiler.plan(options, ownAddresses: try NamespaceAddresses.all())
        let installed = try SocketCaptureBackend().install(plan, cgroup: cgroup)
        return ApplyReport(backend: "bpf", outcome: installed.replaced ? .rebuilt : .created, messages: installed.calls,
                           changes: installed.changes,
                           reason: installed.replaced ? "a capture was installed for this cgroup and namespace; each program was replaced atomically, its connections kept" : nil)
    }

    /// Detaches the capture of `cgroup` in this namespace. Nothing to drain: no packet of a
    /// captured connection is rewritten, so removing the programs cuts none.
    static func removeSocketCapture(cgroup: String) throws -> ApplyReport {
        guard let removed = try SocketCaptureBackend().remove(cgroup: cgroup) else {
            return ApplyReport(backend: "bpf", outcome: .absent, messages: 0)
        }
        return ApplyReport(backend: "bpf", outcome: .flushed, messages: removed.calls, changes: removed.changes)
    }
}
