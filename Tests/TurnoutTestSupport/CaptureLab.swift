import Dispatch
import Foundation
import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// A lab for traffic-capture tests: a pod-like `app` namespace, the rest of the world in a
/// `peer` namespace, servers on both sides and a `RecordingProxy` in the app.
///
/// What callers must know:
/// * Layout. Two veth pairs join the namespaces: `eth0` (app `10.20.0.2/24`, `fd00:20::2/64`
///   ↔ peer `10.20.0.1/24`, `fd00:20::1/64`) and `eth1` (app `10.21.0.2/24`, `fd00:21::2/64`
///   ↔ peer `10.21.0.1/24`, `fd00:21::1/64`). The app's default routes go via the peer on eth0;
///   `10.40.0.0/24` and `fd00:40::/64` go via the peer on eth1. The peer also owns "world"
///   addresses on its `lo` (`worldIPv4`, `world2IPv4`, `worldIPv6`, `viaEth1IPv4`,
///   `viaEth1IPv6`). IPv6 duplicate address detection is off, so every address works at once.
///   The app's `lo` also holds `::6/128` (see `inboundPassthroughIPv6`) unless the lab was
///   started with `addsPassthroughIPv6: false`.
/// * Servers. The peer listens on `peerPorts` (wildcard, both families) and answers each
///   connection with `peer PORT from ADDR`; on UDP port 53 of each of its addresses it answers
///   every datagram with `peer-udp 53 from ADDR`. The app listens on `appPorts` and answers
///   `app PORT from ADDR`. ADDR is the client's address as the server saw it (no port, no
///   brackets). Connections are closed when the client closes them, or after 2 s. The servers
///   are sockets in this process polled by one thread, so nothing outlives the lab.
/// * Proxy. `proxy` is a running `RecordingProxy` in the app on `proxyPorts` (15001, 15006);
///   `stopProxy()` / `startProxy()` close and reopen it.
/// * Rules. The lab installs none: install them in `app` (`run(.app, "nft", …)`,
///   `NftablesBackend(namespacePath: lab.appPath, …)`, or the turnout binary through `run`).
/// * Clients. `connect` and `sendUDP` run on a short-lived thread that entered the namespace;
///   they may be called from any thread, and each is bounded by its `timeout`.
/// * Lifetime. Prefer `withCaptureLab { lab in … }`, which always tears down (servers stopped,
///   sockets closed, namespaces and state directory removed). With `start` call `stop()`; a lab
///   still running when its last reference goes away is stopped then, as a backstop. `start`
///   fails (and removes what it made) if the servers do not answer across the lab within 5 s.
///   Requires root and iproute2.
public final class CaptureLab: Sendable {
    /// Which namespace a client operation or command runs in.
    public enum Side: Sendable, CustomStringConvertible {
        /// The pod: where capture rules are installed and the proxy listens.
        case app
        /// Everything outside the pod.
        case peer

        public var description: String { self == .app ? "app" : "peer" }
    }

    /// How one TCP connection made by `connect` ended.
    public enum Reply: Sendable, Equatable, CustomStringConvertible {
        /// Connected and received this first line (without its newline).
        case answered(String)
        /// The SYN, or the connection before any line, was answered with a reset: nothing
        /// listens there (e.g. the proxy is stopped), or a `reject with tcp reset`.
        case refused
        /// No handshake, or no line and no close, within the time limit: a black hole or a
        /// silent server.
        case timedOut
        /// Connected, then closed by the other side (FIN) without sending a line.
        case closedWithoutAnswer
        /// The connect failed with another errno, e.g. EHOSTUNREACH or ENETUNREACH after an ICMP
        /// reject, or EPERM when a local rule drops the SYN on output.
        case failed(errno: Int32)

        public var description: String {
            switch self {
            case .answered(let line): "answered \"\(line)\""
            case .refused: "refused"
            case .timedOut: "timed out"
            case .closedWithoutAnswer: "closed without answer"
            case .failed(let code): "failed: \(String(cString: strerror(code))) (errno \(code))"
            }
        }

        /// The line, for `.answered`; nil otherwise.
        public var line: String? {
            if case .answered(let line) = self { return line }
            return nil
        }
    }

    // MARK: Addresses

