import FoundationEssentials
import TurnoutModel
import TurnoutProxy

/// A running `turnout proxy` as its admin endpoint describes it (`/ready` and `/stats`): what
/// `turnout status` prints under the installed rules.
///
/// Made by ``fetch(from:timeout:)`` (two HTTP requests) or from the bodies themselves
/// (``init(statsJSON:ready:)``, for tests). A value: safe to pass between threads. Throws
/// ``HTTPError`` when the admin endpoint cannot be read and `ValueError` when `/stats` is not the
/// JSON a proxy serves.
public struct ProxyStatusReport: Sendable, Hashable {
    /// One endpoint of one service, as the workers counted it since the proxy started.
    public struct Upstream: Sendable, Hashable, Decodable {
        public var service: String
        public var endpoint: String
        public var connections: UInt64
        public var active: Int64
        /// Connect failures by reason (`refused`, `timeout`, `unreachable`, `other`).
        public var connectFailures: [String: UInt64]
        public var ejections: UInt64
        /// Absent for an endpoint no longer in the table (its counters stay).
        public var healthy: Bool?
        public var ejected: Bool?
        /// Flow-control waits for a full upstream and for full clients (absent from a proxy
        /// older than the counters, read as 0).
        public var upstreamFullWaits: UInt64?
        public var clientFullWaits: UInt64?
        /// How long those waits lasted, in seconds (absent from older proxies, read as unknown).
        public var upstreamPausedSeconds: Double?
        public var clientPausedSeconds: Double?
    }

    /// Connections a service turned away or sent to an endpoint only because all looked down.
    public struct ServiceRejections: Sendable, Hashable, Decodable {
        public var circuitBreakerRejections: UInt64
        public var unavailableRejections: UInt64
        public var panicPicks: UInt64
    }

    /// The `/stats` fields this report reads; the proxy serves more.
    struct Statistics: Sendable, Hashable, Decodable {
        struct Reconciler: Sendable, Hashable, Decodable {
            var state: String
            var problem: String?
            var sourceRevision: String?
            var installedRevision: String?
            var installedAt: Double?
            var installs: UInt64
            var unchanged: UInt64
            var installFailures: UInt64
            var invalidTables: UInt64
            var outages: UInt64
            var lastFailure: String?
        }

        var source: String
        var generation: UInt64
        var workers: Int
        /// `uring` or `epoll`; absent from a proxy older than the io_uring workers.
        var io: String?
        var accepted: UInt64
        var relays: Int64
        var loopRejections: UInt64
        var unknownRejections: UInt64
        var acceptPauses: UInt64
        var upstreams: [Upstream]
        var services: [String: ServiceRejections]
        var reconciler: Reconciler?
    }

    /// Whether `/ready` answered 200 (false while draining or before the first table).
    public var ready: Bool
    var statistics: Statistics

    /// Reads a `/stats` body. Throws `ValueError` naming the first field that is missing or of
    /// the wrong type.
    public init(statsJSON: [UInt8], ready: Bool) throws(ValueError) {
        do {
            statistics = try JSONDecoder().decode(Statistics.self, from: Data(statsJSON))
        } catch let error as DecodingError {
            throw ValueError("/stats: \(Self.describe(error))")
        } catch {
            throw ValueError("/stats: \(error)")
        }
        self.ready = ready
    }

    /// Asks the proxy whose admin endpoint is `address` for `/ready` and `/stats`, each within
    /// `timeout`. Throws ``HTTPError`` (`.connect` with ECONNREFUSED when no proxy listens
    /// there), or `ValueError` for a `/stats` that is not a proxy's.
    public static func fetch(from address: SocketAddress, timeout: Duration = .seconds(2)) throws -> ProxyStatusReport {
        let (ready, _) = try get("/ready", from: address, timeout: timeout)
        // 503 is how a proxy says "not ready"; anything else is not a turnout proxy's answer.
        guard ready == 200 || ready == 503 else { throw ValueError("GET http://\(address)/ready answered \(ready)") }
        let (status, body) = try get("/stats", from: address, timeout: timeout)
        guard status == 200 else { throw ValueError("GET http://\(address)/stats answered \(status)") }
        return try ProxyStatusReport(statsJSON: body, ready: ready == 200)
    }

    /// One GET within one deadline: its status and body.
    private static func get(_ path: String, from address: SocketAddress, timeout: Duration) throws(HTTPError) -> (Int, [UInt8]) {
        let deadline = ContinuousClock.now + timeout
        let exchange = try HTTPExchange(server: address, method: "GET", path: path, body: [], until: deadline, interrupt: nil)
        return (exchange.head.status, try exchange.readBody(until: deadline, limit: 16 << 20))
    }

