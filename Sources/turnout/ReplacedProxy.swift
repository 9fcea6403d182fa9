import FoundationEssentials
import Glibc
import TurnoutControl
import TurnoutModel

/// The running `turnout proxy` that `proxy --replace PID` takes over from: checked before
/// anything binds, signalled once the new listeners are up.
///
/// The checks keep a typo from signalling another program (SIGUSR2's default action ends a
/// process) or a proxy whose listeners are not in this one's `SO_REUSEPORT` groups, which only
/// a process in the same network namespace can share.
struct ReplacedProxy {
    let pid: Int32

    /// Throws a message for people when `pid` is not a running `turnout proxy` in this network
    /// namespace.
    init(pid: Int32) throws(ValueError) {
        guard pid > 1, pid != getpid() else { throw ValueError("not another process's PID") }
        guard let bytes = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else {
            throw ValueError("no process with this PID")
        }
        let arguments = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let program = arguments.first, program.split(separator: "/").last == "turnout", arguments.dropFirst().first == "proxy" else {
            throw ValueError("not a turnout proxy (its command line: \(arguments.prefix(3).joined(separator: " ")))")
        }
        let own: NetworkNamespaceKey, theirs: NetworkNamespaceKey
        do {
            own = try NetworkNamespaceKey.current()
            theirs = try NetworkNamespaceKey.of(process: pid)
        } catch {
            throw ValueError("cannot read its network namespace: \(error)")
        }
        guard own == theirs else {
            throw ValueError("it runs in \(theirs), not in \(own); a replacement must share its ports")
        }
        self.pid = pid
    }

    /// Sends SIGUSR2: the old proxy frees its admin address, shuts its listeners down and
    /// drains. The corresponding C call is `kill(2)`.
    func handOver() throws(SystemCallError) {
        guard kill(pid, SIGUSR2) == 0 else { throw SystemCallError(call: "kill(\(pid), SIGUSR2)", errno: errno) }
    }

    /// Makes the kernel move connections waiting in the old listeners' accept queues to the new
    /// ones when the old shut down (`net.ipv4.tcp_migrate_req`, Linux 5.14; per namespace, 0 by
    /// default), where without it they would be reset. Nil when it is on or was turned on; a
    /// line for the log when it cannot be (an unprivileged proxy: `turnout init` or an
    /// operator sets it as root).
    func enableRequestMigration(sysctl path: String = "/proc/sys/net/ipv4/tcp_migrate_req") -> String? {
        guard let value = try? String(contentsOfFile: path, encoding: .utf8) else {
            return "net.ipv4.tcp_migrate_req cannot be read (a kernel before 5.14?): connections waiting in PID \(pid)'s accept queues when it stops listening are reset"
        }
        if value.prefix(while: { !$0.isNewline }) == "1" { return nil }
        let descriptor = open(path, O_WRONLY | O_CLOEXEC)
        let written = descriptor >= 0 && write(descriptor, "1\n", 2) == 2
        let code = errno
        if descriptor >= 0 { close(descriptor) }
        if written { return nil }
        return "net.ipv4.tcp_migrate_req is 0 and cannot be set here (\(String(cString: strerror(code)))): connections waiting in PID \(pid)'s "
            + "accept queues when it stops listening are reset; as root: sysctl -w net.ipv4.tcp_migrate_req=1"
    }
}
