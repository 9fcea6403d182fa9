import Glibc
import TurnoutModel

/// What one worker knows for routing its connections, whatever waits on its sockets (epoll or
/// io_uring): the snapshot it is on, a balancer and counters per route and endpoint, and which
/// endpoints health rules out. It decides where an accepted connection goes, picks each connect
/// attempt's endpoint, and keeps the books of attempts, connections and their end.
///
/// Owned by one worker and used only on its thread; not Sendable. What it shares with other
/// threads is Sendable: the ``SnapshotCell`` it reads tables from (with each service's
/// ``ServiceLoad`` and ``ServiceOutliers``), the ``EndpointHealthCell`` of the active checks and
/// the worker's ``WorkerCounters``.
final class WorkerRoutes {
    /// Where an admitted connection goes: its route (nil for passthrough and inbound delivery)
    /// on the snapshot it was routed by, the circuit-breaker slot it holds, the source address
    /// its upstream connects bind to, and the endpoints health ruled out when it came.
    struct Admission {
        var destination: SocketAddress
        var snapshot: ProxySnapshot
        var route: ServiceRoute?
        var load: ServiceLoad?
        var source: SocketAddress?
        var unavailable: Set<Int>
    }

    /// What a worker knows of one route's availability, and the stamps that say when it expired.
    struct CachedAvailability {
        let availability: EndpointAvailability
        let ejected: ServiceOutliers.Ejected
        let healthRound: UInt64
    }

    let configuration: ProxyConfiguration
    let counters: WorkerCounters
    private let cell: SnapshotCell
    private let healthCell: EndpointHealthCell
    private let log: @Sendable (String) -> Void
    /// Ports the proxy listens on (any worker, any listener): a destination on one of them at a
    /// local address is the proxy itself.
    private let ownPorts: Set<UInt16>
    private(set) var snapshot: ProxySnapshot
    private var pickers: [EndpointPicker] = []
    private var endpointCounters: [[TrafficCounters]] = []
    private var serviceCounters: [ServiceCounters] = []
    /// The active checks' latest round as this worker last read it.
    private var health = EndpointHealthSnapshot.empty
    /// Per route: which endpoints health rules out, and when that must be worked out again.
    private var availability: [CachedAvailability?] = []
    private let passthroughCounters: TrafficCounters
    private let inboundCounters: TrafficCounters
    private var seed: UInt64

    /// `index`: the worker's, which seeds its balancers apart from other workers'.
    init(index: Int, configuration: ProxyConfiguration, counters: WorkerCounters, cell: SnapshotCell,
         health: EndpointHealthCell, log: @escaping @Sendable (String) -> Void) {
        self.configuration = configuration
        self.counters = counters
        self.cell = cell
        healthCell = health
        self.log = log
        snapshot = cell.snapshot
        seed = 0x9E37_79B9_7F4A_7C15 &* UInt64(index + 1)
        ownPorts = Set((configuration.outbound + configuration.inbound).map(\.port))
        passthroughCounters = counters.upstream(UpstreamKey(service: UpstreamKey.passthroughService, endpoint: ""))
        inboundCounters = counters.upstream(UpstreamKey(service: UpstreamKey.inboundService, endpoint: ""))
        rebuild()
    }

    // MARK: - admission

