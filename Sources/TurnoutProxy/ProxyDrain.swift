/// When a proxy told to stop (SIGTERM) may exit: once no connection has been open for a quiet
/// moment, or when the drain time is over, whichever comes first.
///
/// The listeners stay open while draining. In a pod the capture rules still send the app's
/// connections to the proxy; a closed listener would refuse them. An app that got the same
/// SIGTERM may still be making its last calls (a classic sidecar is signalled with the app;
/// a Kubernetes native sidecar only after the app exited), so the proxy keeps serving.
/// It leaves once nothing has been open and nothing accepted for ``quiet``, so a gap of a
/// few milliseconds between two of the app's calls does not end it. Connections the kernel
/// queued on a listener but no worker accepted yet are not seen (a worker accepts them within
/// its next round, except while it pauses at the descriptor limit); those still queued at the
/// exit are reset with the listener. A plain value: the caller feeds it observations
/// (``observe(at:open:accepted:)``) from one thread.
public struct ProxyDrain: Sendable {
    /// What the caller does after an observation.
    public enum Verdict: Sendable, Equatable {
        /// Keep serving and observe again.
        case wait
        /// No connection open and none accepted for ``quiet``: stop now.
        case drained
        /// The drain time is over with `open` connections still open: stop now (they close).
        case timeUp(open: Int)
    }

    /// The longest the drain lasts.
    public let limit: Duration
    /// How long nothing may be open or accepted before the drain is over.
    public let quiet: Duration
    private let started: ContinuousClock.Instant
    /// The first look that found nothing open and nothing newly accepted, since the last one
    /// that did not; nil while busy. When a connection closed between two looks is not known,
    /// so the quiet time counts from the look that saw it gone.
    private var quietSince: ContinuousClock.Instant?
    private var accepted: UInt64

    /// A drain that began at `started`, when the proxy had accepted `accepted` connections in
    /// all. `limit` zero: the first observation stops.
    public init(started: ContinuousClock.Instant, limit: Duration, quiet: Duration = .seconds(1), accepted: UInt64) {
        self.limit = limit
        self.quiet = quiet
        self.started = started
        quietSince = started
        self.accepted = accepted
    }

    /// Takes the proxy's state at `now`: `open` connections, `accepted` in all since it started.
    public mutating func observe(at now: ContinuousClock.Instant, open: Int, accepted: UInt64) -> Verdict {
        let busy = open > 0 || accepted != self.accepted
        self.accepted = accepted
        if busy {
            quietSince = nil
        } else if quietSince == nil {
            quietSince = now
        }
        if now - started >= limit { return open == 0 ? .drained : .timeUp(open: open) }
        guard let quietSince else { return .wait }
        return now - quietSince >= quiet ? .drained : .wait
    }
}
