import FoundationEssentials
import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// The proxy's admin endpoint (`--admin 127.0.0.1:15000`): `/metrics` (Prometheus text),
/// `/stats` (JSON), `/config` (the routes in use, JSON) and `/ready`.
///
/// Serves on the ``AdminServer``'s own thread, never on a worker: a scrape reads the workers'
/// atomic counters and the published snapshot, nothing else. Thread-safe.
public final class ProxyAdmin: Sendable {
    private let server: AdminServer
    private let readyFlag: ReadyFlag

    /// Binds `address` (errors such as EADDRINUSE surface here) and starts serving. `source`
    /// names where the table comes from, for `/config` and `/stats`; `sourceStatus` (called on
    /// the admin thread) tells how the source and its reconciler are doing, when there is one.
    public init(proxy: TransparentProxy, address: SocketAddress, source: String,
                sourceStatus: @escaping @Sendable () -> Reconciler.Status? = { nil }) throws(SystemCallError) {
        let routes = Routes(proxy: proxy, source: source, sourceStatus: sourceStatus)
        let ready = ReadyFlag()
        server = try AdminServer(address: address) { request in routes.respond(to: request, ready: ready.value) }
        readyFlag = ready
        try server.start()
    }

    /// The bound address (the kernel's port when 0 was asked for).
    public var address: SocketAddress { server.address }

    /// Runs `bind` (a ``ProxyAdmin`` init) again every 20 ms while it fails with EADDRINUSE,
    /// for at most `limit`: a replacing proxy waits so for the proxy it replaced to free the
    /// admin address, which that one does on SIGUSR2. Any other error, or EADDRINUSE after
    /// `limit` (`.zero`: one try), is thrown.
    public static func binding(waitingAtMost limit: Duration,
                               _ bind: () throws(SystemCallError) -> ProxyAdmin) throws(SystemCallError) -> ProxyAdmin {
        let deadline = ContinuousClock.now + limit
        while true {
            do throws(SystemCallError) {
                return try bind()
            } catch where error.errno == EADDRINUSE && ContinuousClock.now < deadline {
                usleep(20_000)
            }
        }
    }

    /// `/ready` answers 503 from now on (the proxy is stopping).
    public func markNotReady() { readyFlag.value = false }

    public func stop() { server.stop() }

    private final class ReadyFlag: Sendable {
        private let flag = Atomic(true)
        var value: Bool {
            get { flag.load(ordering: .relaxed) }
            set { flag.store(newValue, ordering: .relaxed) }
        }
    }

    private struct Routes: Sendable {
        let proxy: TransparentProxy
        let source: String
        let sourceStatus: @Sendable () -> Reconciler.Status?

        func respond(to request: AdminRequest, ready: Bool) -> AdminResponse {
            switch request.path {
            case "/metrics":
                return AdminResponse(contentType: PrometheusText.contentType, text: ProxyMetrics.render(proxy.statistics(), source: sourceStatus()))
            case "/stats":
                return json(ProxyAdmin.statistics(proxy.statistics(), source: source, sourceStatus: sourceStatus()))
            case "/config":
                return json(ProxyAdmin.configuration(proxy.snapshot, source: source))
            case "/ready":
                return ready ? AdminResponse(text: "ready\n") : AdminResponse(status: 503, text: "stopping\n")
            default:
                return .notFound
            }
        }

        private func json(_ value: JSONValue) -> AdminResponse {
            AdminResponse(contentType: "application/json", text: value.text(pretty: true) + "\n")
        }
    }

    /// `/stats`: the summed counters as JSON.
    static func statistics(_ statistics: ProxyStatistics, source: String, sourceStatus: Reconciler.Status? = nil) -> JSONValue {
        let upstreams: [JSONValue] = statistics.upstreams.sorted { $0.key < $1.key }.map { key, count in
            var entry: [String: JSONValue] = [
                "service": .string(key.service), "endpoint": .string(key.endpoint), "connections": .init(count.connections),
                "active": .init(count.active), "bytesToUpstream": .init(count.bytesToUpstream),
                "bytesToClient": .init(count.bytesToClient),
                "connectFailures": .object(Dictionary(uniqueKeysWithValues: ConnectFailure.allCases.map {
                    ("\($0)", JSONValue(count.failures[$0.rawValue]))
                })),
                "connectSecondsSum": .number(Double(count.latencySumMicroseconds) / 1e6), "ejections": .init(count.ejections),
                "upstreamFullWaits": .init(count.upstreamFullWaits), "clientFullWaits": .init(count.clientFullWaits),
                "upstreamPausedSeconds": .number(Double(count.upstreamPausedNanoseconds) / 1e9),
                "clientPausedSeconds": .number(Double(count.clientPausedNanoseconds) / 1e9)]
            if let status = statistics.endpoints[key] {
                entry["healthy"] = .bool(status.healthy)
                entry["ejected"] = .bool(status.ejected)
            }
            return .object(entry)
        }
        let services = Dictionary(uniqueKeysWithValues: statistics.services.map { label, count in
            (label, JSONValue.object(["circuitBreakerRejections": .init(count.circuitBreakerRejections),
                                      "unavailableRejections": .init(count.unavailableRejections),
                                      "panicPicks": .init(count.panicPicks)]))
        })
        var result: [String: JSONValue] = [
            "source": .string(source), "generation": .init(statistics.generation), "workers": .init(statistics.workers),
            "io": .string(statistics.io), "accepted": .init(statistics.accepted), "relays": .init(statistics.relays),
            "loopRejections": .init(statistics.loopRejections), "unknownRejections": .init(statistics.unknownRejections),
            "acceptPauses": .init(statistics.acceptPauses), "undersizedPipes": .init(statistics.undersizedPipes),
            "copyFallbacks": .init(statistics.copyFallbacks), "pipeBytes": .init(statistics.pipeBytes),
            "pipeBytesPeak": .init(statistics.pipeBytesPeak), "upstreams": .array(upstreams), "services": .object(services)]
        if let budget = statistics.pipeBudget { result["pipeBudget"] = .init(budget) }
        if let status = sourceStatus {
            var reconciler: [String: JSONValue] = [
                "state": .string(status.sourceState), "installs": .init(status.installs), "unchanged": .init(status.unchanged),
                "installFailures": .init(status.installFailures), "invalidTables": .init(status.invalidTables),
                "outages": .init(status.outages)]
            if let problem = status.sourceProblem { reconciler["problem"] = .string(problem) }
            if let revision = status.sourceRevision { reconciler["sourceRevision"] = .string(revision) }
            if let revision = status.installedRevision { reconciler["installedRevision"] = .string(revision) }
            if let time = status.installedAt { reconciler["installedAt"] = .number(time) }
            if let failure = status.lastFailure { reconciler["lastFailure"] = .string(failure) }
            result["reconciler"] = .object(reconciler)
        }
        return .object(result)
    }

    /// `/config`: the routes of the snapshot in use.
    static func configuration(_ snapshot: ProxySnapshot, source: String) -> JSONValue {
        let routes: [JSONValue] = snapshot.routes.routes.map { route in
            ["service": .string(route.label), "family": .string("\(route.family)"),
             "addresses": .array(route.addresses.map { .string("\($0)") }), "port": .init(route.port.port),
             "endpoints": .array(route.endpoints.map { endpoint in
                 var entry: [String: JSONValue] = ["address": .string("\(endpoint.address)"), "weight": .init(endpoint.weight)]
                 if let zone = endpoint.zone { entry["zone"] = .string(zone) }
                 return .object(entry)
             })]
        }
        return ["source": .string(source), "generation": .init(snapshot.generation), "routes": .array(routes)]
    }
}
