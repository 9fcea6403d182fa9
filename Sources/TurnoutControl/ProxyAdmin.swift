import Foundation
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

        private func json(_ object: [String: Any]) -> AdminResponse {
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data("{}".utf8)
            return AdminResponse(contentType: "application/json", body: Array(data) + [0x0A])
        }
    }

    /// `/stats`: the summed counters as JSON.
    static func statistics(_ statistics: ProxyStatistics, source: String, sourceStatus: Reconciler.Status? = nil) -> [String: Any] {
        let upstreams: [[String: Any]] = statistics.upstreams.sorted { $0.key < $1.key }.map { key, count in
            var entry: [String: Any] = [
                "service": key.service, "endpoint": key.endpoint, "connections": count.connections, "active": count.active,
                "bytesToUpstream": count.bytesToUpstream, "bytesToClient": count.bytesToClient,
                "connectFailures": Dictionary(uniqueKeysWithValues: ConnectFailure.allCases.map { ("\($0)", count.failures[$0.rawValue]) }),
                "connectSecondsSum": Double(count.latencySumMicroseconds) / 1e6, "ejections": count.ejections]
            if let status = statistics.endpoints[key] {
                entry["healthy"] = status.healthy
                entry["ejected"] = status.ejected
            }
            return entry
        }
        let services: [String: Any] = Dictionary(uniqueKeysWithValues: statistics.services.map { label, count in
            (label, ["circuitBreakerRejections": count.circuitBreakerRejections, "unavailableRejections": count.unavailableRejections,
                     "panicPicks": count.panicPicks] as [String: Any])
        })
        var result: [String: Any] = [
            "source": source, "generation": statistics.generation, "workers": statistics.workers, "io": statistics.io,
            "accepted": statistics.accepted, "relays": statistics.relays, "loopRejections": statistics.loopRejections,
            "unknownRejections": statistics.unknownRejections, "acceptPauses": statistics.acceptPauses,
            "undersizedPipes": statistics.undersizedPipes, "copyFallbacks": statistics.copyFallbacks,
            "pipeBytes": statistics.pipeBytes, "pipeBytesPeak": statistics.pipeBytesPeak,
            "upstreams": upstreams, "services": services]
        if let budget = statistics.pipeBudget { result["pipeBudget"] = budget }
        if let status = sourceStatus {
            var reconciler: [String: Any] = [
                "state": status.sourceState, "installs": status.installs, "unchanged": status.unchanged,
                "installFailures": status.installFailures, "invalidTables": status.invalidTables, "outages": status.outages]
            if let problem = status.sourceProblem { reconciler["problem"] = problem }
            if let revision = status.sourceRevision { reconciler["sourceRevision"] = revision }
            if let revision = status.installedRevision { reconciler["installedRevision"] = revision }
            if let time = status.installedAt { reconciler["installedAt"] = time }
            if let failure = status.lastFailure { reconciler["lastFailure"] = failure }
            result["reconciler"] = reconciler
        }
        return result
    }

    /// `/config`: the routes of the snapshot in use.
    static func configuration(_ snapshot: ProxySnapshot, source: String) -> [String: Any] {
        let routes: [[String: Any]] = snapshot.routes.routes.map { route in
            ["service": route.label, "family": "\(route.family)", "addresses": route.addresses.map { "\($0)" },
             "port": route.port.port,
             "endpoints": route.endpoints.map { endpoint -> [String: Any] in
                 var entry: [String: Any] = ["address": "\(endpoint.address)", "weight": endpoint.weight]
                 if let zone = endpoint.zone { entry["zone"] = zone }
                 return entry
             }]
        }
        return ["source": source, "generation": snapshot.generation, "routes": routes]
    }
}