    /// Decides where the connection `fd`, accepted on a listener of `kind`, goes. Nil when it is
    /// refused: not redirected or redirected to the proxy itself (loop guard), a known service
    /// with no endpoint or over its connection limit, an unknown destination under
    /// `--unknown reject`; the refusal is counted and `fd` closed with a reset. An admission
    /// counts as an open relay (``WorkerCounters/relays``) until ``released(_:)``.
    func admit(_ fd: Int32, kind: WorkerListener.Kind, family: IPFamily, now: ContinuousClock.Instant) -> Admission? {
        guard let destination = try? Syscalls.originalDestination(fd, family: family),
              !isProxyItself(destination, connection: fd) else {
            // Not redirected (someone dialled the proxy port), or redirected to the proxy's own
            // port: forwarding it would loop.
            counters.loopRejections.wrappingAdd(1, ordering: .relaxed)
            Syscalls.closeWithReset(fd)
            return nil
        }
        if let newer = cell.newer(than: snapshot.generation) {
            snapshot = newer
            rebuild()
        }
        var admission = Admission(destination: destination, snapshot: snapshot, route: nil, load: nil, source: nil, unavailable: [])
        switch kind {
        case .inbound:
            admission.source = configuration.inboundSources[family].map { SocketAddress(address: $0, port: 0) }
        case .outbound:
            if let known = snapshot.routes.route(for: destination) {
                guard !known.endpoints.isEmpty else {
                    serviceCounters[known.id].unavailableRejections.wrappingAdd(1, ordering: .relaxed)
                    Syscalls.closeWithReset(fd)
                    return nil
                }
                guard snapshot.load[known.id].acquire(limit: configuration.maxConnectionsPerService) else {
                    serviceCounters[known.id].circuitBreakerRejections.wrappingAdd(1, ordering: .relaxed)
                    Syscalls.closeWithReset(fd)
                    return nil
                }
                admission.route = known
                admission.load = snapshot.load[known.id]
                let available = availability(of: known, now: now)
                if available.isPanic { serviceCounters[known.id].panicPicks.wrappingAdd(1, ordering: .relaxed) }
                admission.unavailable = available.healthExclusion
            } else if configuration.unknown == .reject {
                counters.unknownRejections.wrappingAdd(1, ordering: .relaxed)
                Syscalls.closeWithReset(fd)
                return nil
            }
        }
        counters.relays.wrappingAdd(1, ordering: .relaxed)
        return admission
    }

    /// A destination that is the proxy itself: the address the client reached after NAT, or
    /// one of the proxy's ports on a loopback address. Either has one of the proxy's ports, so
    /// the connection's local address (`getsockname`) is read only for those: a system call
    /// saved on every other connection.
    private func isProxyItself(_ destination: SocketAddress, connection fd: Int32) -> Bool {
        guard ownPorts.contains(destination.port) else { return false }
        guard let local = try? Syscalls.address(of: fd, peer: false) else { return true }
        if destination == local { return true }
        return IPPrefix.loopback(destination.address.family).contains(destination.address) || destination.address == local.address
    }

    // MARK: - attempts

    /// Chooses the next connect attempt of `relay`: its endpoint (route relays: the balancer's
    /// pick among those not tried and not ruled out), target, counters, attempt number, start
    /// and deadline. False when no attempt is left (all tried, or `--connect-attempts` spent):
    /// a route's connection is then counted as unavailable, and the caller ends the relay.
    func nextAttempt<Direction>(_ relay: Relay<Direction>, now: ContinuousClock.Instant) -> Bool {
        let maximum = relay.route == nil ? 1 : max(1, min(configuration.connectAttempts, 7))
        guard relay.attempts < maximum else { return noAttemptLeft(relay) }
        if let route = relay.route {
            let picker = relay.snapshot === snapshot ? pickers[route.id] : nil
            let excluded = relay.unavailable.union(relay.tried)
            // Every endpoint tried already or ruled out: nothing else to try.
            guard let index = picker.map({ $0.pick(excluding: excluded, at: now) })
                    ?? Self.firstUntried(route, excluded) else { return noAttemptLeft(relay) }
            relay.endpoint = index
            relay.tried.insert(index)
            relay.target = route.endpoints[index].address
            relay.counters = relay.snapshot === snapshot ? endpointCounters[route.id][index]
                : counters.upstream(UpstreamKey(service: route.label, endpoint: "\(route.endpoints[index].address)"))
        } else {
            relay.counters = relay.source == nil ? passthroughCounters : inboundCounters
        }
        relay.attempts += 1
        relay.attemptStarted = now
        relay.connectDeadline = now + configuration.connectTimeout
        return true
    }

    private func noAttemptLeft<Direction>(_ relay: Relay<Direction>) -> Bool {
        if let route = relay.route {
            (relay.snapshot === snapshot ? serviceCounters[route.id] : counters.service(route.label))
                .unavailableRejections.wrappingAdd(1, ordering: .relaxed)
        }
        return false
    }

    /// A relay whose snapshot is no longer the worker's has no balancer: it retries in table order.
    private static func firstUntried(_ route: ServiceRoute, _ excluded: Set<Int>) -> Int? {
        route.endpoints.indices.first { !excluded.contains($0) }
    }

