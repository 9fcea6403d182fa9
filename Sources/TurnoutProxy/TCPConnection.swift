import Glibc
import TurnoutModel

/// A connected TCP socket, closed when the value goes away.
///
/// Made by `connect(to:as:until:)` (a client) or `TCPListener.accept(until:)` (a server side).
/// Not copyable: one owner closes the descriptor once. Errors carry the call and errno.
public struct TCPConnection: ~Copyable {
    let descriptor: Int32
    /// The family of both ends.
    public let family: IPFamily

    init(descriptor: Int32, family: IPFamily) {
        self.descriptor = descriptor
        self.family = family
    }

    deinit { close(descriptor) }

    /// Connects to `address` with a socket owned by `credentials`, waiting for the handshake
    /// until `deadline`.
    ///
    /// Throws the connect's errno: ECONNREFUSED (a reset: nothing listens, or a reject),
    /// ETIMEDOUT (no answer before `deadline`), ENETUNREACH (no route), EPERM (a local rule
    /// dropped the SYN). The corresponding C calls are `socket(2)`, `connect(2)`, `poll(2)` and
    /// `getsockopt(SO_ERROR)`.
    public static func connect(to address: SocketAddress, as credentials: SocketCredentials = SocketCredentials(uid: nil, gid: nil),
                               until deadline: ContinuousClock.Instant) throws(SystemCallError) -> TCPConnection {
        let fd = try credentials.makeSocket(family: address.socketFamily, type: Int32(SOCK_STREAM.rawValue))
        let connection = TCPConnection(descriptor: fd, family: address.address.family)
        if try Syscalls.connect(fd, to: address) { return connection }
        guard try Syscalls.wait(fd, for: Int32(POLLOUT), until: deadline) else {
            throw SystemCallError(call: "connect(\(address))", errno: ETIMEDOUT)
        }
        let code = try Syscalls.pendingError(fd)
        guard code == 0 else { throw SystemCallError(call: "connect(\(address))", errno: code) }
        return connection
    }

    /// This end's address. The corresponding C call is `getsockname(2)`.
    public func localAddress() throws(SystemCallError) -> SocketAddress {
        try Syscalls.address(of: descriptor, peer: false)
    }

    /// The other end's address. The corresponding C call is `getpeername(2)`.
    public func peerAddress() throws(SystemCallError) -> SocketAddress {
        try Syscalls.address(of: descriptor, peer: true)
    }

    /// Where the client was going before NAT redirected the connection here (see
    /// ``OriginalDestination``). Throws ENOENT when it was not redirected.
    public func originalDestination() throws(SystemCallError) -> SocketAddress {
        try OriginalDestination.of(socket: descriptor, family: family)
    }
}
