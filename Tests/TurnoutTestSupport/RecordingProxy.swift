import Foundation
import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// A stand-in for the sidecar proxy: listens in a namespace, answers every connection with the
/// destination it was originally meant for, and records it.
///
/// What callers must know:
/// * Listens on each of `ports` on the wildcard address of both families (`0.0.0.0` and `[::]`,
///   IPv6-only so both can share the port). It never connects anywhere: a captured connection
///   ends here, so no rule can loop through it.
/// * Each accepted connection is answered with one line,
///   `proxy LISTENPORT orig=ADDR:PORT from=ADDR:PORT` (IPv6 in brackets: `orig=[fd00:30::5]:80`),
///   where `orig` is read with `SO_ORIGINAL_DST` (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6), i.e.
///   from conntrack: the destination before a `redirect`/DNAT. When that lookup fails (no NAT
///   happened, so conntrack has no translation) the line says `orig=errno:N` instead and the
///   record carries the errno. `from` is the client's address as the proxy saw it. The connection
///   is closed when the client closes it, or after 2 s.
/// * `connections` lists every connection accepted since the last `reset()`, oldest first, and
///   survives `stop()`/`start()`. A connection is recorded before its answer is sent, so a client
///   that read the answer may read `connections` at once.
/// * `stop()` closes the listeners (connections to the ports are then refused: the fail-closed
///   case); `start()` opens them again. Both are idempotent and may be called from any thread.
///   A proxy still running when its last reference goes away is stopped then, as a backstop.
public final class RecordingProxy: Sendable {
    /// One connection the proxy accepted.
    public struct Connection: Sendable, Equatable, CustomStringConvertible {
        /// The port the proxy accepted it on (15001 outbound, 15006 inbound by default).
        public var listenPort: UInt16
        /// Where the client meant to go, from conntrack; nil when the lookup failed.
        public var originalDestination: SocketAddress?
        /// The errno of the failed original-destination lookup (ENOENT: no translation); nil on
        /// success.
        public var originalDestinationErrno: Int32?
        /// The client's address and port as the proxy saw them.
        public var client: SocketAddress
        /// The local address and port the connection arrived on (`127.0.0.1:15001` or
        /// `[::1]:15001` after a `redirect` in the output hook).
        public var local: SocketAddress

        /// `orig=…` as in the answer line: the original destination, or `errno:N`.
        public var originalText: String {
            if let originalDestination { return originalDestination.description }
            return "errno:\(originalDestinationErrno ?? 0)"
        }

        /// The line the proxy answered this connection with.
        public var description: String { "proxy \(listenPort) orig=\(originalText) from=\(client)" }
    }

    /// The ports the stand-in listens on unless told otherwise: outbound 15001, inbound 15006.
    public static let defaultPorts: [UInt16] = [15001, 15006]

    /// The ports it listens on, on both families.
    public let ports: [UInt16]
    /// The namespace it listens in (`/run/netns/NAME`).
    public let namespacePath: String

    private let log = ConnectionLog()
    /// The running server, nil while stopped. The lock also serialises `start` and `stop`.
    private let server = Mutex<LineServer?>(nil)

    /// Makes a stopped proxy for the namespace at `namespacePath`; call `start()`.
    public init(namespacePath: String, ports: [UInt16] = RecordingProxy.defaultPorts) {
        self.namespacePath = namespacePath
        self.ports = ports
    }

    deinit {
        try? stop()
    }

    /// Every connection accepted since the last `reset()`, oldest first.
    public var connections: [Connection] { log.all }

    /// Forgets the recorded connections.
    public func reset() { log.clear() }

    /// Whether the listeners are open.
    public var isRunning: Bool { server.withLock { $0 != nil } }

    /// Opens the listeners (inside the namespace) and starts answering. Does nothing when it is
    /// already running. Throws `ServiceLabError` when a port cannot be bound (e.g. in use).
    public func start() throws {
        let path = namespacePath
        let ports = self.ports
        let log = self.log
        try server.withLock { running in
            guard running == nil else { return }
            let sockets = try LabSocket.listeners(in: path, ports: ports).map { port, fd in
                LineServer.Socket(fd: fd, kind: .tcp) { connection, client in
                    let record = Self.inspect(connection, listenPort: port, client: client)
                    log.append(record)
                    return record.description
                }
            }
            let started = LineServer(sockets: sockets)
            started.start()
            running = started
        }
    }

    /// Closes the listeners and every open connection; new connections to the ports are then
    /// refused. Does nothing when already stopped. Throws if the server thread did not stop in
    /// 5 s (the proxy counts as stopped anyway; its sockets are left to the process's exit).
    public func stop() throws {
        let running = server.withLock { running in
            defer { running = nil }
            return running
        }
        try running?.stop()
    }

    /// Reads what the proxy records about a connection it just accepted.
    private static func inspect(_ fd: Int32, listenPort: UInt16, client: SocketAddress) -> Connection {
        var local = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let localAddress = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        } == 0 ? SocketAddress(storage: local) : nil
        let family = Int32(local.ss_family)
        var connection = Connection(listenPort: listenPort, originalDestination: nil, originalDestinationErrno: nil,
                                    client: client, local: localAddress ?? SocketAddress(address: .v4(0), port: 0))
        (connection.originalDestination, connection.originalDestinationErrno) = originalDestination(fd, family: family)
        return connection
    }

    /// The connection's destination before NAT, from conntrack; or (nil and) the errno of the
    /// failed lookup (ENOENT: not redirected).
    static func originalDestination(_ fd: Int32, family: Int32) -> (SocketAddress?, Int32?) {
        do {
            return (try OriginalDestination.of(socket: fd, family: family == AF_INET6 ? .ipv6 : .ipv4), nil)
        } catch {
            return (nil, error.errno)
        }
    }
}

/// The proxy's record of connections, shared with its server thread; a mutex guards it.
private final class ConnectionLog: Sendable {
    private let entries = Mutex<[RecordingProxy.Connection]>([])
    var all: [RecordingProxy.Connection] { entries.withLock { $0 } }
    func append(_ connection: RecordingProxy.Connection) { entries.withLock { $0.append(connection) } }
    func clear() { entries.withLock { $0.removeAll() } }
}
