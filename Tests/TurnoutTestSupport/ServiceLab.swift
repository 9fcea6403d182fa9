import Foundation
import Synchronization
import TurnoutModel

/// A lab for kernel traffic tests: a client namespace joined by veth pairs to one namespace per
/// endpoint, each endpoint answering every TCP connection with its name.
///
/// What callers must know:
/// * Layout. The client has `10.0.0.1` and `fd00:ff::1` (on `lo`) and one veth per endpoint,
///   with a host route to each endpoint address through it. Service addresses (`10.96.0.0/12`,
///   which includes `10.100.0.0/16`, and `fd00:96::/64`) are routed to `vip0`, one end of a veth
///   pair whose other end is also in the client: the first lookup of a connection to a VIP
///   succeeds, the client's nat-output DNAT re-routes it to the endpoint's veth, and a VIP nobody
///   translates is a black hole (connects time out) rather than an error. IPv6 duplicate address
///   detection is off, so addresses work at once.
/// * Endpoints. Each endpoint namespace holds the endpoint's addresses on `eth0` and listens on
///   each of its ports on the wildcard address of each of its families. A connection is greeted
///   with `NAME\n`; each line sent afterwards is answered with `NAME\n` (see `HeldConnection`).
///   The servers are sockets in this process, polled by one thread, so nothing outlives the lab.
/// * Rules. The lab installs none: apply them to `client` (`NftablesBackend(namespacePath:
///   lab.client.path, recordDirectory: lab.stateDirectory)`, or `client.run(turnout, …)`).
/// * Lifetime. Prefer `withServiceLab { lab in … }`, which always tears down: the server thread
///   is stopped, its sockets closed, every namespace removed. With `start` call `stop()`; a lab
///   still running when its last reference goes away is stopped then, as a backstop. Every wait
///   is bounded; `start` fails (and removes what it made) if an endpoint does not answer in 5 s.
/// * Client operations (`split`, `connectTime`, `hold`) run on a short-lived thread that entered
///   the client namespace; they may be called from any thread. Requires root and iproute2.
public final class ServiceLab: Sendable {
    /// One endpoint of the lab: its name (what it answers with), addresses and listening ports.
    ///
    /// Names must be unique in a lab, non-empty and without whitespace. Addresses are IPv4 and/or
    /// IPv6 host addresses outside the client's and the services' ranges, e.g. the endpoint
    /// addresses of a table in `rules/`; the endpoint listens on every port on each family.
    public struct Endpoint: Sendable {
        public var name: String
        public var addresses: [String]
        public var ports: [UInt16]

        public init(_ name: String, addresses: [String], ports: [UInt16]) {
            self.name = name
            self.addresses = addresses
            self.ports = ports
        }
    }

    /// The client's own addresses: the source of every connection it makes.
    public static let clientIPv4 = "10.0.0.1"
    public static let clientIPv6 = "fd00:ff::1"
    /// The service (VIP) ranges routed in the client so that DNAT can take over.
    public static let serviceRanges = ["10.96.0.0/12", "fd00:96::/64"]

    /// The namespace connections start from and rules are applied to.
    public let client: NetworkNamespace
    /// The endpoints, in the order given, and their namespaces (same order).
    public let endpoints: [Endpoint]
    public let endpointNamespaces: [NetworkNamespace]
    /// A private directory removed at teardown, e.g. for `NftablesBackend`'s `recordDirectory`.
    public let stateDirectory: String

    private let server: AnswerServer
    private let isStopped = Atomic<Bool>(false)

    private init(client: NetworkNamespace, endpoints: [Endpoint], endpointNamespaces: [NetworkNamespace],
                 stateDirectory: String, server: AnswerServer) {
        self.client = client
        self.endpoints = endpoints
        self.endpointNamespaces = endpointNamespaces
        self.stateDirectory = stateDirectory
        self.server = server
    }

