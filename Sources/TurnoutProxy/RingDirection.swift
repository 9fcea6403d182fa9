/// One direction of an io_uring worker's relay: what was received and waits to be sent, which
/// requests are armed, and how far the end of stream got.
///
/// A direction starts receiving: a multishot receive stays armed on its source, and each
/// arrival lands in one of the ring's provided buffers. After the batch of completions, an
/// arrival with nothing ahead of it goes on with a send on the ring, straight from its buffer
/// (the fast path: request/response traffic never copies); one send is in flight at a time.
/// Arrivals behind it are copied aside (``pending``) and their buffers given back at once. A
/// send never waits on the ring (MSG_DONTWAIT): a full destination completes it at once with
/// what it took, the rest is copied aside too and its buffer given back, so a buffer is held
/// only within a batch, and stalled destinations, however many, take none of the worker's
/// buffers from the rest. ``pending`` goes on with plain
/// non-blocking `send(2)` once the ring's send completed; what a full destination does not take
/// waits there, the receive is cancelled (so does a ``pendingLimit`` of copied bytes), and a
/// poll says when the destination takes more. A receive that fills a buffer shows a bulk
/// stream: the receive is cancelled and the direction moves to splicing (readiness by one-shot
/// polls, bytes by `splice(2)` through a pipe, as the epoll worker does). With no pipe to be
/// had it receives again, and asks for a pipe again only after ``spliceBackoff`` more full
/// buffers.
struct RingDirection {
    /// Received in this batch of completions, not yet sent: a provided buffer and its length.
    struct Segment {
        var buffer: Int32
        var count: Int
    }

    /// Copied bytes past which the receive pauses until the destination took them.
    static let pendingLimit = 65_536

    /// Arrivals of the current batch, in order; sent on (or copied to ``pending``) after it.
    var queue: [Segment] = []
    /// The segment whose send is in flight on the ring; its buffer is held until the send completes.
    var inFlight: Segment?
    /// Bytes waiting behind ``inFlight``, or that the destination did not take yet (a full send
    /// buffer), copied out of the ring's buffers; they go before anything received later.
    var pending: [UInt8] = []
    /// A send would block: the destination is polled for writability before the next.
    private(set) var destinationBlocked = false
    /// Flow control: since when the destination has been full, while it is (copy mode; splice
    /// mode keeps its own in ``splice``).
    private var wait = FlowControlWait()
    /// A multishot receive is armed: until a completion without `more` says it ended.
    var receiving = false
    /// The receive ended with -ENOBUFS (every ring buffer in use); armed again once buffers return.
    var starved = false
    /// The receive is being cancelled (bulk, or a blocked destination): once it ended and
    /// ``pending`` is sent, the direction splices (``bulk``) or receives again.
    var pausing = false
    /// A receive filled a buffer while a pipe may be asked for: splice once paused.
    var bulk = false
    /// Full buffers still to come before a pipe is asked for again, after one was refused: a
    /// proxy out of pipes (or with none allowed) copies without cancelling a receive per buffer.
    var spliceBackoff = 0
    /// Splice mode: its pipe, the bytes in it, and which side was last said to be ready.
    var splice: RelayDirection?
    /// A one-shot poll for the source's readability (splice mode) is armed.
    var pollingSource = false
    /// A poll for the destination's writability is armed: one-shot, or, after a one-shot one
    /// reported only the peer's end of its writes (`POLLRDHUP`, which io_uring adds to every
    /// poll and would report again at once), multishot, to wait for a wakeup. That one is
    /// cancelled once it reported room; this stays set until its last completion.
    var pollingDestination = false
    /// The multishot destination poll's cancel is queued.
    var destinationPollCancelled = false
    /// The source sent its end of stream (FIN).
    var sourceDone = false
    /// The end of stream was passed on (`shutdown(SHUT_WR)`, or the close that finishes the relay).
    var shutdownSent = false

    /// A request of this direction is armed on the ring (a receive, a send or a poll).
    var hasRequests: Bool { receiving || inFlight != nil || pollingSource || pollingDestination }

    /// Bytes received and not yet written, in either mode.
    var isEmpty: Bool { queue.isEmpty && inFlight == nil && pending.isEmpty && (splice?.buffered ?? 0) == 0 }

    var isFinished: Bool { sourceDone && isEmpty && shutdownSent }

    /// The destination took less than was ready for it: it is polled for writability before
    /// the next send, and the wait counted (flow control, see ``TrafficCount/upstreamFullWaits``).
    mutating func destinationFilled(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        destinationBlocked = true
        wait.begin(at: now, counters: counters, toUpstream: toUpstream)
    }

    /// A poll said the destination has room: sends (or splices) go on, and the wait, in
    /// either mode, is over (its length counted).
    mutating func destinationReady(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        destinationBlocked = false
        wait.end(at: now, counters: counters, toUpstream: toUpstream)
        splice?.destinationReady(at: now, counters: counters, toUpstream: toUpstream)
    }

    /// The relay ends: a wait it cut short counts up to `now`.
    mutating func endWait(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        wait.end(at: now, counters: counters, toUpstream: toUpstream)
        splice?.endWait(at: now, counters: counters, toUpstream: toUpstream)
    }
}

extension Relay where Direction == RingDirection {
    /// Both directions finished: every byte delivered and the end of stream passed on.
    var isFinished: Bool { toUpstream.isFinished && toClient.isFinished }
}