    /// The app's address on eth0: the source of its connections to the world.
    public static let appIPv4 = "10.20.0.2"
    /// The app's IPv6 address on eth0.
    public static let appIPv6 = "fd00:20::2"
    /// The app's address on eth1: the source of connections that leave by eth1.
    public static let appEth1IPv4 = "10.21.0.2"
    /// The app's IPv6 address on eth1.
    public static let appEth1IPv6 = "fd00:21::2"
    /// The peer's address on eth0: the app's IPv4 default gateway, and the source of the peer's
    /// connections to `appIPv4`.
    public static let peerIPv4 = "10.20.0.1"
    /// The peer's IPv6 address on eth0: the app's IPv6 default gateway.
    public static let peerIPv6 = "fd00:20::1"
    /// The peer's address on eth1: the gateway for `viaEth1IPv4`.
    public static let peerEth1IPv4 = "10.21.0.1"
    /// The peer's IPv6 address on eth1: the gateway for `viaEth1IPv6`.
    public static let peerEth1IPv6 = "fd00:21::1"
    /// A world address (on the peer's lo) the app reaches through its default route, by eth0.
    public static let worldIPv4 = "10.30.0.5"
    /// A second world address, e.g. for rules that exclude one destination range but not another.
    public static let world2IPv4 = "10.31.0.5"
    /// An IPv6 world address the app reaches through its default route, by eth0.
    public static let worldIPv6 = "fd00:30::5"
    /// A world address the app reaches by eth1 (route `10.40.0.0/24 via 10.21.0.1`), for the
    /// excluded-interface scenario.
    public static let viaEth1IPv4 = "10.40.0.5"
    /// An IPv6 world address the app reaches by eth1 (route `fd00:40::/64 via fd00:21::1`).
    public static let viaEth1IPv6 = "fd00:40::5"
    /// The source the proxy uses to pass inbound connections through to the app (Istio's
    /// `127.0.0.6`). Inside 127.0.0.0/8, which is local on lo, so a client binds it as is.
    public static let inboundPassthroughIPv4 = "127.0.0.6"
    /// The IPv6 passthrough source (Istio's `::6`). Not local by itself: the lab puts `::6/128`
    /// on the app's lo (see `start`), since without it the bind fails and even a FREEBIND
    /// socket never gets the SYN-ACK (it is routed out of the default route instead).
    public static let inboundPassthroughIPv6 = "::6"

    /// The proxy's uid by convention (Istio's 1337): its sockets are never captured.
    public static let proxyUID: UInt32 = 1337
    /// The proxy's gid by convention (Istio's 1337).
    public static let proxyGID: UInt32 = 1337

    /// The peer's TCP ports unless told otherwise.
    public static let defaultPeerPorts: [UInt16] = [80, 443, 8080, 9000, 9001, 9100, 5432]
    /// The app's TCP ports unless told otherwise.
    public static let defaultAppPorts: [UInt16] = [8080, 9090]
    /// The peer's UDP echo port.
    public static let peerUDPPort: UInt16 = 53

    // MARK: State

    /// The pod's namespace: install capture rules here.
    public let app: NetworkNamespace
    /// The world's namespace.
    public let peer: NetworkNamespace
    /// The recording stand-in for the proxy, listening in `app`.
    public let proxy: RecordingProxy
    /// The TCP ports the peer listens on (both families, wildcard).
    public let peerPorts: [UInt16]
    /// The TCP ports the app listens on (both families, wildcard).
    public let appPorts: [UInt16]
    /// A private directory removed at teardown, e.g. for `NftablesBackend`'s `recordDirectory`.
    public let stateDirectory: String

    /// The app's namespace path, e.g. for `NftablesBackend(namespacePath:)`.
    public var appPath: String { app.path }
    /// The peer's namespace path.
    public var peerPath: String { peer.path }

    private let servers: LineServer
    private let isStopped = Atomic<Bool>(false)

    private init(app: NetworkNamespace, peer: NetworkNamespace, proxy: RecordingProxy, peerPorts: [UInt16],
                 appPorts: [UInt16], stateDirectory: String, servers: LineServer) {
        self.app = app
        self.peer = peer
        self.proxy = proxy
        self.peerPorts = peerPorts
        self.appPorts = appPorts
        self.stateDirectory = stateDirectory
        self.servers = servers
    }

    // MARK: Lifetime

