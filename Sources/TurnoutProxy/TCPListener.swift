import Glibc
import TurnoutModel

/// A listening TCP socket, bound when created and closed when the value goes away.
///
/// IPv6 listeners are IPv6-only (`IPV6_V6ONLY`), so an IPv4 and an IPv6 listener can share a
/// port, as the proxy's captured traffic of each family arrives on its own loopback address.
/// `SO_REUSEADDR` lets a restarted listener bind while old connections sit in TIME_WAIT.
/// Not copyable: one owner closes the descriptor once. Errors carry the call and errno
/// (`bind([::]:15001): Address already in use`).
public struct TCPListener: ~Copyable {
    /// The address the socket is bound to (the kernel's choice of port when 0 was asked for).
    public let address: SocketAddress
    let descriptor: Int32

    /// Binds and listens on `address`. With `reusePort`, several listeners (one per proxy
    /// worker) bind the same address and the kernel spreads new connections over them
    /// (`SO_REUSEPORT`). The corresponding C calls are `socket(2)`, `setsockopt(2)`, `bind(2)`
    /// and `listen(2)`.
    public init(bindingTo address: SocketAddress, backlog: Int32 = 128, reusePort: Bool = false) throws(SystemCallError) {
        let fd = try Syscalls.socket(family: address.socketFamily, type: Int32(SOCK_STREAM.rawValue))
        do throws(SystemCallError) {
            try Syscalls.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR")
            if reusePort { try Syscalls.setOption(fd, level: SOL_SOCKET, name: SO_REUSEPORT, value: 1, "SO_REUSEPORT") }
            if address.address.family == .ipv6 {
                try Syscalls.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 1, "IPV6_V6ONLY")
            }
            try Syscalls.bind(fd, to: address)
            try Syscalls.listen(fd, backlog: backlog, address)
            self.address = try Syscalls.address(of: fd, peer: false)
        } catch {
            close(fd)
            throw error
        }
        descriptor = fd
    }

    deinit { close(descriptor) }

    /// The next queued connection, waiting for one until `deadline`; nil when none came.
    /// The corresponding C calls are `poll(2)` and `accept4(2)`.
    public func accept(until deadline: ContinuousClock.Instant) throws(SystemCallError) -> TCPConnection? {
        repeat {
            if let fd = try Syscalls.accept(descriptor) {
                return TCPConnection(descriptor: fd, family: address.address.family)
            }
        } while try Syscalls.wait(descriptor, for: Int32(POLLIN), until: deadline)
        return nil
    }
}