    /// Builds the lab, starts the endpoint servers and checks that the client reaches every
    /// endpoint address and port directly (each answers with its name) before returning.
    ///
    /// Namespaces are named `<prefix>-client-<pid>-<n>` and `<prefix>-ep-<pid>-<n>`. Throws
    /// `ServiceLabError` or `NetworkNamespaceError`; whatever was made is removed first.
    public static func start(endpoints: [Endpoint], prefix: String = "lab") throws -> ServiceLab {
        try validate(endpoints)
        var namespaces: [NetworkNamespace] = []
        var listeners: [AnswerServer.Listener] = []
        let stateDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("turnout-lab-\(getpid())-\(UUID().uuidString)").path
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            let client = try NetworkNamespace.create(prefix: "\(prefix)-client")
            namespaces.append(client)
            var endpointNamespaces: [NetworkNamespace] = []
            for _ in endpoints {
                let namespace = try NetworkNamespace.create(prefix: "\(prefix)-ep")
                namespaces.append(namespace)
                endpointNamespaces.append(namespace)
            }
            // Before any interface exists, so every interface inherits it: no tentative IPv6 addresses.
            for namespace in namespaces {
                try namespace.sysctl("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
            }
            try wire(client: client, endpoints: endpoints, namespaces: endpointNamespaces)

            for (endpoint, namespace) in zip(endpoints, endpointNamespaces) {
                let families = Set(endpoint.addresses.map { $0.contains(":") ? AF_INET6 : AF_INET })
                let ports = endpoint.ports
                let fds = try NamespaceThread.run(in: namespace.path, timeLimit: .seconds(10)) { () throws -> [Int32] in
                    var fds: [Int32] = []
                    do {
                        for port in ports {
                            for family in families.sorted() { fds.append(try LabSocket.listen(family: family, port: port)) }
                        }
                    } catch {
                        for fd in fds { close(fd) }
                        throw error
                    }
                    return fds
                }
                listeners += fds.map { AnswerServer.Listener(fd: $0, name: endpoint.name) }
            }
            let server = AnswerServer(listeners: listeners)
            listeners = []  // the server owns them now
            let lab = ServiceLab(client: client, endpoints: endpoints, endpointNamespaces: endpointNamespaces,
                                 stateDirectory: stateDirectory, server: server)
            namespaces = []  // the lab owns them now; stop() removes them
            server.start()
            do {
                try lab.checkEndpointsAnswer()
            } catch {
                try? lab.stop()
                throw error
            }
            return lab
        } catch {
            for listener in listeners { close(listener.fd) }
            for namespace in namespaces.reversed() { try? namespace.remove() }
            try? FileManager.default.removeItem(atPath: stateDirectory)
            throw error
        }
    }

    /// Stops the servers, closes their sockets and removes every namespace and the state
    /// directory. Calling it again does nothing. Tries every step even when one fails, then
    /// throws `ServiceLabError` naming what failed (a namespace left behind, say).
    public func stop() throws {
        guard !isStopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var teardown = Teardown("lab teardown")
        teardown.attempt { try server.stop() }
        for namespace in endpointNamespaces.reversed() + [client] {
            teardown.attempt { try namespace.remove() }
        }
        try? FileManager.default.removeItem(atPath: stateDirectory)
        try teardown.finish()
    }

    deinit {
        if !isStopped.load(ordering: .acquiring) { try? stop() }
    }

    /// The namespace of the endpoint called `name`.
    public func namespace(of name: String) -> NetworkNamespace? {
        endpoints.firstIndex { $0.name == name }.map { endpointNamespaces[$0] }
    }

    // MARK: Client operations