    /// Builds the lab, starts the servers and the proxy, and checks that the app reaches the
    /// world (both routes, both families) and the peer reaches the app before returning.
    ///
    /// Namespaces are named `<prefix>-app-<pid>-<n>` and `<prefix>-peer-<pid>-<n>`. With
    /// `addsPassthroughIPv6: false` the app's lo gets no `::6/128`, for a test that checks the
    /// capture setup adds it itself. Throws `ServiceLabError` or `NetworkNamespaceError`;
    /// whatever was made is removed first.
    public static func start(prefix: String = "capture", peerPorts: [UInt16] = defaultPeerPorts,
                             appPorts: [UInt16] = defaultAppPorts, proxyPorts: [UInt16] = RecordingProxy.defaultPorts,
                             addsPassthroughIPv6: Bool = true) throws -> CaptureLab {
        var namespaces: [NetworkNamespace] = []
        var sockets: [LineServer.Socket] = []
        let stateDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("turnout-capture-\(getpid())-\(UUID().uuidString)").path
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            let app = try NetworkNamespace.create(prefix: "\(prefix)-app")
            namespaces.append(app)
            let peer = try NetworkNamespace.create(prefix: "\(prefix)-peer")
            namespaces.append(peer)
            // Before any interface exists, so every interface inherits it: no tentative IPv6 addresses.
            for namespace in namespaces {
                try namespace.sysctl("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
            }
            try wire(app: app, peer: peer, addsPassthroughIPv6: addsPassthroughIPv6)

            sockets += try tcpServers(in: peer, ports: peerPorts, name: "peer")
            sockets += try peerUDPServers(in: peer)
            sockets += try tcpServers(in: app, ports: appPorts, name: "app")
            let servers = LineServer(sockets: sockets)
            sockets = []  // the server owns them now
            let proxy = RecordingProxy(namespacePath: app.path, ports: proxyPorts)
            let lab = CaptureLab(app: app, peer: peer, proxy: proxy, peerPorts: peerPorts, appPorts: appPorts,
                                 stateDirectory: stateDirectory, servers: servers)
            namespaces = []  // the lab owns them now; stop() removes them
            servers.start()
            do {
                try proxy.start()
                try lab.checkServersAnswer()
            } catch {
                try? lab.stop()
                throw error
            }
            return lab
        } catch {
            for socket in sockets { close(socket.fd) }
            for namespace in namespaces.reversed() { try? namespace.remove() }
            try? FileManager.default.removeItem(atPath: stateDirectory)
            throw error
        }
    }

    /// Stops the proxy and the servers, closes their sockets, and removes both namespaces and
    /// the state directory. Calling it again does nothing. Tries every step even when one
    /// fails, then throws `ServiceLabError` naming what failed.
    public func stop() throws {
        guard !isStopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var teardown = Teardown("capture lab teardown")
        teardown.attempt("proxy") { try proxy.stop() }
        teardown.attempt { try servers.stop() }
        for namespace in [peer, app] {
            teardown.attempt { try namespace.remove() }
        }
        try? FileManager.default.removeItem(atPath: stateDirectory)
        try teardown.finish()
    }

    deinit {
        if !isStopped.load(ordering: .acquiring) { try? stop() }
    }

    /// Reopens the proxy's listeners (after `stopProxy()`); does nothing if it is running.
    public func startProxy() throws { try proxy.start() }

    /// Closes the proxy's listeners: connections redirected to its ports are then refused.
    public func stopProxy() throws { try proxy.stop() }

    /// The namespace of `side`.
    public func namespace(_ side: Side) -> NetworkNamespace { side == .app ? app : peer }

    /// Runs `executable arguments…` inside `side`'s namespace (see `NetworkNamespace.run`): a
    /// non-zero exit status is returned, not thrown.
    public func run(_ side: Side, _ executable: String, _ arguments: [String] = [], input: String? = nil,
                    timeLimit: Duration = .seconds(60)) throws -> ProcessResult {
        try namespace(side).run(executable, arguments, input: input, timeLimit: timeLimit)
    }

    // MARK: Clients

