/// One relay direction's wait for room in a full destination (flow control): it began when the
/// destination took less than was ready for it, and ends when the destination is writable
/// again or the relay ends.
///
/// Counts the wait once, when it begins, and adds its length to the endpoint's paused time
/// when it ends (``TrafficCount/clientPausedNanoseconds``), so a client that stalls a relay
/// for minutes shows as minutes, not as one wait among many short ones. Worker thread only;
/// `now` is the worker's clock reading of the moment (a batch's, on the ring).
struct FlowControlWait {
    /// When the wait began, as the time since ``epoch``; nil while not waiting.
    ///
    /// Not a `ContinuousClock.Instant`: that type is not `@frozen` in the standard library, so
    /// a struct holding one has its layout computed at run time, and so does every struct that
    /// holds that one. With an `Instant?` here, each copy of a relay direction (several per
    /// message) went through the type's value witnesses: the proxy spent 4% more CPU per
    /// keepalive request (120 A/B pairs, 95% CI 1.025–1.07×), its user-space samples up from
    /// 7.7% to 13.8%. `Duration` is `@frozen`, so the directions keep a fixed layout.
    private var since: Duration?

    /// The reference the wait's start is kept against; read only when a wait begins or ends.
    private static let epoch = ContinuousClock.now

    var isWaiting: Bool { since != nil }

    /// The destination is full; a direction already waiting keeps its first moment.
    mutating func begin(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        guard since == nil else { return }
        since = now - Self.epoch
        counters?.destinationFull(toUpstream: toUpstream)
    }

    /// The destination has room again, or the relay ends: the wait's length is counted.
    mutating func end(at now: ContinuousClock.Instant, counters: TrafficCounters?, toUpstream: Bool) {
        guard let start = since else { return }
        since = nil
        counters?.paused(now - Self.epoch - start, toUpstream: toUpstream)
    }
}
