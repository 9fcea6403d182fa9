import Glibc
import TurnoutModel

/// Non-blocking reads and writes on a connection, for a caller that runs its own `poll(2)` loop
/// over many sockets (the admin server).
///
/// The socket is non-blocking (every TurnoutProxy socket is): a call never waits, and "not now"
/// (EAGAIN) is nil, not an error. Wait for `POLLIN`/`POLLOUT` on `fileDescriptor` before
/// calling again. Errors carry the call and errno (ECONNRESET, EPIPE); a peer that went away
/// never raises SIGPIPE.
extension TCPConnection {
    /// The socket's descriptor, lent for `poll(2)` only: the connection still owns it and closes
    /// it when it goes away, so never close it or keep it past the connection's life.
    public var fileDescriptor: Int32 { descriptor }

    /// Reads what is waiting, at most `buffer.count` bytes: the count read, 0 at the end of the
    /// stream (the peer shut down its side), nil when nothing is waiting yet.
    /// The corresponding C call is `recv(2)`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int? {
        try Syscalls.receive(descriptor, into: buffer)
    }

    /// Writes what the send buffer takes of `bytes`: the count written (maybe fewer than
    /// `bytes.count`; write the rest later), nil when the send buffer is full.
    /// The corresponding C call is `send(2)` with `MSG_NOSIGNAL`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(SystemCallError) -> Int? {
        try Syscalls.send(descriptor, bytes)
    }

    /// Ends this side's stream (the peer reads the end) while reading goes on: what a server does
    /// after its last byte, so that unread input does not turn the close into a reset that could
    /// destroy the answer before the peer read it. The corresponding C call is `shutdown(2)`.
    public func shutdownWrite() throws(SystemCallError) {
        try Syscalls.shutdownWrite(descriptor)
    }
}

extension TCPListener {
    /// The listening descriptor, lent for `poll(2)` only (`POLLIN`: a connection is queued): the
    /// listener still owns it and closes it when it goes away.
    public var fileDescriptor: Int32 { descriptor }

    /// The next queued connection, or nil at once when none is queued: `accept(until:)` without
    /// the wait, for a caller that polls `fileDescriptor` itself.
    /// The corresponding C call is `accept4(2)`.
    public func acceptIfQueued() throws(SystemCallError) -> TCPConnection? {
        guard let fd = try Syscalls.accept(descriptor) else { return nil }
        return TCPConnection(descriptor: fd, family: address.address.family)
    }
}