    /// Connects from `side` to `address`:`port` and returns the first line received (see
    /// `Reply`); the connection is then closed.
    ///
    /// * `uid` / `gid`: the socket is owned by them as netfilter sees it (`meta skuid`,
    ///   `meta skgid`, `-m owner`), i.e. created while the thread's fsuid/fsgid are set to them.
    ///   Either alone leaves the other at root's 0.
    /// * `source`: the socket is bound to this local address (any port) before connecting, e.g.
    ///   `inboundPassthroughIPv4`. It must be an address of `side` in the target's family.
    /// * `timeout` bounds the whole operation: handshake plus first line.
    /// Throws `ServiceLabError` for a lab failure (an address that does not parse, a bind or a
    /// credential change that fails), never for how the connection ended.
    public func connect(from side: Side, to address: String, port: UInt16, uid: UInt32? = nil, gid: UInt32? = nil,
                        source: String? = nil, timeout: Duration = .seconds(2)) throws -> Reply {
        try NamespaceThread.run(in: namespace(side).path, timeLimit: timeout + .seconds(5)) {
            try Self.exchange(to: address, port: port, owner: SocketOwner(uid: uid, gid: gid), source: source, timeout: timeout)
        }
    }

    /// A TCP connection left open across steps of a test (a rule change, a cleanup), made by
    /// `hold`. The test owns it: `release` closes it. Its descriptor works from any thread.
    public struct HeldConnection: Sendable {
        let fd: Int32
        /// The first line the server sent.
        public let firstLine: String
    }

    /// Connects like `connect`, reads the first line and keeps the connection open. Throws
    /// `ServiceLabError` when the connection is not answered.
    public func hold(from side: Side, to address: String, port: UInt16, uid: UInt32? = nil, gid: UInt32? = nil,
                     timeout: Duration = .seconds(2)) throws -> HeldConnection {
        try NamespaceThread.run(in: namespace(side).path, timeLimit: timeout + .seconds(5)) {
            let owner = SocketOwner(uid: uid, gid: gid)
            let target = try LabSocket.Address(address, port: port)
            let deadline = ContinuousClock.now + timeout
            let fd = try owner.socket(family: target.family, type: Int32(SOCK_STREAM.rawValue))
            var code: Int32 = 0
            if target.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 {
                code = errno
                if code == EINPROGRESS { code = LabSocket.waitForConnect(fd, deadline: deadline) }
            }
            let reply = code == 0 ? Self.readFirstLine(fd, deadline: deadline) : .failed(errno: code)
            guard case .answered(let line) = reply else {
                close(fd)
                throw ServiceLabError("hold \(address) port \(port): \(reply)")
            }
            return HeldConnection(fd: fd, firstLine: line)
        }
    }

