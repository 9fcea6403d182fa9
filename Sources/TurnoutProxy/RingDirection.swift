/// One direction of an io_uring worker's relay: what was received and waits to be sent, which
/// requests are armed, and how far the end of stream got.
///
/// A direction starts receiving: a multishot receive stays armed on its source, each arrival
/// lands in one of the ring's provided buffers and goes on with one send, the buffer given back
/// when the send completed. One send is in flight at a time, so bytes keep their order. A
/// receive that fills a buffer shows a bulk stream, and a destination that falls behind shows
/// it can wait: either way the receive is cancelled and what it got is sent. A bulk direction
/// then moves to splicing (readiness by one-shot polls, bytes by `splice(2)` through a pipe, as
/// the epoll worker does), which holds no ring buffer and stops reading while the destination
/// is full; any other receives again. With no pipe to be had a bulk direction receives too, and
/// asks for a pipe again only after ``spliceBackoff`` more full buffers.
struct RingDirection {
    /// A received run of bytes in a provided buffer, not yet all sent.
    struct Segment {
        var buffer: Int32
        var offset: Int
        var count: Int
    }

    /// Buffers a receiving direction may hold before its receive is cancelled: a destination
    /// that falls behind would otherwise hold the worker's whole buffer ring.
    static let heldLimit = 4

    /// Received and not yet sent; the first is in flight when ``sending``.
    var queue: [Segment] = []
    /// A send of the queue's first segment is in flight.
    var sending = false
    /// A multishot receive is armed: until a completion without `more` says it ended.
    var receiving = false
    /// The receive ended with -ENOBUFS (every ring buffer in use); armed again once buffers return.
    var starved = false
    /// The receive is being cancelled (bulk, or ``heldLimit`` reached): once it ended and the
    /// queue is sent, the direction splices (``bulk``) or receives again.
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
    /// A one-shot poll for the destination's writability (splice mode) is armed.
    var pollingDestination = false
    /// The source sent its end of stream (FIN).
    var sourceDone = false
    /// The end of stream was passed on (`shutdown(SHUT_WR)`, or the close that finishes the relay).
    var shutdownSent = false

    /// A request of this direction is armed on the ring (a receive, a send or a poll).
    var hasRequests: Bool { receiving || sending || pollingSource || pollingDestination }

    /// Bytes received and not yet written, in either mode.
    var isEmpty: Bool { queue.isEmpty && (splice?.buffered ?? 0) == 0 }

    var isFinished: Bool { sourceDone && isEmpty && shutdownSent }
}

extension Relay where Direction == RingDirection {
    /// Both directions finished: every byte delivered and the end of stream passed on.
    var isFinished: Bool { toUpstream.isFinished && toClient.isFinished }
}
