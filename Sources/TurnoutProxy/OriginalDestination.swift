import TurnoutModel

/// Where a redirected connection was going before NAT rewrote it: the proxy's answer to "which
/// service did the app call?".
///
/// For callers that hold raw descriptors (an epoll worker, a test's recording proxy); an owned
/// ``TCPConnection`` has ``TCPConnection/originalDestination()``. Throws ENOENT when conntrack has
/// no NAT record for the connection (it came here directly, not through a redirect). The
/// corresponding C call is `getsockopt(SOL_IP, SO_ORIGINAL_DST)`, or
/// `getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)` for an IPv6 socket.
public enum OriginalDestination {
    /// The original destination of the accepted TCP socket `fd` of `family`.
    public static func of(socket fd: Int32, family: IPFamily) throws(SystemCallError) -> SocketAddress {
        try Syscalls.originalDestination(fd, family: family)
    }
}
