import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutSocketCapture

/// `init --backend bpf`: the socket capture installed and removed, reported as the rule
/// backends report (backend "bpf"; messages = bpf(2) calls).
extension InitCommand {
    /// Loads the programs with `options` for this namespace's addresses and attaches them to
    /// `cgroup`, or replaces the programs of a capture installed there before.
    static func installSocketCapture(_ options: CaptureOptions, cgroup: String) throws -> ApplyReport {
        // As the rule backends do: the proxy delivers inbound IPv6 connections from ::6, which must
        // be a local address for it to bind, and is not one by itself.
        let passthrough = options.ipv6 ? try LoopbackAddress.add(CaptureOptions.passthroughSources[.ipv6]!) : nil
        let plan = SocketCaptureCompiler.plan(options, ownAddresses: try NamespaceAddresses.all())
        let installed = try SocketCaptureBackend().install(plan, cgroup: cgroup)
        var changes = installed.changes
        if passthrough == .added { changes.append("lo: + \(CaptureOptions.passthroughSources[.ipv6]!)/128 (inbound passthrough source)") }
        return ApplyReport(backend: "bpf", outcome: installed.replaced ? .rebuilt : .created, messages: installed.calls,
                           changes: changes,
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
