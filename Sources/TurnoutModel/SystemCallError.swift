#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A C call that failed, with the errno it left: what every module's syscall seam throws.
///
/// `call` names the call and what it was applied to (`posix_spawn(/usr/sbin/iptables-restore)`,
/// `bind([::]:15001)`), so the message alone says what failed and why; `description` adds
/// `strerror`. TurnoutNetlink calls it `NetlinkError`, with a batch message's description as
/// the call when the kernel refused one.
public struct SystemCallError: Error, Sendable, Hashable, CustomStringConvertible {
    public var call: String
    public var errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }

    /// The caller lacks a capability for the call (CAP_NET_ADMIN for netfilter and addresses).
    public var isPermissionDenied: Bool { errno == EPERM || errno == EACCES }
}
