import TurnoutModel

/// One proxied connection inside a worker: the client's socket, the upstream socket being
/// connected or relayed to, and one ``RelayDirection`` each way.
///
/// Owned by the worker that accepted it and touched only on its thread; never Sendable. A
/// class because the worker finds it by token and mutates it in place.
final class Relay {
    enum Phase {
        /// Waiting for the upstream handshake (attempt ``attempts``).
        case connecting
        /// Bytes flow both ways.
        case relaying
    }

    /// Unique within its worker; part of every epoll token of this relay.
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
    var toUpstream = RelayDirection()
    var toClient = RelayDirection()

    init(id: UInt64, client: Int32, destination: SocketAddress, route: ServiceRoute?, snapshot: ProxySnapshot,
         load: ServiceLoad?, source: SocketAddress?, now: ContinuousClock.Instant) {
        self.id = id
        self.client = client
        self.destination = destination
        self.route = route
        self.snapshot = snapshot
        self.load = load
        self.source = source
        target = destination
        attemptStarted = now
        connectDeadline = now
        lastActivity = now
    }

    /// Both directions finished: every byte delivered and the end of stream passed on.
    var isFinished: Bool { toUpstream.isFinished && toClient.isFinished }

    /// The epoll token for the client's socket or the upstream socket of the current attempt.
    /// The attempt is part of it so that a late event of an abandoned attempt's socket is
    /// recognised and dropped.
    func token(upstream: Bool) -> UInt64 {
        upstream ? id << 4 | UInt64(attempts & 0x7) << 1 | 1 : id << 4
    }
}

/// One direction of a relay: where bytes wait between reading one socket and writing the other,
/// and how far the end of stream got.
///
/// A direction starts by copying (`recv` into the worker's scratch buffer, then `send`): for
/// the small messages of request/response traffic that is cheaper than moving pages through a
/// pipe, and a short read says the socket is drained, which saves the read that would only
/// say EAGAIN. The first read that fills the scratch buffer shows a bulk stream: from then on
/// the direction splices (socket → pipe → socket, no copy).
struct RelayDirection {
    /// Set once the direction moved to splicing; it never goes back.
    var splicing = false
    /// Copy mode: bytes received that the destination did not take yet (a full send buffer).
    var pending: [UInt8] = []
    /// Splice mode: taken from the worker's pool while bytes are in flight; nil when idle.
    var pipe: Pipe?
    /// Splice mode: bytes read into the pipe and not yet written out.
    var buffered = 0
    /// The source sent its end of stream (FIN).
    var sourceDone = false
    /// `shutdown(SHUT_WR)` was sent to the destination after the last byte.
    var shutdownSent = false
    /// The source may have bytes (or its end of stream) to read: set by a readiness event,
    /// cleared when a read would block. With edge-triggered epoll the next event comes only
    /// with new bytes, so a read is worth a system call only while this is set. It starts
    /// clear: a socket is registered with epoll as soon as it exists, and registering reports
    /// what is already readable, so the first event says when there is something (no read
    /// of a just-connected upstream only to hear EAGAIN).
    var sourceReadable = false
    /// The destination may take bytes: set by a writability event, cleared when a write would
    /// block.
    var destinationWritable = true
    /// An event said the source hung up (EPOLLRDHUP, EPOLLHUP, EPOLLERR): its end of stream (or
    /// error) may already be queued behind the data, where a short read does not show it and no
    /// further event will come; the source is read until it says so.
    var sourceHungUp = false
    /// An event said the source's end of stream arrived (EPOLLRDHUP without an error): TCP
    /// queues it behind all the data, so a read that drains the socket has reached it and
    /// the read that would return 0 is not made.
    var sourceFinQueued = false

    /// Bytes read and not yet written, in either mode.
    var isEmpty: Bool { buffered == 0 && pending.isEmpty }

    var isFinished: Bool { sourceDone && isEmpty && shutdownSent }
}
