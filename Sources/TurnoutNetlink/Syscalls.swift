import CNetfilter
import CTurnoutLinux
import Glibc
import TurnoutModel

/// A failed system or library call on the netfilter path, with the errno it left.
///
/// `call` names the C call (`mnl_socket_sendto`, `setns`, …) or, for an error the kernel
/// reported against one message of a batch, that message's description (`add chain inet turnout
/// services`), so the person reading it knows which object failed and why. The same type as
/// every other module's `SystemCallError`; the name says where it comes from.
public typealias NetlinkError = SystemCallError

/// The socket-level calls of TurnoutNetlink, gathered so every errno is turned into a
/// `NetlinkError` in one place. The corresponding C calls are libmnl's socket functions,
/// `setsockopt(2)`, `recv(2)`, `open(2)` and `setns(2)`.
enum Syscalls {
    /// A bound netlink socket of `family` (`NETLINK_NETFILTER`, or `NETLINK_ROUTE` for addresses).
    static func openNetlinkSocket(_ family: Int32 = NETLINK_NETFILTER) throws(NetlinkError) -> OpaquePointer {
        guard let socket = mnl_socket_open(family) else {
            throw NetlinkError(call: "mnl_socket_open(\(family == NETLINK_ROUTE ? "NETLINK_ROUTE" : "NETLINK_NETFILTER"))", errno: errno)
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let code = errno
            mnl_socket_close(socket)
            throw NetlinkError(call: "mnl_socket_bind", errno: code)
        }
        return socket
    }

    static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32, _ label: String) throws(NetlinkError) {
        var value = value
        guard setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw NetlinkError(call: "setsockopt(\(label))", errno: errno)
        }
    }

    static func send(_ socket: OpaquePointer, _ bytes: UnsafeRawBufferPointer) throws(NetlinkError) {
        guard mnl_socket_sendto(socket, bytes.baseAddress, bytes.count) >= 0 else {
            throw NetlinkError(call: "mnl_socket_sendto(\(bytes.count) bytes)", errno: errno)
        }
    }

    /// One datagram, or `nil` when nothing is queued and `wait` is false.
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, wait: Bool) throws(NetlinkError) -> Int? {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, wait ? 0 : Int32(MSG_DONTWAIT))
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN where !wait: return nil
            default: throw NetlinkError(call: "recv", errno: errno)
            }
        }
    }

    /// Opens a netlink socket of `family` inside the network namespace at `path` (`/run/netns/NAME`).
    ///
    /// A socket keeps the namespace it was created in, so the switch happens on a short-lived
    /// thread of its own: the caller's thread, and every other thread, stay where they were.
    static func openNetlinkSocket(_ family: Int32 = NETLINK_NETFILTER, inNamespace path: String) throws(NetlinkError) -> OpaquePointer {
        final class Outcome {
            let path: String
            let family: Int32
            var socket: OpaquePointer?
            var error: NetlinkError?
            init(path: String, family: Int32) { (self.path, self.family) = (path, family) }
        }
        let outcome = Outcome(path: path, family: family)
        let context = Unmanaged.passRetained(outcome).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { raw in
            let outcome = Unmanaged<Outcome>.fromOpaque(raw!).takeRetainedValue()
            let fd = open(outcome.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                outcome.error = NetlinkError(call: "open(\(outcome.path))", errno: errno)
                return nil
            }
            defer { close(fd) }
            guard CTurnoutLinux_setns(fd, CTurnoutLinux_CLONE_NEWNET) == 0 else {
                outcome.error = NetlinkError(call: "setns(\(outcome.path))", errno: errno)
                return nil
            }
            do throws(NetlinkError) { outcome.socket = try Syscalls.openNetlinkSocket(outcome.family) } catch { outcome.error = error }
            return nil
        }, context)
        guard created == 0 else {
            Unmanaged<Outcome>.fromOpaque(context).release()
            throw NetlinkError(call: "pthread_create", errno: created)
        }
        pthread_join(thread, nil)
        if let error = outcome.error { throw error }
        return outcome.socket!
    }
}
