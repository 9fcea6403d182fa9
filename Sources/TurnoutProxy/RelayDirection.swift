/// One direction of an epoll worker's relay: where bytes wait between reading one socket and
/// writing the other, and how far the end of stream got.
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
    /// The destination may take bytes: set by a writability event (``destinationReady(at:counters:toUpstream:)``),
    /// cleared when a write would block (``destinationFilled(at:counters:toUpstream:)``).
    private(set) var destinationWritable = true
    /// Flow control: since when the destination has been full, while it is.
    private var wait = FlowControlWait()
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

    /// Splice mode: socket → pipe → socket, through the direction's pipe (the caller took it
    /// from `pipes`), until the source has nothing more or the destination takes nothing more.
    /// Clears ``sourceReadable`` or ``destinationWritable`` when a splice would block, sets
    /// ``sourceDone`` at the end of stream, and gives the pipe back once it is empty. Returns
    /// whether bytes moved and whether a side broke.
    mutating func splice(from source: Int32, to destination: Int32, counters: TrafficCounters?, toUpstream: Bool,
                         pipes: inout WorkerPipes, now: ContinuousClock.Instant) -> (moved: Bool, broken: Bool) {
        var moved = false
        // Bytes the copy mode could not send yet go first, in order.
        guard pending.isEmpty else { return (false, false) }
        var readable = !sourceDone && sourceReadable
        while (readable || buffered > 0) && destinationWritable {
            var progressed = false
            if readable, pipe != nil {
                let room = pipe!.capacity - buffered
                if room > 0 {
                    switch Syscalls.splice(from: source, to: pipe!.write, length: room) {
                    case .moved(let count):
                        buffered += count
                        progressed = true
                    case .endOfStream:
                        sourceDone = true
                        readable = false
                        progressed = true
                    case .wouldBlock:
                        readable = false
                        sourceReadable = false
                    case .failed:
                        return (moved, true)
                    }
                }
            }
            if buffered > 0 {
                switch Syscalls.splice(from: pipe!.read, to: destination, length: buffered) {
                case .moved(let count):
                    buffered -= count
                    counters?.moved(count, toUpstream: toUpstream)
                    moved = true
                    progressed = true
                case .wouldBlock:
                    destinationFilled(at: now, counters: counters, toUpstream: toUpstream)
                case .endOfStream, .failed:
                    return (moved, true)
                }
            }
            if !progressed { break }
        }
        if buffered == 0, let held = pipe {
            pipes.give(held, empty: true)
            pipe = nil
        }
        return (moved, false)
    }

    /// The destination took less than was ready for it: no write until a writability event,
    /// and the wait counted (flow control, see ``TrafficCount/upstreamFullWaits``).
    mutating func destinationFilled(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        destinationWritable = false
        wait.begin(at: now, counters: counters, toUpstream: toUpstream)
    }

    /// The destination has room (a writability event, or a connect that completed): writes go
    /// on, and a wait that was going on is over (its length counted).
    mutating func destinationReady(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        destinationWritable = true
        wait.end(at: now, counters: counters, toUpstream: toUpstream)
    }

    /// A wait for room is going on (the relay's end must count it, ``endWait(at:counters:toUpstream:)``).
    var isWaiting: Bool { wait.isWaiting }

    /// The relay ends: a wait it cut short counts up to `now`.
    mutating func endWait(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        wait.end(at: now, counters: counters, toUpstream: toUpstream)
    }
}

extension Relay where Direction == RelayDirection {
    /// Both directions finished: every byte delivered and the end of stream passed on.
    var isFinished: Bool { toUpstream.isFinished && toClient.isFinished }
}
