import Glibc
import TurnoutModel

/// One proxied connection inside a worker: the client's socket, the upstream socket being
/// connected or relayed to, where it is routed, and one `Direction` each way (what the worker's
/// way of waiting keeps per direction: ``RelayDirection`` for epoll).
///
/// Owned by the worker that accepted it and touched only on its thread; never Sendable. A
/// class because the worker finds it by token and mutates it in place.
final class Relay<Direction> {
    enum Phase {
        /// Waiting for the upstream handshake (attempt ``attempts``).
        case connecting
        /// Bytes flow both ways.
        case relaying
    }

    /// Unique within its worker; part of every token (epoll event or ring request) of this relay.
    let id: UInt64
    let client: Int32
    var upstream: Int32 = -1
    var phase = Phase.connecting
    /// Where the client was going (its `SO_ORIGINAL_DST`).
    let destination: SocketAddress
    /// The route, for a known service; nil for passthrough and inbound delivery.
    let route: ServiceRoute?
    /// The snapshot `route` (and its endpoint indices) belong to: the relay keeps it across a
    /// reload, so it stays on the endpoint it chose.
    let snapshot: ProxySnapshot
    /// The service's circuit-breaker slot this relay holds, released when it ends.
    let load: ServiceLoad?
    /// The source address upstream connects bind to (inbound delivery: 127.0.0.6 / ::6).
    let source: SocketAddress?
    /// The endpoint index being connected or relayed to (route relays only).
    var endpoint: Int?
    /// Where the current attempt connects.
    var target: SocketAddress
    /// Endpoints already tried for this connection.
    var tried: Set<Int> = []
    /// Endpoints health ruled out when the connection came (unhealthy or ejected, unless the
    /// service was in panic): no attempt goes to them.
    var unavailable: Set<Int> = []
    var attempts = 0
    var attemptStarted: ContinuousClock.Instant
    var connectDeadline: ContinuousClock.Instant
    var lastActivity: ContinuousClock.Instant
    /// When one direction ended while the other goes on.
    var halfClosedSince: ContinuousClock.Instant?
    /// The counters of the upstream in use; set once the attempt is chosen.
    var counters: TrafficCounters?
    /// Whether `counters.connected` was called (so `closed` must be too).
    var counted = false
    var toUpstream: Direction
    var toClient: Direction
    /// io_uring worker: the relay is on the list of those to pump after the current batch of
    /// completions (so it is put there once).
    var touched = false

    /// A relay for `client` as ``WorkerRoutes`` admitted it; both directions start as `direction`.
    init(id: UInt64, client: Int32, admission: WorkerRoutes.Admission, direction: Direction, now: ContinuousClock.Instant) {
        self.id = id
        self.client = client
        destination = admission.destination
        route = admission.route
        snapshot = admission.snapshot
        load = admission.load
        source = admission.source
        unavailable = admission.unavailable
        target = admission.destination
        attemptStarted = now
        connectDeadline = now
        lastActivity = now
        toUpstream = direction
        toClient = direction
    }

    /// The epoll token for the client's socket or the upstream socket of the current attempt.
    /// The attempt is part of it so that a late event of an abandoned attempt's socket is
    /// recognised and dropped.
    func token(upstream: Bool) -> UInt64 {
        upstream ? id << 4 | UInt64(attempts & 0x7) << 1 | 1 : id << 4
    }
}

extension Relay {
    /// A relaying connection past one of its time bounds: no byte either way for the idle
    /// timeout, or half closed for the half-closed timeout. Either is closed cleanly.
    func isPastTimeouts(at now: ContinuousClock.Instant, _ configuration: ProxyConfiguration) -> Bool {
        guard phase == .relaying else { return false }
        if now - lastActivity >= configuration.idleTimeout { return true }
        guard let since = halfClosedSince else { return false }
        return now - since >= configuration.halfClosedTimeout
    }

    /// Closes both sockets, the client's with a reset when `reset` (a failed relay: the client
    /// then sees an error rather than a clean, empty answer).
    func closeSockets(reset: Bool) {
        if upstream >= 0 {
            if reset { Syscalls.closeWithReset(upstream) } else { close(upstream) }
        }
        if reset { Syscalls.closeWithReset(client) } else { close(client) }
    }
}
