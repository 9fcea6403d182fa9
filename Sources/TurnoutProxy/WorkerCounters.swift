import Synchronization

/// What an upstream counter belongs to: a service port (``ServiceRoute/label``) and one of its
/// endpoints, or the passthrough group (all unknown destinations sent on as they were).
public struct UpstreamKey: Sendable, Hashable, Codable, Comparable {
    /// `shop/api:http`, or ``passthroughService``.
    public var service: String
    /// `10.1.0.5:8080`, or empty for passthrough.
    public var endpoint: String

    /// The service label of connections to destinations no route knows, passed through.
    public static let passthroughService = "passthrough"
    /// The service label of inbound connections, delivered to the app's own port.
    public static let inboundService = "inbound"

    public init(service: String, endpoint: String) {
        self.service = service
        self.endpoint = endpoint
    }

    public static func < (lhs: UpstreamKey, rhs: UpstreamKey) -> Bool {
        (lhs.service, lhs.endpoint) < (rhs.service, rhs.endpoint)
    }
}

/// Per-service counters that are not about one endpoint, as seen by one worker.
public final class ServiceCounters: Sendable {
    /// Refused because the service already had its maximum of connections (circuit breaker).
    let circuitBreakerRejections = Atomic<UInt64>(0)
    /// Refused because no endpoint could take it (none in the table, or every attempt failed).
    let unavailableRejections = Atomic<UInt64>(0)
    /// Picks made while too few endpoints were available, so all of them were tried (panic).
    let panicPicks = Atomic<UInt64>(0)

    init() {}

    public func read() -> ServiceCount {
        ServiceCount(circuitBreakerRejections: circuitBreakerRejections.load(ordering: .relaxed),
                     unavailableRejections: unavailableRejections.load(ordering: .relaxed),
                     panicPicks: panicPicks.load(ordering: .relaxed))
    }
}

/// A plain copy of ``ServiceCounters``.
public struct ServiceCount: Sendable, Hashable, Codable {
    public var circuitBreakerRejections: UInt64 = 0
    public var unavailableRejections: UInt64 = 0
    public var panicPicks: UInt64 = 0

    public init() {}

    init(circuitBreakerRejections: UInt64, unavailableRejections: UInt64, panicPicks: UInt64) {
        self.circuitBreakerRejections = circuitBreakerRejections
        self.unavailableRejections = unavailableRejections
        self.panicPicks = panicPicks
    }

    public static func + (lhs: ServiceCount, rhs: ServiceCount) -> ServiceCount {
        ServiceCount(circuitBreakerRejections: lhs.circuitBreakerRejections + rhs.circuitBreakerRejections,
                     unavailableRejections: lhs.unavailableRejections + rhs.unavailableRejections,
                     panicPicks: lhs.panicPicks + rhs.panicPicks)
    }
}

/// Every counter of one worker. The worker registers a counter the first time it needs it
/// (under a lock, off the hot path: once per route and endpoint per snapshot) and keeps the
/// reference; from then on it only touches atomics. A scrape locks each worker's registry
/// briefly to list the counters, then reads them.
public final class WorkerCounters: Sendable {
    private let upstreams = Mutex<[UpstreamKey: TrafficCounters]>([:])
    private let services = Mutex<[String: ServiceCounters]>([:])
    /// Connections accepted on any listener.
    let accepted = Atomic<UInt64>(0)
    /// Refused by the loop guard: the original destination was the proxy itself.
    let loopRejections = Atomic<UInt64>(0)
    /// Refused because no route knows the destination and `--unknown reject` is set.
    let unknownRejections = Atomic<UInt64>(0)
    /// Times accepting paused because the process ran out of descriptors (EMFILE, ENFILE).
    let acceptPauses = Atomic<UInt64>(0)
    /// Pipes the kernel made smaller than asked (the uid's pipe allowance is spent).
    let undersizedPipes = Atomic<UInt64>(0)
    /// Rounds of a bulk direction that copied because no pipe could be had (see ``PipeBudget``).
    let copyFallbacks = Atomic<UInt64>(0)
    /// Relays alive in this worker (connecting or relaying).
    let relays = Atomic<Int64>(0)

    init() {}

    func upstream(_ key: UpstreamKey) -> TrafficCounters {
        upstreams.withLock { table in
            if let counters = table[key] { return counters }
            let counters = TrafficCounters()
            table[key] = counters
            return counters
        }
    }

    func service(_ label: String) -> ServiceCounters {
        services.withLock { table in
            if table[label] == nil { table[label] = ServiceCounters() }
            return table[label]!
        }
    }

    /// Adds this worker's counters to `statistics`.
    func add(to statistics: inout ProxyStatistics) {
        for (key, counters) in upstreams.withLock({ $0 }) {
            statistics.upstreams[key, default: TrafficCount()] = statistics.upstreams[key, default: TrafficCount()] + counters.read()
        }
        for (label, counters) in services.withLock({ $0 }) {
            statistics.services[label, default: ServiceCount()] = statistics.services[label, default: ServiceCount()] + counters.read()
        }
        statistics.accepted += accepted.load(ordering: .relaxed)
        statistics.loopRejections += loopRejections.load(ordering: .relaxed)
        statistics.unknownRejections += unknownRejections.load(ordering: .relaxed)
        statistics.acceptPauses += acceptPauses.load(ordering: .relaxed)
        statistics.undersizedPipes += undersizedPipes.load(ordering: .relaxed)
        statistics.copyFallbacks += copyFallbacks.load(ordering: .relaxed)
        statistics.relays += relays.load(ordering: .relaxed)
    }
}

/// The proxy's counters summed over its workers at one moment: what `/metrics` and `/stats`
/// show. A plain value.
public struct ProxyStatistics: Sendable, Hashable, Codable {
    public var upstreams: [UpstreamKey: TrafficCount] = [:]
    public var services: [String: ServiceCount] = [:]
    public var accepted: UInt64 = 0
    public var loopRejections: UInt64 = 0
    public var unknownRejections: UInt64 = 0
    public var acceptPauses: UInt64 = 0
    public var undersizedPipes: UInt64 = 0
    /// Rounds of bulk directions that copied for want of a pipe (budget spent, the kernel's
    /// pipe undersized, or no descriptor).
    public var copyFallbacks: UInt64 = 0
    /// Pipe capacity held now (lent to relays or spare), in bytes; the most held at once; the
    /// budget (nil: none).
    public var pipeBytes: Int64 = 0
    public var pipeBytesPeak: Int64 = 0
    public var pipeBudget: Int64?
    /// Relays open now, in any phase.
    public var relays: Int64 = 0
    public var workers = 0
    /// How the workers wait on their sockets: `uring` or `epoll`.
    public var io = ""
    /// The table generation in use (1 for the first table, +1 per accepted reload).
    public var generation: UInt64 = 0
    /// The health of every endpoint of the table in use, read at the scrape.
    public var endpoints: [UpstreamKey: EndpointStatus] = [:]

    public init() {}
}

/// One routed endpoint's health at one moment: what the active checks say and whether outlier
/// detection has it ejected. Either makes it unavailable (unless the service is in panic).
public struct EndpointStatus: Sendable, Hashable, Codable {
    /// False once active checks failed the unhealthy threshold in a row (true with checks off).
    public var healthy: Bool
    /// True while outlier detection keeps it out.
    public var ejected: Bool

    public init(healthy: Bool, ejected: Bool) {
        self.healthy = healthy
        self.ejected = ejected
    }
}
