import Dispatch
import Foundation
import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// A lab for the transparent proxy's scenarios: one namespace where an app (uid 1000) is
/// captured by the lab's own nft rules, the proxy (this process, root, never captured) listens
/// on 15001, and upstream servers on loopback answer in ways a test can check.
///
/// What callers must know:
/// * Addresses. `10.96.0.0/16` (service VIPs) and `198.18.0.0/24` (other destinations) are
///   routed on `lo` with `src 127.0.0.1` (without it connects hang); `fd00:96::/64` too (IPv6
///   needs no `src`). `198.18.0.5` and `fd00:96::5` are addresses of `lo`
///   (``passthroughIPv4``, ``passthroughIPv6``), so a server can listen on a captured
///   destination no table knows: the passthrough case.
/// * Capture. Table `inet proxylab`: TCP from uid 1000 (`meta skuid 1000`) to those three
///   ranges is redirected to port 15001 (`127.0.0.1:15001`, `[::1]:15001`); nothing else is.
///   The proxy's own connections (root) and the test's direct ones (root) pass untouched.
/// * Upstreams. ``startUpstream(_:)`` binds a server in the lab (or behind the delay wire) that
///   answers as its ``UpstreamKind`` says; ``kill(_:)`` stops one without losing a connection
///   it already completed (see there) and ``startUpstream(_:)`` starts it again.
///   ``startExternalUpstream(_:)`` runs an identity server in a child process of its own, for
///   scenarios whose descriptors would not fit in this process next to the proxy's.
/// * Proxy. ``startProxy(_:table:)`` builds a ``TransparentProxy`` on a thread inside the
///   namespace: its listeners and worker threads live there. Its log lines are in ``proxyLog``.
/// * Clients. ``connect(to:port:uid:timeout:)`` and the others make their sockets on a
///   short-lived thread inside the namespace, owned by `uid` (default 1000, captured; `nil` for
///   root, not captured) as netfilter sees it. Every wait has a deadline.
/// * Lifetime. Prefer `withProxyLab { lab in … }`: proxies stopped, servers stopped, child
///   processes ended, namespaces removed, also when the body throws. Requires root, iproute2,
///   nft and (for the child-process servers and the delay wire) /usr/bin/python3.
public final class ProxyLab: Sendable {
    /// What an upstream server does with a connection.
    public enum UpstreamKind: String, Sendable, Hashable {
        /// Sends its ``Upstream/greeting`` on accept, then the greeting again for every line it
        /// receives; closes when the client does.
        case identity
        /// Sends back every byte it receives; passes the client's end of stream on.
        case echo
        /// Reads to the end of stream, then answers the SHA-256 (64 lowercase hex digits and a
        /// newline) of everything it read, and closes. The answer and the FIN leave in one
        /// segment (`MSG_MORE`, then `shutdown`), as an HTTP server's last write and close often do.
        case digest
        /// Sends its greeting on accept; resets the connection (RST) when the first line comes:
        /// an upstream that fails in the middle of a relay.
        case abort
        /// Sends its greeting on accept, then reads and ignores everything, and keeps its side
        /// open after the client's end of stream: a peer that forgot a half-closed connection.
        case lingering
    }

    /// One upstream server: where it listens and what it does.
    public struct Upstream: Sendable, Hashable, CustomStringConvertible {
        public var address: String
        public var port: UInt16
        public var kind: UpstreamKind

        public init(_ address: String = "127.0.0.1", port: UInt16, kind: UpstreamKind = .identity) {
            self.address = address
            self.port = port
            self.kind = kind
        }

        /// The identity answer: `port N` on 127.0.0.1, `port N at ADDR` anywhere else.
        public var greeting: String { ProxyLab.greeting(address: address, port: port) }

        /// The endpoint as the proxy labels its counters (``UpstreamKey/endpoint``):
        /// `127.0.0.1:8081`, `[::1]:8081`.
        public var endpoint: String { "\(socketAddress)" }

        var socketAddress: SocketAddress { SocketAddress(address: IPAddress(address)!, port: port) }

        public var description: String { "\(kind) \(endpoint)" }
    }

    /// How one client connection ended; see ``CaptureLab/Reply``. `.refused` is a reset, before
    /// or after the handshake: what a client sees when the proxy refuses a connection.
    public typealias Reply = CaptureLab.Reply

    public static let appUID: UInt32 = 1000
    public static let outboundPort: UInt16 = 15001
    public static let serviceRangeIPv4 = "10.96.0.0/16"
    public static let passthroughRangeIPv4 = "198.18.0.0/24"
    public static let serviceRangeIPv6 = "fd00:96::/64"
    /// A captured destination that is an address of `lo`, for servers no table routes to.
    public static let passthroughIPv4 = "198.18.0.5"
    public static let passthroughIPv6 = "fd00:96::5"
    /// The lab's side of the delay wire, and the far side (where delayed upstreams listen).
    public static let delayWireNearIPv4 = "10.99.0.1"
    public static let delayedIPv4 = "10.99.0.2"
    /// The lab's nft table.
    public static let tableName = "proxylab"

    /// The identity greeting of a server at `address`:`port`.
    public static func greeting(address: String, port: UInt16) -> String {
        address == "127.0.0.1" ? "port \(port)" : "port \(port) at \(address)"
    }

    /// The proxy configuration the lab's capture expects: outbound on `0.0.0.0:15001` and
    /// `[::]:15001`, no inbound, `workers` workers on `io`; everything else at its default.
    public static func configuration(workers: Int = 2, io: ProxyConfiguration.IOEngine = .auto) -> ProxyConfiguration {
        var configuration = ProxyConfiguration(outbound: [SocketAddress("0.0.0.0:\(outboundPort)")!, SocketAddress("[::]:\(outboundPort)")!],
                                               inbound: [], workers: workers)
        configuration.io = io
        return configuration
    }