    /// Opens `count` connections to `address`:`port` one after another from the client, reads
    /// each greeting and closes; returns how many each endpoint name answered.
    ///
    /// Failures are counted too, under `error: refused`, `error: reset`, `error: timed out`,
    /// `error: no answer` (connected, no greeting) or `error: <strerror>`. Each connect and each
    /// greeting waits at most `connectTimeout`; past `timeLimit` the connections not yet made
    /// are counted under `error: not attempted (time limit)`. The counts always sum to `count`.
    public func split(to address: String, port: UInt16, count: Int,
                      connectTimeout: Duration = .seconds(1), timeLimit: Duration = .seconds(60)) throws -> [String: Int] {
        try NamespaceThread.run(in: client.path, timeLimit: timeLimit + .seconds(10)) {
            let deadline = ContinuousClock.now + timeLimit
            var counts: [String: Int] = [:]
            for made in 0..<count {
                if ContinuousClock.now >= deadline {
                    counts["error: not attempted (time limit)", default: 0] += count - made
                    break
                }
                counts[try Self.attempt(address, port: port, timeout: connectTimeout).splitKey, default: 0] += 1
            }
            return counts
        }
    }

    /// Makes one connection to `address`:`port` from the client and reports how it ended and
    /// how long the connect took (at most `timeout`: then `.timedOut`). A connection that opens
    /// carries the endpoint's greeting in `.connected(answer:)`, and is closed.
    public func connectTime(to address: String, port: UInt16, timeout: Duration = .seconds(2)) throws -> ConnectAttempt {
        try NamespaceThread.run(in: client.path, timeLimit: timeout * 2 + .seconds(10)) {
            try Self.attempt(address, port: port, timeout: timeout)
        }
    }

    /// Opens a connection to `address`:`port` and keeps it ESTABLISHED.
    ///
    /// With `reaching`, connects again (up to `attempts` times, closing the others) until that
    /// endpoint answers: the way to hold a connection to a given endpoint of a weighted service.
    /// Throws `ServiceLabError` with the answers seen if it never does.
    public func hold(to address: String, port: UInt16, reaching: String? = nil, attempts: Int = 500,
                     timeout: Duration = .seconds(1)) throws -> HeldConnection {
        struct Opened: Sendable {
            var fd: Int32
            var endpoint: String
        }
        let opened = try NamespaceThread.run(in: client.path, timeLimit: .seconds(60)) { () throws -> Opened in
            var seen: [String: Int] = [:]
            for _ in 0..<max(1, attempts) {
                let (attempt, socket) = try LabSocket.connect(address, port: port, timeout: timeout)
                guard let fd = socket else {
                    seen[attempt.splitKey, default: 0] += 1
                    continue
                }
                let answer = try? LabSocket.readLine(fd, deadline: ContinuousClock.now + timeout)
                if let answer, reaching == nil || answer == reaching { return Opened(fd: fd, endpoint: answer) }
                close(fd)
                seen[answer ?? "error: no answer", default: 0] += 1
            }
            throw ServiceLabError("no connection to \(address):\(port) reached \(reaching ?? "an endpoint") in \(attempts) attempts: \(seen)")
        }
        return HeldConnection(fd: opened.fd, endpoint: opened.endpoint)
    }

    /// One connect plus greeting, on a thread already inside the client namespace.
    private static func attempt(_ address: String, port: UInt16, timeout: Duration) throws -> ConnectAttempt {
        var (attempt, socket) = try LabSocket.connect(address, port: port, timeout: timeout)
        if let fd = socket {
            defer { close(fd) }
            do {
                attempt.outcome = .connected(answer: try LabSocket.readLine(fd, deadline: ContinuousClock.now + timeout))
            } catch {
                attempt.outcome = .reset
            }
        }
        return attempt
    }

    // MARK: Setup

    private static func validate(_ endpoints: [Endpoint]) throws {
        var names = Set<String>()
        for endpoint in endpoints {
            guard !endpoint.name.isEmpty, !endpoint.name.contains(where: \.isWhitespace), names.insert(endpoint.name).inserted else {
                throw ServiceLabError("endpoint names must be unique, non-empty and without whitespace: '\(endpoint.name)'")
            }
            guard !endpoint.addresses.isEmpty, !endpoint.ports.isEmpty else {
                throw ServiceLabError("endpoint \(endpoint.name) needs at least one address and one port")
            }
            for address in endpoint.addresses where IPAddress(address) == nil {
                throw ServiceLabError("endpoint \(endpoint.name): '\(address)' is not an IP address")
            }
        }
    }