    /// Lines for people: the proxy's state and table, its connections, one row per endpoint,
    /// the endpoints whose relays waited for a slow reader, what services turned away, and the
    /// table source when it watches one. `now` is the wall clock in seconds since 1970, for the
    /// source's "installed … ago".
    public func summary(at address: SocketAddress, now: Double) -> [String] {
        let stats = statistics
        var lines = ["proxy at \(address): \(ready ? "ready" : "NOT READY (draining, or no table yet)"); "
                     + "\(stats.workers) worker\(stats.workers == 1 ? "" : "s")\(stats.io.map { $0.isEmpty ? "" : " (\($0))" } ?? ""); table generation \(stats.generation) from \(stats.source)"]
        lines.append("  connections: \(stats.accepted) accepted, \(stats.relays) open; refused: \(stats.loopRejections) loops, "
                     + "\(stats.unknownRejections) unknown destinations; accept pauses (fd limit): \(stats.acceptPauses)")
        // The passthrough and inbound rows are always there; they say something once used.
        let upstreams = stats.upstreams.filter { upstream in
            !Self.unroutedServices.contains(upstream.service) || upstream.connections > 0 || upstream.connectFailures.values.contains { $0 > 0 }
        }.sorted { ($0.service, $0.endpoint) < ($1.service, $1.endpoint) }
        if upstreams.isEmpty {
            lines.append("  no connection routed to an endpoint yet")
        } else {
            lines += Self.upstreamRows(upstreams).map { "  " + $0 }
        }
        // Slow readers, where there were any: the table stays as wide as it was.
        for upstream in upstreams {
            let (toUpstream, toClients) = (upstream.upstreamFullWaits ?? 0, upstream.clientFullWaits ?? 0)
            guard toUpstream + toClients > 0 else { continue }
            lines.append("  \(upstream.service) \(upstream.endpoint): flow control waited \(toUpstream)×\(Self.paused(toUpstream, upstream.upstreamPausedSeconds)) "
                         + "for the upstream to read, \(toClients)×\(Self.paused(toClients, upstream.clientPausedSeconds)) for clients to read")
        }
        for (service, count) in stats.services.sorted(by: { $0.key < $1.key })
        where count.circuitBreakerRejections + count.unavailableRejections + count.panicPicks > 0 {
            lines.append("  \(service): \(count.circuitBreakerRejections) refused by the circuit breaker, "
                         + "\(count.unavailableRejections) refused with no endpoint available, \(count.panicPicks) sent in panic")
        }
        if let reconciler = stats.reconciler {
            var status = Reconciler.Status(source: stats.source)
            status.sourceState = reconciler.state
            status.sourceProblem = reconciler.problem
            status.sourceRevision = reconciler.sourceRevision
            status.installedRevision = reconciler.installedRevision
            status.installedAt = reconciler.installedAt
            status.installs = reconciler.installs
            status.unchanged = reconciler.unchanged
            status.installFailures = reconciler.installFailures
            status.invalidTables = reconciler.invalidTables
            status.outages = reconciler.outages
            status.lastFailure = reconciler.lastFailure
            lines += ReconcilerStatusFile.summary(status, now: now).map { "  proxy's " + $0 }
        }
        return lines
    }

    /// The rows of connections no service routed (passed through to, or delivered inbound to,
    /// their original destination): no health, and one row for all of them.
    private static let unroutedServices: Set<String> = [UpstreamKey.passthroughService, UpstreamKey.inboundService]

    /// The endpoint table, in the order given, columns padded to their widest cell; failures
    /// are summed over reasons and the reasons named when there are any.
    private static func upstreamRows(_ upstreams: [Upstream]) -> [String] {
        let header = ["service", "endpoint", "connections", "open", "connect failures", "state"]
        let rows: [[String]] = upstreams.map { upstream in
            let failures = upstream.connectFailures.filter { $0.value > 0 }.sorted { $0.key < $1.key }
            let total = failures.reduce(0) { $0 + $1.value }
            let failureText = total == 0 ? "0" : "\(total) (" + failures.map { "\($0.value) \($0.key)" }.joined(separator: ", ") + ")"
            let state = switch (upstream.healthy, upstream.ejected) {
            case (nil, _) where unroutedServices.contains(upstream.service): "-"
            case (nil, _), (_, nil): "not in the table"
            case (false?, true?): "unhealthy, ejected"
            case (false?, _): "unhealthy"
            case (_, true?): "ejected"
            default: "healthy"
            }
            let ejections = upstream.ejections > 0 ? " (ejected \(upstream.ejections)×)" : ""
            return [upstream.service, upstream.endpoint, "\(upstream.connections)", "\(upstream.active)", failureText, state + ejections]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        // Names left-aligned, counts right-aligned, as a reader compares them down a column.
        let numeric: Set<Int> = [2, 3]
        return ([header] + rows).map { cells in
            cells.indices.map { column in
                let pad = String(repeating: " ", count: widths[column] - cells[column].count)
                return numeric.contains(column) ? pad + cells[column] : cells[column] + pad
            }.joined(separator: "  ").droppingTrailingWhitespace
        }
    }

    /// ` (1.2 s in all)` after a count of waits; nothing for no waits, or when the proxy did
    /// not say (older than the paused time).
    private static func paused(_ waits: UInt64, _ seconds: Double?) -> String {
        guard waits > 0, let seconds else { return "" }
        return " (\(seconds.decimalText(fractionDigits: seconds < 10 ? 3 : 1)) s in all)"
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        switch error {
        case .keyNotFound(let key, let context): return "field \(path(context)).\(key.stringValue) is missing"
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return "field \(path(context)): \(context.debugDescription)"
        case .dataCorrupted(let context): return "not JSON: \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