    /// The worker engines a scenario runs on: both, or only epoll where io_uring is not
    /// available (unless the kernel tests are required, where its absence must fail).
    public static var engines: [ProxyConfiguration.IOEngine] {
        TransparentProxy.uringUnavailability() == nil || KernelLab.isRequired ? [.uring, .epoll] : [.epoll]
    }

    /// A table from YAML in Turnout's own format (decoded and validated as the CLI does).
    public static func table(_ yaml: String) throws -> ServiceTable {
        try TableDecoder.decode(yaml, name: "proxy-lab.yaml")
    }

    /// The lab's namespace: the app, the proxy and the upstreams.
    public let namespace: NetworkNamespace
    /// A private directory removed at teardown (tables for the CLI, say).
    public let stateDirectory: String

    private let servers = Mutex<[Upstream: UpstreamServer]>([:])
    private let proxies = Mutex<[TransparentProxy]>([])
    private let children = Mutex<[LabProcess]>([])
    private let farNamespace = Mutex<NetworkNamespace?>(nil)
    private let log = Locked<[String]>([])
    private let killing = Mutex(())
    private let isStopped = Atomic<Bool>(false)

    public var path: String { namespace.path }

    private init(namespace: NetworkNamespace, stateDirectory: String) {
        self.namespace = namespace
        self.stateDirectory = stateDirectory
    }

    // MARK: Lifetime