    /// Creates the veth pairs, addresses and routes described on the type, with one `ip -batch`
    /// per namespace.
    private static func wire(client: NetworkNamespace, endpoints: [Endpoint], namespaces: [NetworkNamespace]) throws {
        var links = ["link add vip0 netns \(client.name) type veth peer name vip1 netns \(client.name)"]
        for index in endpoints.indices {
            links.append("link add ep\(index) netns \(client.name) type veth peer name eth0 netns \(namespaces[index].name)")
        }
        try IPBatch.run(links)

        var clientCommands = [
            "addr add \(clientIPv4)/32 dev lo",
            "addr add \(clientIPv6)/128 dev lo nodad",
            "link set vip0 up",
            "link set vip1 up",
        ]
        for (index, endpoint) in endpoints.enumerated() {
            var commands = ["link set eth0 up"]
            for address in endpoint.addresses {
                if address.contains(":") {
                    commands.append("addr add \(address)/128 dev eth0 nodad")
                } else {
                    commands.append("addr add \(address)/32 dev eth0")
                }
            }
            // Replies go straight back over the veth. IPv6 answers neighbour solicitations only
            // for addresses of the receiving interface, and the client's is on lo: reach it
            // through the client veth's fixed link-local address instead.
            if endpoint.addresses.contains(where: { !$0.contains(":") }) { commands.append("route add \(clientIPv4)/32 dev eth0") }
            if endpoint.addresses.contains(where: { $0.contains(":") }) { commands.append("route add \(clientIPv6)/128 via fe80::1 dev eth0") }
            try IPBatch.run(in: namespaces[index], commands)

            clientCommands += ["link set ep\(index) up", "addr add fe80::1/64 dev ep\(index) nodad"]
            for address in endpoint.addresses {
                clientCommands.append(address.contains(":")
                    ? "route add \(address)/128 dev ep\(index) src \(clientIPv6)"
                    : "route add \(address)/32 dev ep\(index) src \(clientIPv4)")
            }
        }
        clientCommands += [
            "route add \(serviceRanges[0]) dev vip0 src \(clientIPv4)",
            "route add \(serviceRanges[1]) dev vip0 src \(clientIPv6)",
        ]
        try IPBatch.run(in: client, clientCommands)
    }

    /// Every endpoint address and port answers the client directly with the endpoint's name.
    private func checkEndpointsAnswer() throws {
        let targets = endpoints.flatMap { endpoint in
            endpoint.addresses.flatMap { address in endpoint.ports.map { (endpoint.name, address, $0) } }
        }
        try NamespaceThread.run(in: client.path, timeLimit: .seconds(30)) {
            let deadline = ContinuousClock.now + .seconds(5)
            for (name, address, port) in targets {
                while true {
                    let attempt = try Self.attempt(address, port: port, timeout: .milliseconds(500))
                    if case .connected(name?) = attempt.outcome { break }
                    guard ContinuousClock.now < deadline else {
                        throw ServiceLabError("endpoint \(name) does not answer at \(address) port \(port): \(attempt)")
                    }
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
        }
    }
}

/// Runs `body` with a started `ServiceLab` and always tears it down afterwards, also when
/// `body` throws.
///
/// An error from `body` wins over a teardown error (which is then printed to stderr, so a leaked
/// namespace is never silent); a teardown error alone is thrown.
public func withServiceLab<Result>(endpoints: [ServiceLab.Endpoint], prefix: String = "lab",
                                   _ body: (ServiceLab) throws -> Result) throws -> Result {
    try withStartedLab("ServiceLab", start: { try ServiceLab.start(endpoints: endpoints, prefix: prefix) }, stop: { try $0.stop() }, body)
}
