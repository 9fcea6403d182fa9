/// One relay direction's wait for room in a full destination (flow control): it began when the
/// destination took less than was ready for it, and ends when the destination is writable
/// again or the relay ends.
///
/// Counts the wait once, when it begins, and adds its length to the endpoint's paused time
/// when it ends (``TrafficCount/clientPausedNanoseconds``), so a client that stalls a relay
/// for minutes shows as minutes, not as one wait among many short ones. Worker thread only;
/// `now` is the worker's clock reading of the moment (a batch's, on the ring).
struct FlowControlWait {
    private var since: ContinuousClock.Instant?

    var isWaiting: Bool { since != nil }

    /// The destination is full; a direction already waiting keeps its first moment.
    mutating func begin(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        guard since == nil else { return }
        since = now
        counters?.destinationFull(toUpstream: toUpstream)
    }

    /// The destination has room again, or the relay ends: the wait's length is counted.
    mutating func end(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        guard let start = since else { return }
        since = nil
        counters?.paused(now - start, toUpstream: toUpstream)
    }
}