    /// Builds the namespace, its routes and capture rules, and starts `upstreams` (each checked
    /// to answer directly within 5 s). Whatever was made is removed when this throws.
    public static func start(prefix: String = "proxylab", upstreams: [Upstream] = []) throws -> ProxyLab {
        let stateDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("turnout-proxylab-\(getpid())-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let namespace: NetworkNamespace
        do {
            namespace = try NetworkNamespace.create(prefix: prefix)
        } catch {
            try? FileManager.default.removeItem(atPath: stateDirectory)
            throw error
        }
        let lab = ProxyLab(namespace: namespace, stateDirectory: stateDirectory)
        do {
            try IPBatch.run(in: namespace, [
                "route add \(serviceRangeIPv4) dev lo src 127.0.0.1",
                "route add \(passthroughRangeIPv4) dev lo src 127.0.0.1",
                "addr add \(passthroughIPv4)/32 dev lo",
                "route add \(serviceRangeIPv6) dev lo",
                "addr add \(passthroughIPv6)/128 dev lo nodad",
            ])
            try lab.nft("""
                table inet \(tableName) {
                  chain capture {
                    type nat hook output priority -100; policy accept;
                    meta skuid \(appUID) meta l4proto tcp ip daddr { \(serviceRangeIPv4), \(passthroughRangeIPv4) } redirect to :\(outboundPort)
                    meta skuid \(appUID) meta l4proto tcp ip6 daddr \(serviceRangeIPv6) redirect to :\(outboundPort)
                  }
                  chain gate {
                    type filter hook output priority 0; policy accept;
                  }
                }
                """)
            for upstream in upstreams { try lab.startUpstream(upstream) }
        } catch {
            try? lab.stop()
            throw error
        }
        return lab
    }

    /// Stops every proxy started here, every server and child process, removes the namespaces
    /// and the state directory. Calling it again does nothing. Tries every step, then throws
    /// `ServiceLabError` naming what failed.
    public func stop() throws {
        guard !isStopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var teardown = Teardown("proxy lab teardown")
        for proxy in proxies.withLock({ proxies in defer { proxies = [] }; return proxies }) { proxy.stop() }
        for server in servers.withLock({ servers in defer { servers = [:] }; return Array(servers.values) }) {
            teardown.attempt { try server.stop() }
        }
        for child in children.withLock({ children in defer { children = [] }; return children }) { child.stop() }
        if let far = farNamespace.withLock({ $0 }) {
            teardown.attempt { try far.remove() }
        }
        teardown.attempt { try namespace.remove() }
        try? FileManager.default.removeItem(atPath: stateDirectory)
        try teardown.finish()
    }

    deinit {
        if !isStopped.load(ordering: .acquiring) { try? stop() }
    }

    /// Runs `executable arguments…` in the lab's namespace (see `NetworkNamespace.run`).
    public func run(_ executable: String, _ arguments: [String] = [], input: String? = nil,
                    timeLimit: Duration = .seconds(60)) throws -> ProcessResult {
        try namespace.run(executable, arguments, input: input, timeLimit: timeLimit)
    }

    /// Applies nft commands (`nft -f -`) in the lab's namespace; throws with nft's complaint.
    public func nft(_ commands: String) throws {
        let result = try namespace.run("nft", ["-f", "-"], input: commands + "\n", timeLimit: .seconds(30))
        guard result.status == 0 else { throw ServiceLabError("nft in \(namespace.name): \(result.standardError)\n\(commands)") }
    }

    // MARK: The proxy

    /// Starts a ``TransparentProxy`` inside the namespace with `table`; it is stopped at teardown
    /// at the latest (stopping it earlier is fine: `stop()` is idempotent).
    public func startProxy(_ configuration: ProxyConfiguration = ProxyLab.configuration(), table: ServiceTable) throws -> TransparentProxy {
        let log = self.log
        let proxy = try NamespaceThread.run(in: path, timeLimit: .seconds(30)) { () throws -> TransparentProxy in
            try TransparentProxy(configuration: configuration, table: table) { line in log.mutate { $0.append(line) } }
        }
        proxies.withLock { $0.append(proxy) }
        return proxy
    }

    /// Every line the proxies started here logged, oldest first.
    public var proxyLog: [String] { log.value }

    // MARK: Upstreams

    /// Binds `upstream` and serves it until ``kill(_:)`` or teardown; checks that it answers a
    /// direct (uncaptured) connection first. An upstream at ``delayedIPv4`` lives behind the
    /// delay wire (``startDelayWire(delay:)`` first).
    public func startUpstream(_ upstream: Upstream) throws {
        var namespacePath = path
        if upstream.address == Self.delayedIPv4 {
            guard let far = farNamespace.withLock({ $0 }) else { throw ServiceLabError("\(upstream): start the delay wire first") }
            namespacePath = far.path
        }
        let fd = try NamespaceThread.run(in: namespacePath, timeLimit: .seconds(10)) { () throws -> Int32 in
            try LabClient.listen(upstream.socketAddress)
        }
        let server = UpstreamServer(upstream: upstream, listener: fd)
        let previous = servers.withLock { servers in
            defer { servers[upstream] = server }
            return servers[upstream]
        }
        try previous?.stop()
        server.start()
        if upstream.kind == .identity {
            let deadline = ContinuousClock.now + .seconds(5)
            while true {
                let reply = try connect(to: upstream.address, port: upstream.port, uid: nil, timeout: .seconds(1))
                if reply == .answered(upstream.greeting) { break }
                guard ContinuousClock.now < deadline else { throw ServiceLabError("upstream \(upstream) does not answer directly: \(reply)") }
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
    }

    /// Kills `upstream` as a crashed server would look to a proxy connecting to it (refused),
    /// without the race a plain `close` has: connections whose handshake the kernel completed
    /// but the server had not accepted yet would be reset with the listener, and no proxy could
    /// retry them (they count as established). So: SYNs to it are first answered with a reset by
    /// an nft rule, then the server accepts and answers every connection already queued, closes
    /// them and its listener, and the rule goes (nothing listens, so the kernel refuses).
    public func kill(_ upstream: Upstream) throws {
        try killing.withLock { _ throws in
            guard let server = servers.withLock({ $0.removeValue(forKey: upstream) }) else {
                throw ServiceLabError("upstream \(upstream) is not running")
            }
            let family = upstream.address.contains(":") ? "ip6" : "ip"
            try nft("add rule inet \(Self.tableName) gate \(family) daddr \(upstream.address) tcp dport \(upstream.port) tcp flags syn reject with tcp reset")
            defer { try? nft("flush chain inet \(Self.tableName) gate") }
            try server.stop()
        }
    }

    /// Runs an identity server for `upstream` in a child process (python3 in the namespace), so
    /// its descriptors count against that process's limit rather than this one's. Ended at
    /// teardown, or by `stop()` on the returned process.
    public func startExternalUpstream(_ upstream: Upstream) throws -> LabProcess {
        guard upstream.kind == .identity else { throw ServiceLabError("external upstreams are identity servers only") }
        let child = try LabProcess(try Subprocess.locate("ip"),
                                   ["netns", "exec", namespace.name, "/usr/bin/python3", "-c", Self.holdServerScript,
                                    upstream.address, "\(upstream.port)", upstream.greeting])
        children.withLock { $0.append(child) }
        guard child.waitForOutput("ready", within: .seconds(10)) else {
            child.stop()
            throw ServiceLabError("external upstream \(upstream) did not start: \(child.standardError)")
        }
        return child
    }

    /// A second namespace joined to the lab by a "delay wire": two TUN devices whose packets a
    /// python3 child copies across after `delay`, each way (this kernel has no netem). The lab
    /// side is ``delayWireNearIPv4``, the far side ``delayedIPv4``; ``startUpstream(_:)`` with
    /// that address serves there, so every connect to it takes at least twice `delay`.
    public func startDelayWire(delay: Duration) throws {
        let far = try NetworkNamespace.create(prefix: "proxylab-far")
        farNamespace.withLock { $0 = far }
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        let child = try LabProcess(try Subprocess.locate("ip"),
                                   ["netns", "exec", namespace.name, "/usr/bin/python3", "-c", Self.delayWireScript,
                                    "wire0", "wire1", "\(seconds)"])
        children.withLock { $0.append(child) }
        guard child.waitForOutput("ready", within: .seconds(10)) else {
            throw ServiceLabError("the delay wire did not start: \(child.standardError)")
        }
        try IPBatch.run(in: namespace, ["link set wire1 netns \(far.name)", "addr add \(Self.delayWireNearIPv4)/30 dev wire0", "link set wire0 up"])
        try IPBatch.run(in: far, ["addr add \(Self.delayedIPv4)/30 dev wire1", "link set wire1 up"])
    }

    // MARK: Clients

    /// Connects to `address`:`port` as `uid` (nil: root, not captured), reads the first line
    /// and closes. `timeout` bounds the handshake plus the line.
    public func connect(to address: String, port: UInt16, uid: UInt32? = ProxyLab.appUID,
                        timeout: Duration = .seconds(2)) throws -> Reply {
        try NamespaceThread.run(in: path, timeLimit: timeout + .seconds(10)) {
            let (reply, fd, _) = try LabClient.open(address, port: port, uid: uid, timeout: timeout)
            if let fd { close(fd) }
            return reply
        }
    }

    /// `count` connections one after another (each like ``connect(to:port:uid:timeout:)``),
    /// tallied by their answer; failures under `error: <reply>`. Counts sum to `count`.
    public func connections(_ count: Int, to address: String, port: UInt16, uid: UInt32? = ProxyLab.appUID,
                            timeout: Duration = .seconds(2)) throws -> [String: Int] {
        try NamespaceThread.run(in: path, timeLimit: timeout * count + .seconds(30)) {
            var tally: [String: Int] = [:]
            for _ in 0..<count {
                let (reply, fd, _) = try LabClient.open(address, port: port, uid: uid, timeout: timeout)
                if let fd { close(fd) }
                tally[Self.key(reply), default: 0] += 1
            }
            return tally
        }
    }

    /// Connections one after another for `duration` (each like ``connect(to:port:uid:timeout:)``),
    /// tallied as ``connections(_:to:port:uid:timeout:)`` does.
    public func connections(for duration: Duration, to address: String, port: UInt16, uid: UInt32? = ProxyLab.appUID,
                            timeout: Duration = .seconds(2)) throws -> [String: Int] {
        try NamespaceThread.run(in: path, timeLimit: duration + timeout + .seconds(30)) {
            var tally: [String: Int] = [:]
            let end = ContinuousClock.now + duration
            while ContinuousClock.now < end {
                let (reply, fd, _) = try LabClient.open(address, port: port, uid: uid, timeout: timeout)
                if let fd { close(fd) }
                tally[Self.key(reply), default: 0] += 1
            }
            return tally
        }
    }

    /// How ``connections(_:to:port:uid:timeout:)`` tallies a reply.
    public static func key(_ reply: Reply) -> String {
        reply.line ?? "error: \(reply)"
    }

    /// Opens a connection as `uid`, reads its first line and keeps it open. Throws
    /// `ServiceLabError` when no line comes.
    public func hold(to address: String, port: UInt16, uid: UInt32? = ProxyLab.appUID,
                     timeout: Duration = .seconds(2)) throws -> Connection {
        try NamespaceThread.run(in: path, timeLimit: timeout + .seconds(10)) { () throws -> Connection in
            let (reply, fd, rest) = try LabClient.open(address, port: port, uid: uid, timeout: timeout)
            guard let fd, case .answered(let line) = reply else {
                throw ServiceLabError("hold \(address) port \(port): \(reply)")
            }
            return Connection(fd: fd, firstLine: line, buffered: rest)
        }
    }

    /// `count` connections opened one after another and kept; those not answered are closed and
    /// tallied in `failures` (by reply), so `connections.count + failures total == count`.
    public func hold(_ count: Int, to address: String, port: UInt16, uid: UInt32? = ProxyLab.appUID,
                     timeout: Duration = .seconds(2)) throws -> (connections: [Connection], failures: [String: Int]) {
        try NamespaceThread.run(in: path, timeLimit: timeout * count + .seconds(60)) {
            var held: [Connection] = []
            var failures: [String: Int] = [:]
            held.reserveCapacity(count)
            for _ in 0..<count {
                let (reply, fd, rest) = try LabClient.open(address, port: port, uid: uid, timeout: timeout)
                if let fd, case .answered(let line) = reply {
                    held.append(Connection(fd: fd, firstLine: line, buffered: rest))
                } else {
                    if let fd { close(fd) }
                    failures[Self.key(reply), default: 0] += 1
                }
            }
            return (held, failures)
        }
    }

    /// Connects as `uid`, sends `bytes`, shuts its write side down (half-close) and reads the
    /// first line of the answer. `timeout` bounds the whole exchange.
    public func upload(_ bytes: [UInt8], to address: String, port: UInt16, uid: UInt32? = ProxyLab.appUID,
                       timeout: Duration = .seconds(60)) throws -> Reply {
        try NamespaceThread.run(in: path, timeLimit: timeout + .seconds(10)) {
            let deadline = ContinuousClock.now + timeout
            let (reply, fd) = try LabClient.connect(address, port: port, uid: uid, deadline: deadline)
            guard let fd else { return reply }
            defer { close(fd) }
            if let failure = LabClient.sendAll(fd, bytes[...], deadline: deadline) { return failure }
            guard shutdown(fd, Int32(SHUT_WR)) == 0 else { return .failed(errno: errno) }
            var rest: [UInt8] = []
            return ProxyLab.Reply.readLine(fd, buffer: &rest, deadline: deadline)
        }
    }

    /// Connects as `uid`, sends `bytes` while reading whatever comes back (from `delay` on: a
    /// client that reads nothing for a while makes the proxy's sends to it block), shuts its
    /// write side down after the last byte, and reads on until the stream ends: what came back
    /// and how it ended (`.open` if it had not by `timeout`).
    public func converse(_ bytes: [UInt8], to address: String, port: UInt16, uid: UInt32? = ProxyLab.appUID,
                         readingAfter delay: Duration = .zero, receiveBuffer: Int32? = nil,
                         timeout: Duration = .seconds(30)) throws -> (received: [UInt8], end: LabClient.End) {
        try NamespaceThread.run(in: path, timeLimit: timeout + .seconds(10)) { () throws -> (received: [UInt8], end: LabClient.End) in
            let deadline = ContinuousClock.now + timeout
            let (reply, fd) = try LabClient.connect(address, port: port, uid: uid, deadline: deadline)
            guard let fd else { throw ServiceLabError("converse with \(address) port \(port): \(reply)") }
            defer { close(fd) }
            if var size = receiveBuffer {
                guard setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                    throw ServiceLabError("converse: SO_RCVBUF \(size): \(String(cString: strerror(errno)))")
                }
            }
            return LabClient.converse(fd, bytes, readingFrom: .now + delay, deadline: deadline)
        }
    }

    /// A plain HTTP/1.1 GET to `127.0.0.1:port` in the namespace (an admin endpoint): the status
    /// and the body. Throws when there is no complete answer within `timeout`.
    public func httpGet(port: UInt16, path target: String, timeout: Duration = .seconds(5)) throws -> (status: Int, body: String) {
        try NamespaceThread.run(in: path, timeLimit: timeout + .seconds(10)) { () throws -> (status: Int, body: String) in
            let deadline = ContinuousClock.now + timeout
            let (reply, fd) = try LabClient.connect("127.0.0.1", port: port, uid: nil, deadline: deadline)
            guard let fd else { throw ServiceLabError("GET \(target) on port \(port): \(reply)") }
            defer { close(fd) }
            let request = "GET \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n"
            if let failure = LabClient.sendAll(fd, Array(request.utf8)[...], deadline: deadline) {
                throw ServiceLabError("GET \(target): \(failure)")
            }
            let (bytes, end) = LabClient.readToEnd(fd, deadline: deadline)
            guard end == .closed else { throw ServiceLabError("GET \(target): the answer did not end (\(end))") }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let headEnd = text.range(of: "\r\n\r\n"), text.hasPrefix("HTTP/1.1 "),
                  let status = Int(text.dropFirst(9).prefix(3)) else {
                throw ServiceLabError("GET \(target): not an HTTP answer: \(text.prefix(200))")
            }
            return (status, String(text[headEnd.upperBound...]))
        }
    }

    /// Polls `condition` every 20 ms until it holds or `limit` passed; returns its last value.
    public static func eventually(within limit: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = ContinuousClock.now + limit
        while true {
            if try condition() { return true }
            if ContinuousClock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Raises this process's soft descriptor limit to its hard limit; returns the new soft limit.
    @discardableResult
    public static func raiseDescriptorLimit() -> Int {
        var limit = rlimit()
        getrlimit(RLIMIT_NOFILE_VALUE, &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(RLIMIT_NOFILE_VALUE, &limit)
        getrlimit(RLIMIT_NOFILE_VALUE, &limit)
        return Int(limit.rlim_cur)
    }

    /// Descriptors this process has open now (entries of /proc/self/fd).
    public static var openDescriptors: Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count ?? 1) - 1
    }

    private static let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)

    // MARK: Setup

    /// argv: ADDRESS PORT GREETING. An identity server (see ``UpstreamKind/identity``) on epoll;
    /// prints `ready` once listening; exits when its stdin closes or on SIGTERM.
    static let holdServerScript = #"""
    import os, resource, selectors, socket, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    address, port, greeting = sys.argv[1], int(sys.argv[2]), (sys.argv[3] + "\n").encode()
    listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(4096)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    selector.register(0, selectors.EVENT_READ, "stdin")
    print("ready", flush=True)
    while True:
        for key, _ in selector.select(1.0):
            if key.data == "stdin":
                if not os.read(0, 4096):
                    sys.exit(0)
            elif key.data == "listener":
                while True:
                    try:
                        connection, _ = listener.accept()
                    except BlockingIOError:
                        break
                    connection.setblocking(False)
                    connection.send(greeting)
                    selector.register(connection, selectors.EVENT_READ, "connection")
            else:
                connection = key.fileobj
                try:
                    data = connection.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    for _ in range(data.count(b"\n")):
                        connection.send(greeting)
                else:
                    selector.unregister(connection)
                    connection.close()
    """#

    /// argv: NEAR FAR DELAY_SECONDS. Two TUN devices (no packet info); every packet read from
    /// one is written to the other DELAY seconds later. Prints `ready` once both exist; exits
    /// when its stdin closes or on SIGTERM.
    static let delayWireScript = #"""
    import fcntl, heapq, os, select, struct, sys, time
    TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
    def tun(name):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        os.set_blocking(fd, False)
        return fd
    near, far = tun(sys.argv[1]), tun(sys.argv[2])
    delay = float(sys.argv[3])
    other = {near: far, far: near}
    print("ready", flush=True)
    queue, sequence = [], 0
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
        readable, _, _ = select.select([near, far, 0], [], [], timeout)
        if 0 in readable and not os.read(0, 4096):
            sys.exit(0)
        for fd in (near, far):
            if fd not in readable:
                continue
            while True:
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                heapq.heappush(queue, (time.monotonic() + delay, sequence, other[fd], packet))
                sequence += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, packet = heapq.heappop(queue)
            try:
                os.write(out, packet)
            except OSError:
                pass
    """#
}

/// Runs `body` with a started ``ProxyLab`` and always tears it down afterwards, also when `body`
/// throws. An error from `body` wins over a teardown error (then printed to stderr).
public func withProxyLab<Result>(prefix: String = "proxylab", upstreams: [ProxyLab.Upstream] = [],
                                 _ body: (ProxyLab) throws -> Result) throws -> Result {
    try withStartedLab("ProxyLab", start: { try ProxyLab.start(prefix: prefix, upstreams: upstreams) }, stop: { try $0.stop() }, body)
}

extension ProxyLab {
    /// An open client connection (from ``ProxyLab/hold(to:port:uid:timeout:)``). Its methods may
    /// be called from any thread, one at a time (a lock serialises them). Closed by ``close()``
    /// or when the last reference goes away.
    public final class Connection: Sendable {
        /// The first line the server sent (its greeting).
        public let firstLine: String
        private let state: Mutex<(fd: Int32, buffer: [UInt8])>

        init(fd: Int32, firstLine: String, buffered: [UInt8]) {
            self.firstLine = firstLine
            state = Mutex((fd, buffered))
        }

        deinit { close() }

        /// Sends `line` and a newline, and returns the next line that comes back (an identity
        /// upstream answers its greeting), or how the connection ended instead.
        public func exchange(_ line: String = "ping", timeout: Duration = .seconds(2)) -> Reply {
            if let failure = send(line, timeout: timeout) { return failure }
            return receiveLine(timeout: timeout)
        }

        /// Sends `line` and a newline without waiting for an answer; nil once sent, else how it
        /// failed.
        public func send(_ line: String = "ping", timeout: Duration = .seconds(2)) -> Reply? {
            state.withLock { state in
                guard state.fd >= 0 else { return .failed(errno: EBADF) }
                return LabClient.sendAll(state.fd, Array((line + "\n").utf8)[...], deadline: ContinuousClock.now + timeout)
            }
        }

        /// The next line that comes, or how the connection ended instead.
        public func receiveLine(timeout: Duration = .seconds(2)) -> Reply {
            state.withLock { state in
                guard state.fd >= 0 else { return .failed(errno: EBADF) }
                return ProxyLab.Reply.readLine(state.fd, buffer: &state.buffer, deadline: ContinuousClock.now + timeout)
            }
        }

        /// How the connection ends within `limit` when this side sends nothing: the other side
        /// closes it (`.closed`), resets it, sends something, or nothing happens (`.open`).
        public func end(within limit: Duration) -> LabClient.End {
            state.withLock { state in
                guard state.fd >= 0 else { return .failed(errno: EBADF) }
                let (bytes, end) = LabClient.readToEnd(state.fd, deadline: ContinuousClock.now + limit, stopAtData: true)
                state.buffer += bytes
                return bytes.isEmpty ? end : .data
            }
        }

        /// Shuts the write side down (sends a FIN, half-closing the connection).
        public func shutdownWrite() {
            state.withLock { state in
                if state.fd >= 0 { _ = shutdown(state.fd, Int32(SHUT_WR)) }
            }
        }

        /// Closes the connection with a reset (RST) instead of a FIN.
        public func reset() {
            state.withLock { state in
                if state.fd >= 0 { LabClient.reset(state.fd) }
                state.fd = -1
            }
        }

        /// Closes the connection (an orderly FIN). Calling it again does nothing.
        public func close() {
            state.withLock { state in
                if state.fd >= 0 { Glibc.close(state.fd) }
                state.fd = -1
            }
        }
    }
}

/// The lab's client calls: non-blocking sockets with deadlines, owned by a uid as netfilter sees
/// it. Every call runs on a thread that is inside the lab's namespace already.
public enum LabClient {
    /// How a connection's stream ended, when a test waits for it to.
    public enum End: Sendable, Equatable, CustomStringConvertible {
        /// The other side closed it (end of stream, FIN).
        case closed
        /// It was reset.
        case reset
        /// Still open at the deadline.
        case open
        /// Bytes arrived instead.
        case data
        case failed(errno: Int32)

        public var description: String {
            switch self {
            case .closed: "closed"
            case .reset: "reset"
            case .open: "still open"
            case .data: "data arrived"
            case .failed(let code): "failed: \(String(cString: strerror(code)))"
            }
        }
    }

    /// Connects and reads the first line; on `.answered` the socket stays open and is returned
    /// with any bytes read past the line. On any other reply the socket is closed.
    static func open(_ address: String, port: UInt16, uid: UInt32?, timeout: Duration) throws -> (ProxyLab.Reply, Int32?, [UInt8]) {
        let deadline = ContinuousClock.now + timeout
        let (reply, socket) = try connect(address, port: port, uid: uid, deadline: deadline)
        guard let fd = socket else { return (reply, nil, []) }
        var buffer: [UInt8] = []
        let line = ProxyLab.Reply.readLine(fd, buffer: &buffer, deadline: deadline)
        guard case .answered = line else {
            close(fd)
            return (line, nil, [])
        }
        return (line, fd, buffer)
    }

    /// Connects a socket owned by `uid`: `(.answered(""), fd)` once connected (no line read
    /// yet), else the reply that says why not and no socket (it is closed).
    static func connect(_ address: String, port: UInt16, uid: UInt32?, deadline: ContinuousClock.Instant) throws -> (ProxyLab.Reply, Int32?) {
        let target = try LabSocket.Address(address, port: port)
        let fd = try SocketOwner(uid: uid, gid: nil).socket(family: target.family, type: Int32(SOCK_STREAM.rawValue))
        var code: Int32 = 0
        if target.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 {
            code = errno
            if code == EINPROGRESS { code = LabSocket.waitForConnect(fd, deadline: deadline) }
        }
        let reply: ProxyLab.Reply
        switch code {
        case 0: return (.answered(""), fd)
        case ECONNREFUSED, ECONNRESET: reply = .refused
        case ETIMEDOUT: reply = .timedOut
        default: reply = .failed(errno: code)
        }
        close(fd)
        return (reply, nil)
    }

    /// Reads until the end of stream, a reset, an error or the deadline (or the first bytes, with
    /// `stopAtData`); returns what came and how it ended.
    static func readToEnd(_ fd: Int32, deadline: ContinuousClock.Instant, stopAtData: Bool = false) -> ([UInt8], End) {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if stopAtData && !bytes.isEmpty { return (bytes, .data) }
            let remaining = deadline.pollMilliseconds
            if remaining <= 0 { return (bytes, .open) }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, remaining)
            if ready < 0 && errno != EINTR { return (bytes, .failed(errno: errno)) }
            if ready <= 0 { continue }
            let count = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if count > 0 {
                bytes += chunk[..<count]
            } else if count == 0 {
                return (bytes, .closed)
            } else if errno == ECONNRESET {
                return (bytes, .reset)
            } else if errno != EAGAIN && errno != EINTR {
                return (bytes, .failed(errno: errno))
            }
        }
    }

    /// Sends `bytes` and reads at the same time (so a peer that answers as it reads never
    /// blocks on us), shuts the write side after the last byte, then reads to the end.
    static func converse(_ fd: Int32, _ bytes: [UInt8], readingFrom start: ContinuousClock.Instant = .now,
                         deadline: ContinuousClock.Instant) -> ([UInt8], End) {
        var rest = bytes[...]
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var writing = true
        if rest.isEmpty {
            shutdown(fd, Int32(SHUT_WR))
            writing = false
        }
        while true {
            let remaining = deadline.pollMilliseconds
            if remaining <= 0 { return (received, .open) }
            let reading = ContinuousClock.now >= start
            if !reading && !writing {
                Thread.sleep(forTimeInterval: 0.01)
                continue
            }
            var entry = pollfd(fd: fd, events: (reading ? Int16(POLLIN) : 0) | (writing ? Int16(POLLOUT) : 0), revents: 0)
            let ready = poll(&entry, 1, reading ? remaining : min(remaining, 10))
            if ready < 0 && errno != EINTR { return (received, .failed(errno: errno)) }
            if ready <= 0 { continue }
            if writing && entry.revents & Int16(POLLOUT) != 0 {
                let sent = rest.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
                if sent > 0 {
                    rest = rest.dropFirst(sent)
                    if rest.isEmpty {
                        shutdown(fd, Int32(SHUT_WR))
                        writing = false
                    }
                } else if sent < 0 && errno != EAGAIN && errno != EINTR {
                    return (received, errno == ECONNRESET || errno == EPIPE ? .reset : .failed(errno: errno))
                }
            }
            if reading && entry.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let count = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
                if count > 0 {
                    received += chunk[..<count]
                } else if count == 0 {
                    return (received, writing ? .failed(errno: EPIPE) : .closed)
                } else if errno == ECONNRESET {
                    return (received, .reset)
                } else if errno != EAGAIN && errno != EINTR {
                    return (received, .failed(errno: errno))
                }
            }
        }
    }

    /// Closes `fd` with a reset (SO_LINGER 0) instead of a FIN.
    static func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    /// Sends all of `bytes` before the deadline; nil when done, else the reply that says why not.
    static func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>, deadline: ContinuousClock.Instant) -> ProxyLab.Reply? {
        var rest = bytes
        while !rest.isEmpty {
            let sent = rest.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if sent > 0 {
                rest = rest.dropFirst(sent)
                continue
            }
            if sent < 0 && errno != EAGAIN && errno != EINTR {
                return errno == ECONNRESET || errno == EPIPE ? .refused : .failed(errno: errno)
            }
            let remaining = deadline.pollMilliseconds
            if remaining <= 0 { return .timedOut }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&entry, 1, remaining)
        }
        return nil
    }

    /// A non-blocking listener on `address` (IPv6-only for IPv6), made in the calling thread's
    /// namespace.
    static func listen(_ address: SocketAddress) throws -> Int32 {
        let text = "\(address.address)"
        let local = try LabSocket.Address(text, port: address.port)
        let fd = socket(local.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServiceLabError.system("socket") }
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        do {
            guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size) == 0 else { throw ServiceLabError.system("setsockopt(SO_REUSEADDR)") }
            if local.family == AF_INET6 {
                guard setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, size) == 0 else { throw ServiceLabError.system("setsockopt(IPV6_V6ONLY)") }
            }
            guard local.withSockaddr({ bind(fd, $0, $1) }) == 0 else { throw ServiceLabError.system("bind(\(address))") }
            guard Glibc.listen(fd, 1024) == 0 else { throw ServiceLabError.system("listen(\(address))") }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }
}

/// One upstream server of the lab: its listener and connections, polled by a thread of its own.
/// `stop()` accepts and serves what is queued, then closes everything (see `ProxyLab.kill`).
final class UpstreamServer: Sendable {
    let upstream: ProxyLab.Upstream
    private let listener: Int32
    private let thread: ServerThread

    init(upstream: ProxyLab.Upstream, listener: Int32) {
        self.upstream = upstream
        self.listener = listener
        thread = ServerThread(label: "upstream \(upstream)")
    }

    func start() {
        thread.start { [self] in run() }
    }

    func stop() throws {
        try thread.stop { close(listener) }
    }

    /// One accepted connection and what its kind needs.
    private struct Client {
        var fd: Int32
        /// Bytes to send before reading more (echo, greetings, the digest line).
        var output: [UInt8] = []
        var digest = SHA256Digest()
        /// Input ended: after `output` is sent, the connection closes (digest) or is shut (echo).
        var inputDone = false
    }

    private func run() {
        var clients: [Client] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let greeting = Array((upstream.greeting + "\n").utf8)
        defer {
            acceptQueued(into: &clients, greeting: greeting)
            for index in clients.indices { flush(&clients[index]) }
            for client in clients {
                shutdown(client.fd, Int32(SHUT_WR))
                close(client.fd)
            }
            close(listener)
        }
        while !thread.isStopping {
            var entries = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            for client in clients {
                let events = client.output.isEmpty ? (client.inputDone ? 0 : POLLIN) : POLLOUT
                entries.append(pollfd(fd: client.fd, events: Int16(events), revents: 0))
            }
            let ready = poll(&entries, nfds_t(entries.count), 20)
            if ready <= 0 { continue }
            var finished = Set<Int>()
            for index in clients.indices where entries[index + 1].revents != 0 {
                if !clients[index].output.isEmpty {
                    guard flush(&clients[index]) else {
                        finished.insert(index)
                        continue
                    }
                    if clients[index].output.isEmpty && clients[index].inputDone {
                        finished.insert(index)
                    }
                    continue
                }
                if !serve(&clients[index], buffer: &buffer, greeting: greeting) { finished.insert(index) }
            }
            for index in finished.sorted(by: >) {
                let client = clients.remove(at: index)
                guard client.fd >= 0 else { continue }  // reset already
                if upstream.kind != .identity { shutdown(client.fd, Int32(SHUT_WR)) }
                close(client.fd)
            }
            if entries[0].revents != 0 { acceptQueued(into: &clients, greeting: greeting) }
        }
    }

    /// Accepts until none is queued; identity connections get their greeting at once.
    private func acceptQueued(into clients: inout [Client], greeting: [UInt8]) {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 { return }
            // Glibc as Swift imports it has no accept4: set what it would have set.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var client = Client(fd: fd)
            if upstream.kind == .identity || upstream.kind == .abort || upstream.kind == .lingering {
                client.output = greeting
                flush(&client)
            }
            clients.append(client)
        }
    }

    /// Reads what is there and reacts; false when the connection is over (closed or failed).
    private func serve(_ client: inout Client, buffer: inout [UInt8], greeting: [UInt8]) -> Bool {
        while client.output.isEmpty {
            let count = recv(client.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count > 0 {
                switch upstream.kind {
                case .identity:
                    let lines = buffer[..<count].reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
                    for _ in 0..<lines { client.output += greeting }
                case .echo:
                    client.output += buffer[..<count]
                case .digest:
                    client.digest.update(buffer[..<count])
                case .lingering:
                    break
                case .abort:
                    guard buffer[..<count].contains(UInt8(ascii: "\n")) else { break }
                    LabClient.reset(client.fd)
                    client.fd = -1
                    return false
                }
                guard flush(&client) else { return false }
            } else if count == 0 {
                switch upstream.kind {
                case .identity, .abort:
                    return false
                case .lingering:
                    client.inputDone = true
                    return true
                case .echo:
                    client.inputDone = true
                    return false
                case .digest:
                    client.inputDone = true
                    client.output = Array((client.digest.hexDigest() + "\n").utf8)
                    guard flush(&client) else { return false }
                    return !client.output.isEmpty
                }
            } else {
                return errno == EAGAIN || errno == EINTR
            }
        }
        return true
    }

    /// Sends as much of `output` as the socket takes; false on an error.
    @discardableResult
    private func flush(_ client: inout Client) -> Bool {
        while !client.output.isEmpty {
            // The digest's answer is the last thing it sends: held back for the FIN that follows.
            let more = client.inputDone && upstream.kind == .digest ? Int32(MSG_MORE) : 0
            let sent = client.output.withUnsafeBytes { send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT) | more) }
            if sent > 0 {
                client.output.removeFirst(sent)
            } else {
                return sent < 0 && (errno == EAGAIN || errno == EINTR)
            }
        }
        return true
    }
}

/// A child process whose output is collected while it runs (a proxy under test, a python3
/// helper), with bounded waits for its output and its exit. Its stdin is a pipe kept open until
/// `stop()` (helpers exit when it closes).
public final class LabProcess: @unchecked Sendable {
    // @unchecked: `process` is only started in init; afterwards only its thread-safe members
    // (`processIdentifier`, `isRunning`, `terminationStatus`/`terminationReason` once it ended)
    // are used. The collected output is behind a Mutex.
    private let process: Process
    private let input = Pipe()
    private let output = Locked<(stdout: [UInt8], stderr: [UInt8])>(([], []))
    private let readers = DispatchGroup()

    /// Starts `executable arguments…`.
    public init(_ executable: String, _ arguments: [String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = input
        try process.run()
        for (pipe, isError) in [(stdout, false), (stderr, true)] {
            let handle = pipe.fileHandleForReading
            let output = self.output
            readers.enter()
            let readers = self.readers
            Thread {
                while true {
                    let data = handle.availableData
                    if data.isEmpty { break }
                    output.mutate { if isError { $0.stderr += data } else { $0.stdout += data } }
                }
                readers.leave()
            }.start()
        }
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var standardOutput: String { String(decoding: output.value.stdout, as: UTF8.self) }
    public var standardError: String { String(decoding: output.value.stderr, as: UTF8.self) }

    /// Whether `text` appears in its stdout (or stderr) within `limit`.
    public func waitForOutput(_ text: String, inStandardError: Bool = false, within limit: Duration) -> Bool {
        ProxyLab.eventually(within: limit) { (inStandardError ? standardError : standardOutput).contains(text) }
    }

    /// Sends `signal` to the process.
    public func signal(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// Its exit status once it exits within `limit` (a signal's death: 128 + the signal); nil if
    /// it is still running then.
    public func waitForExit(within limit: Duration) -> Int32? {
        guard ProxyLab.eventually(within: limit, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        _ = readers.wait(timeout: .now() + 5)
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }

    /// Ends it: stdin closed and SIGTERM, then SIGKILL after 5 s. Waits at most 10 s in all.
    public func stop() {
        try? input.fileHandleForWriting.close()
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        if waitForExit(within: .seconds(5)) == nil {
            kill(process.processIdentifier, SIGKILL)
            _ = waitForExit(within: .seconds(5))
        }
    }

    deinit { stop() }
}