    /// Whether a held connection still works end to end: a line sent on it is acknowledged
    /// without a reset or a close within `window`. A connection whose NAT was lost would reach
    /// the real destination, which knows nothing of it and answers with a reset.
    public func isAlive(_ connection: HeldConnection, window: Duration = .milliseconds(300)) -> Bool {
        let line = "still there?\n"
        guard send(connection.fd, line, line.utf8.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) == line.utf8.count else { return false }
        let deadline = ContinuousClock.now + window
        var buffer = [UInt8](repeating: 0, count: 512)
        while deadline.pollMilliseconds > 0 {
            var entry = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, deadline.pollMilliseconds)
            if ready < 0 && errno != EINTR { return false }
            if ready <= 0 { continue }
            let count = recv(connection.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count == 0 { return false }
            if count < 0 && errno != EAGAIN && errno != EINTR { return false }
        }
        // Unacknowledged data would be retransmitted, not reported: check that none is left.
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(connection.fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0 else { return false }
        return info.tcpi_unacked == 0 && info.tcpi_state == UInt8(TCP_ESTABLISHED)
    }

    /// Closes a held connection.
    public func release(_ connection: HeldConnection) {
        close(connection.fd)
    }

    /// Sends one UDP datagram from `side` to `address`:`port` (with a socket owned by `uid` /
    /// `gid`, as in `connect`) and returns the first datagram that comes back, or nil when none
    /// does within `timeout` (also when an ICMP port unreachable comes back instead).
    public func sendUDP(from side: Side, to address: String, port: UInt16, uid: UInt32? = nil, gid: UInt32? = nil,
                        timeout: Duration = .seconds(2)) throws -> String? {
        try NamespaceThread.run(in: namespace(side).path, timeLimit: timeout + .seconds(5)) {
            try Self.datagram(to: address, port: port, owner: SocketOwner(uid: uid, gid: gid), timeout: timeout)
        }
    }

    /// One TCP exchange, on a thread already inside the namespace.
    private static func exchange(to address: String, port: UInt16, owner: SocketOwner, source: String?,
                                 timeout: Duration) throws -> Reply {
        let target = try LabSocket.Address(address, port: port)
        let deadline = ContinuousClock.now + timeout
        let fd = try owner.socket(family: target.family, type: Int32(SOCK_STREAM.rawValue))
        defer { close(fd) }
        if let source { try bind(fd, to: source, family: target.family) }
        var code: Int32 = 0
        if target.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 {
            code = errno
            if code == EINPROGRESS { code = LabSocket.waitForConnect(fd, deadline: deadline) }
        }
        switch code {
        case 0: break
        case ECONNREFUSED, ECONNRESET: return .refused
        case ETIMEDOUT: return .timedOut
        default: return .failed(errno: code)
        }
        return readFirstLine(fd, deadline: deadline)
    }

    /// Reads up to the first newline. Unlike `LabSocket.readLine` it tells a close (FIN) from
    /// the deadline, and a reset from other errors.
    private static func readFirstLine(_ fd: Int32, deadline: ContinuousClock.Instant) -> Reply {
        var buffer: [UInt8] = []
        return .readLine(fd, buffer: &buffer, deadline: deadline)
    }

    /// One UDP request and its answer, on a thread already inside the namespace.
    private static func datagram(to address: String, port: UInt16, owner: SocketOwner, timeout: Duration) throws -> String? {
        let target = try LabSocket.Address(address, port: port)
        let deadline = ContinuousClock.now + timeout
        let fd = try owner.socket(family: target.family, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(fd) }
        // Connected, so only the target's answer is accepted (from the address it was sent to).
        guard target.withSockaddr({ Glibc.connect(fd, $0, $1) }) == 0 else {
            throw ServiceLabError.system("connect(udp \(address):\(port))")
        }
        let request = "ping\n"
        guard send(fd, request, request.utf8.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) >= 0 else {
            throw ServiceLabError.system("send(udp \(address):\(port))")
        }
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let remaining = deadline.pollMilliseconds
            if remaining <= 0 { return nil }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, remaining)
            if ready < 0 && errno != EINTR { throw ServiceLabError.system("poll") }
            if ready <= 0 { continue }
            let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count >= 0 {
                var text = String(decoding: buffer[..<count], as: UTF8.self)
                if text.hasSuffix("\n") { text.removeLast() }
                return text
            }
            if errno == ECONNREFUSED { return nil }  // ICMP port unreachable: no answer is coming
            if errno != EAGAIN && errno != EINTR { throw ServiceLabError.system("recv(udp \(address):\(port))") }
        }
    }

    /// Binds `fd` to `source`, any port.
    ///
    /// No IP_FREEBIND / IPV6_FREEBIND: 127.0.0.6 is local already (all of 127.0.0.0/8 is, on
    /// lo), and ::6 must be a real address of the namespace anyway (see
    /// `inboundPassthroughIPv6`), so an address the namespace lacks fails here, loudly.
    private static func bind(_ fd: Int32, to source: String, family: Int32) throws {
        let address = try LabSocket.Address(source, port: 0)
        guard address.family == family else {
            throw ServiceLabError("source \(source) is not in the target's family")
        }
        guard address.withSockaddr({ Glibc.bind(fd, $0, $1) }) == 0 else {
            throw ServiceLabError.system("bind(\(source)) (is it an address of this namespace?)")
        }
    }

    // MARK: Setup

    /// Creates the veth pairs, addresses and routes described on the type.
    private static func wire(app: NetworkNamespace, peer: NetworkNamespace, addsPassthroughIPv6: Bool) throws {
        try IPBatch.run([
            "link add eth0 netns \(app.name) type veth peer name eth0 netns \(peer.name)",
            "link add eth1 netns \(app.name) type veth peer name eth1 netns \(peer.name)",
        ])
        var appCommands = [
            "link set eth0 up",
            "link set eth1 up",
            "addr add \(appIPv4)/24 dev eth0",
            "addr add \(appIPv6)/64 dev eth0 nodad",
            "addr add \(appEth1IPv4)/24 dev eth1",
            "addr add \(appEth1IPv6)/64 dev eth1 nodad",
            "route add default via \(peerIPv4)",
            "route add ::/0 via \(peerIPv6)",
            "route add 10.40.0.0/24 via \(peerEth1IPv4)",
            "route add fd00:40::/64 via \(peerEth1IPv6)",
        ]
        if addsPassthroughIPv6 { appCommands.append("addr add \(inboundPassthroughIPv6)/128 dev lo nodad") }
        try IPBatch.run(in: app, appCommands)
        // The peer answers for the world addresses on its lo from any interface; its replies go
        // back over the connected subnets, so it needs no other routes.
        try IPBatch.run(in: peer, [
            "link set eth0 up",
            "link set eth1 up",
            "addr add \(peerIPv4)/24 dev eth0",
            "addr add \(peerIPv6)/64 dev eth0 nodad",
            "addr add \(peerEth1IPv4)/24 dev eth1",
            "addr add \(peerEth1IPv6)/64 dev eth1 nodad",
            "addr add \(worldIPv4)/32 dev lo",
            "addr add \(world2IPv4)/32 dev lo",
            "addr add \(worldIPv6)/128 dev lo nodad",
            "addr add \(viaEth1IPv4)/32 dev lo",
            "addr add \(viaEth1IPv6)/128 dev lo nodad",
        ])
    }

    /// Every address the peer owns: its UDP echo binds each one (see `peerUDPServers`).
    private static let peerAddresses = [peerIPv4, peerEth1IPv4, worldIPv4, world2IPv4, viaEth1IPv4,
                                        peerIPv6, peerEth1IPv6, worldIPv6, viaEth1IPv6]

    /// Wildcard TCP listeners on both families for each port, answering `NAME PORT from ADDR`.
    private static func tcpServers(in namespace: NetworkNamespace, ports: [UInt16], name: String) throws -> [LineServer.Socket] {
        try LabSocket.listeners(in: namespace.path, ports: ports).map { port, fd in
            LineServer.Socket(fd: fd, kind: .tcp) { _, client in "\(name) \(port) from \(client.address)" }
        }
    }

    /// The peer's UDP echo: one socket per peer address rather than one on the wildcard, so each
    /// answer leaves from the address the request was sent to (a wildcard socket would answer
    /// from the route's preferred source, which the client's connected socket would discard).
    private static func peerUDPServers(in peer: NetworkNamespace) throws -> [LineServer.Socket] {
        let addresses = peerAddresses
        let port = peerUDPPort
        let fds = try NamespaceThread.run(in: peer.path, timeLimit: .seconds(10)) { () throws -> [Int32] in
            var fds: [Int32] = []
            do {
                for address in addresses {
                    let local = try LabSocket.Address(address, port: port)
                    let fd = socket(local.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                    guard fd >= 0 else { throw ServiceLabError.system("socket(udp)") }
                    fds.append(fd)
                    guard local.withSockaddr({ Glibc.bind(fd, $0, $1) }) == 0 else {
                        throw ServiceLabError.system("bind(udp \(address):\(port))")
                    }
                }
            } catch {
                for fd in fds { close(fd) }
                throw error
            }
            return fds
        }
        return fds.map { fd in
            LineServer.Socket(fd: fd, kind: .udp) { _, client in "peer-udp \(port) from \(client.address)" }
        }
    }

    /// The app reaches the peer by both routes in both families, and the peer reaches the app,
    /// within 5 s: proof the wiring and the servers work before any test relies on them.
    private func checkServersAnswer() throws {
        var checks: [(Side, String, UInt16, String)] = []
        if let port = peerPorts.first {
            for (address, source) in [(Self.worldIPv4, Self.appIPv4), (Self.worldIPv6, Self.appIPv6),
                                      (Self.viaEth1IPv4, Self.appEth1IPv4), (Self.viaEth1IPv6, Self.appEth1IPv6)] {
                checks.append((.app, address, port, "peer \(port) from \(source)"))
            }
        }
        if let port = appPorts.first {
            checks.append((.peer, Self.appIPv4, port, "app \(port) from \(Self.peerIPv4)"))
            checks.append((.peer, Self.appIPv6, port, "app \(port) from \(Self.peerIPv6)"))
        }
        let deadline = ContinuousClock.now + .seconds(5)
        for (side, address, port, expected) in checks {
            while true {
                let reply = try connect(from: side, to: address, port: port, timeout: .milliseconds(500))
                if reply == .answered(expected) { break }
                guard ContinuousClock.now < deadline else {
                    throw ServiceLabError("capture lab: \(side) → \(address) port \(port) gave \(reply), expected \"\(expected)\"")
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }
}

/// Runs `body` with a started `CaptureLab` and always tears it down afterwards, also when `body`
/// throws.
///
/// An error from `body` wins over a teardown error (which is then printed to stderr, so a leaked
/// namespace is never silent); a teardown error alone is thrown.
public func withCaptureLab<Result>(prefix: String = "capture", peerPorts: [UInt16] = CaptureLab.defaultPeerPorts,
                                   appPorts: [UInt16] = CaptureLab.defaultAppPorts,
                                   proxyPorts: [UInt16] = RecordingProxy.defaultPorts, addsPassthroughIPv6: Bool = true,
                                   _ body: (CaptureLab) throws -> Result) throws -> Result {
    try withStartedLab("CaptureLab", start: { try CaptureLab.start(prefix: prefix, peerPorts: peerPorts, appPorts: appPorts, proxyPorts: proxyPorts,
                                   addsPassthroughIPv6: addsPassthroughIPv6) }, stop: { try $0.stop() }, body)
}

/// Who owns a client socket as netfilter sees it: the fsuid/fsgid it was created under.
///
/// `meta skuid`/`skgid` and `-m owner` read the credentials of the socket's file, which are the
/// creating thread's at `socket(2)`; their fsuid/fsgid, not euid, is what they compare. On Linux
/// credentials belong to the thread (task), and glibc's `setfsuid`/`setfsgid` are plain syscalls
/// it does not broadcast to the other threads, unlike `setuid`.
struct SocketOwner {
    var uid: UInt32?
    var gid: UInt32?

    /// `setfsuid`/`setfsgid` take an id and return the previous one; never an error code.
    private typealias SetFilesystemID = @convention(c) (UInt32) -> Int32

    /// Passing an invalid id changes nothing and returns the current one: the documented way to
    /// read the fsuid/fsgid back and check that a change took.
    private static let query = UInt32.max

    /// A socket of `family`/`type`, non-blocking and close-on-exec, created under `uid`/`gid`.
    ///
    /// Why changing credentials here is safe: this runs only on the lab's own short-lived thread
    /// (`NamespaceThread.run`), never on a shared one; the change is per-thread, so no other
    /// thread of the process (test, server, Swift's pool) sees it; and both ids go back to their
    /// previous values (root's) right after `socket(2)`, before anything else runs on the thread.
    /// If restoring fails the error is thrown, and the thread ends right after anyway.
    func socket(family: Int32, type: Int32) throws -> Int32 {
        let flags = type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard uid != nil || gid != nil else {
            let fd = Glibc.socket(family, flags, 0)
            guard fd >= 0 else { throw ServiceLabError.system("socket") }
            return fd
        }
        let setfsuid = try Self.function("setfsuid"), setfsgid = try Self.function("setfsgid")
        let previousGID = UInt32(bitPattern: setfsgid(Self.query))
        let previousUID = UInt32(bitPattern: setfsuid(Self.query))
        // gid before uid, restored in reverse: moving fsuid off 0 drops the filesystem
        // capabilities from the thread's effective set. CAP_SETGID is not one of them, but this
        // order does not depend on that.
        var problem: String?
        if let gid {
            _ = setfsgid(gid)
            if UInt32(bitPattern: setfsgid(Self.query)) != gid { problem = "setfsgid(\(gid)) did not take (not root?)" }
        }
        if problem == nil, let uid {
            _ = setfsuid(uid)
            if UInt32(bitPattern: setfsuid(Self.query)) != uid { problem = "setfsuid(\(uid)) did not take (not root?)" }
        }
        var fd: Int32 = -1
        var socketErrno: Int32 = 0
        if problem == nil {
            fd = Glibc.socket(family, flags, 0)
            socketErrno = errno
        }
        _ = setfsuid(previousUID)
        _ = setfsgid(previousGID)
        let restored = UInt32(bitPattern: setfsuid(Self.query)) == previousUID
            && UInt32(bitPattern: setfsgid(Self.query)) == previousGID
        if let problem {
            if fd >= 0 { close(fd) }
            throw ServiceLabError(problem)
        }
        guard restored else {
            if fd >= 0 { close(fd) }
            throw ServiceLabError("could not restore fsuid \(previousUID) / fsgid \(previousGID) after creating a socket")
        }
        guard fd >= 0 else { throw ServiceLabError.system("socket (as uid \(uid.map(String.init) ?? "0"), gid \(gid.map(String.init) ?? "0"))", socketErrno) }
        return fd
    }

    /// Glibc's wrapper for `name`. Swift's Glibc module does not import <sys/fsuid.h>, and this
    /// target may depend on no C target of ours: look the symbol up, as `NamespaceThread` does.
    private static func function(_ name: String) throws -> SetFilesystemID {
        guard let symbol = dlsym(nil, name) else { throw ServiceLabError("libc has no \(name)") }
        return unsafeBitCast(symbol, to: SetFilesystemID.self)
    }
}

/// The capture lab's servers: one thread polls TCP listeners and UDP sockets, and each answers
/// with one line made from the client's address.
///
/// TCP: every accepted connection gets its answer at once and is closed when the client closes
/// it or after `lingerLimit`; anything the client sends is read and ignored. UDP: every datagram
/// is answered with one datagram to its sender. Sockets are created by the caller (inside their
/// namespace) and owned by the server from then on; `stop()` closes them all.
final class LineServer: Sendable {
    /// Makes the answer for a client: given the accepted connection (TCP) or the receiving
    /// socket (UDP), and the client's address. Called on the server thread.
    typealias Answer = @Sendable (_ fd: Int32, _ client: SocketAddress) -> String

    /// A socket to serve and how to answer on it.
    struct Socket: Sendable {
        enum Kind: Sendable {
            /// A listening TCP socket.
            case tcp
            /// A bound UDP socket.
            case udp
        }

        var fd: Int32
        var kind: Kind
        var answer: Answer
    }

    /// How long an accepted connection is kept open when the client does not close it: only a
    /// backstop (tests release what they hold, and `stop()` closes the rest). Long, because a
    /// held connection must outlive a whole test step on a loaded machine: at 5 s the drain
    /// tests' held connection could be closed by the server under them.
    static let lingerLimit: Duration = .seconds(60)

    private let sockets: [Socket]
    private let thread = ServerThread(label: "the capture lab's servers")

    init(sockets: [Socket]) {
        self.sockets = sockets
    }

    func start() {
        thread.start { [self] in run() }
    }

    /// Stops the loop, waits at most 5 s for it, and closes every socket (see `ServerThread`).
    func stop() throws {
        try thread.stop { for socket in sockets { close(socket.fd) } }
    }

    private func run() {
        var connections: [(fd: Int32, opened: ContinuousClock.Instant)] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        defer {
            for connection in connections { close(connection.fd) }
            for socket in sockets { close(socket.fd) }
        }
        while !thread.isStopping {
            let now = ContinuousClock.now
            connections.removeAll { connection in
                guard now - connection.opened >= Self.lingerLimit else { return false }
                close(connection.fd)
                return true
            }
            var entries = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
                + connections.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&entries, nfds_t(entries.count), 20)
            if ready <= 0 { continue }

            // Connections first, while `connections` still matches the poll entries.
            var finished = Set<Int>()
            for (offset, connection) in connections.enumerated() where entries[sockets.count + offset].revents != 0 {
                let count = recv(connection.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR) {
                    close(connection.fd)
                    finished.insert(offset)
                }
            }
            connections = connections.enumerated().filter { !finished.contains($0.offset) }.map(\.element)

            for (index, socket) in sockets.enumerated() where entries[index].revents != 0 {
                switch socket.kind {
                case .tcp: accept(on: socket, into: &connections)
                case .udp: answerDatagrams(on: socket, buffer: &buffer)
                }
            }
        }
    }

    /// Accepts until EAGAIN (the listener is non-blocking) and answers each connection.
    private func accept(on socket: Socket, into connections: inout [(fd: Int32, opened: ContinuousClock.Instant)]) {
        while true {
            var client = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &client) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(socket.fd, $0, &length) }
            }
            if fd < 0 { return }
            // accept(2) does not inherit close-on-exec; keep children (nft, ip) from holding the
            // connection open after we close it.
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let line = (SocketAddress(storage: client).map { socket.answer(fd, $0) } ?? "unknown client") + "\n"
            _ = send(fd, line, line.utf8.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            connections.append((fd, ContinuousClock.now))
        }
    }

    /// Answers every waiting datagram with one datagram back to its sender.
    private func answerDatagrams(on socket: Socket, buffer: inout [UInt8]) {
        while true {
            var client = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = withUnsafeMutablePointer(to: &client) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(socket.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT), $0, &length)
                }
            }
            if count < 0 { return }
            guard let sender = SocketAddress(storage: client) else { continue }
            let line = socket.answer(socket.fd, sender) + "\n"
            _ = withUnsafePointer(to: &client) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(socket.fd, line, line.utf8.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), $0, length)
                }
            }
        }
    }
}