    /// The current attempt failed with `code`: counted by reason, a balancer penalty, and an
    /// outlier failure unless the cause was local. The caller closes the attempt's socket.
    func attemptFailed<Direction>(_ relay: Relay<Direction>, errno code: Int32, now: ContinuousClock.Instant) {
        relay.counters?.failed(ConnectFailure(errno: code))
        guard let route = relay.route, let index = relay.endpoint else { return }
        if relay.snapshot === snapshot { pickers[route.id].failed(index, penalty: configuration.connectTimeout, at: now) }
        if !Self.isLocalShortage(code) { outlierFailure(relay, route: route, endpoint: index, now: now) }
    }

    /// The current attempt connected: its latency goes to the counters, the balancer and the
    /// outlier detector.
    func established<Direction>(_ relay: Relay<Direction>, now: ContinuousClock.Instant) {
        let latency = now - relay.attemptStarted
        relay.counters?.connected(after: latency)
        relay.counted = true
        if let route = relay.route, let index = relay.endpoint {
            if relay.snapshot === snapshot { pickers[route.id].connected(index, after: latency, at: now) }
            relay.snapshot.outliers[route.id].connectSucceeded(route.endpoints[index].address, at: now)
        }
    }

    /// `relay` ended: its counts and its circuit-breaker slot are released. Called once, before
    /// its sockets close, so whoever sees the connection end (a client, a test) sees counters
    /// and a circuit breaker that already account for it.
    func released<Direction>(_ relay: Relay<Direction>) {
        counters.relays.wrappingSubtract(1, ordering: .relaxed)
        if relay.counted {
            relay.counters?.closed()
            if let route = relay.route, let index = relay.endpoint, relay.snapshot === snapshot { pickers[route.id].closed(index) }
        }
        relay.load?.release()
    }

    /// A connect that failed for want of a local resource (no descriptor, no ephemeral port,
    /// no memory): says nothing of the endpoint, so outlier detection does not count it.
    private static func isLocalShortage(_ code: Int32) -> Bool {
        [EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL].contains(code)
    }

    private func outlierFailure<Direction>(_ relay: Relay<Direction>, route: ServiceRoute, endpoint index: Int,
                                           now: ContinuousClock.Instant) {
        let address = route.endpoints[index].address
        guard case .ejected(let until) = relay.snapshot.outliers[route.id].connectFailed(address, at: now) else { return }
        relay.counters?.ejections.wrappingAdd(1, ordering: .relaxed)
        log("\(route.label): endpoint \(address) ejected for \(until - now) after \(configuration.outlier.consecutiveFailures) connect failures in a row")
    }

    // MARK: - health

    /// Which endpoints of `route` health rules out now: unhealthy by the active checks or ejected,
    /// and whether that many out means panic. Worked out again only when a new check round came,
    /// an ejection happened or one ended; otherwise two atomic loads.
    private func availability(of route: ServiceRoute, now: ContinuousClock.Instant) -> EndpointAvailability {
        let outliers = snapshot.outliers[route.id]
        let round = healthCell.round
        if let cached = availability[route.id], cached.healthRound == round,
           cached.ejected.holds(changes: outliers.changes, at: now) {
            return cached.availability
        }
        if round != health.round { health = healthCell.snapshot }
        let ejected = outliers.ejected(at: now)
        let available = EndpointAvailability(route: route, panicThreshold: configuration.panicThreshold) { endpoint in
            !health.isHealthy(endpoint.address) || ejected.endpoints.contains(endpoint.address)
        }
        availability[route.id] = CachedAvailability(availability: available, ejected: ejected, healthRound: health.round)
        return available
    }

    /// Balancers and counter references for the current snapshot's routes.
    private func rebuild() {
        let routes = snapshot.routes.routes
        pickers = routes.map { route in
            seed = seed &+ 0x9E37_79B9_7F4A_7C15
            return EndpointPicker(route, balancer: configuration.balancer, seed: seed)
        }
        endpointCounters = routes.map { route in
            route.endpoints.map { counters.upstream(UpstreamKey(service: route.label, endpoint: "\($0.address)")) }
        }
        serviceCounters = routes.map { counters.service($0.label) }
        availability = Array(repeating: nil, count: routes.count)
    }
}
