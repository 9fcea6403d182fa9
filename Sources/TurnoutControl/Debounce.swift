/// When a burst of changes is worth acting on: once the source has been quiet for `quiet`, or
/// `maxDelay` after the burst's first change, whichever comes first. A steady stream of changes
/// is then applied at least every `maxDelay`, and a single change after `quiet`.
///
/// A pure value (the caller passes the time), owned by one thread: the ``Reconciler``'s.
public struct Debounce: Sendable, Hashable {
    public let quiet: Duration
    public let maxDelay: Duration
    private var first: ContinuousClock.Instant?
    private var last: ContinuousClock.Instant?

    /// The bounds: 100 ms of quiet, at most 1 s after the first change.
    public static let standard = Debounce(quiet: .milliseconds(100), maxDelay: .seconds(1))

    public init(quiet: Duration, maxDelay: Duration) {
        self.quiet = quiet
        self.maxDelay = max(quiet, maxDelay)
    }

    /// A change came at `now`.
    public mutating func changed(at now: ContinuousClock.Instant) {
        if first == nil { first = now }
        last = now
    }

    /// When the pending burst is due; nil when nothing is pending.
    public var due: ContinuousClock.Instant? {
        guard let first, let last else { return nil }
        return min(last + quiet, first + maxDelay)
    }

    /// The burst was acted on: nothing is pending until the next change.
    public mutating func fired() {
        first = nil
        last = nil
    }
}
