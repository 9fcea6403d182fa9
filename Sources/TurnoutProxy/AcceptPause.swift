import Glibc
import TurnoutModel

/// A worker's pause in accepting while the process has no descriptor to spare: the state both
/// workers keep, and the one rule for entering it.
///
/// A connection needs two descriptors, the client's and its upstream's, so the limit shows up
/// at `accept4` or at the upstream's `socket(2)`, whichever takes the last free one. Either
/// way the worker stops accepting for ``ProxyConfiguration/acceptPause``: the connections that
/// keep arriving wait in the listener's backlog until relays close, instead of being accepted
/// only to be reset (or, retried at once, making the worker spin). The first pause is logged;
/// every pause is counted (`acceptPauses`). Owned by one worker thread.
///
/// A pause may also be for good (``stopForGood()``): the worker's listeners were shut down for a
/// replacing proxy, and nothing may arm an accept on them again.
struct AcceptPause {
    /// Until when accepting waits; nil while accepting.
    private(set) var until: ContinuousClock.Instant?
    private var logged = false
    /// Set by ``stopForGood()``; no pause ends then.
    private(set) var isStopped = false

    /// Whether a call's errno says the process (or the system) is out of descriptors or the
    /// memory for one.
    static func isDescriptorShortage(_ code: Int32) -> Bool {
        [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(code)
    }

    var isPaused: Bool { isStopped || until != nil }

    /// Accepting ends for good: ``isPaused`` stays true and ``endIfDue(_:)`` false.
    mutating func stopForGood() {
        isStopped = true
        until = nil
    }

    /// Starts (or restarts) a pause after `error`; returns the line to log the first time.
    mutating func start(after error: SystemCallError, now: ContinuousClock.Instant, pause: Duration,
                        counters: WorkerCounters) -> String? {
        counters.acceptPauses.wrappingAdd(1, ordering: .relaxed)
        until = now + pause
        guard !logged else { return nil }
        logged = true
        return "\(error): pausing accepts for \(pause) at a time until descriptors are free (logged once)"
    }

    /// Starts a pause after an error that is not a shortage: accepting again at once could
    /// repeat the same error in a loop.
    mutating func back(off pause: Duration, now: ContinuousClock.Instant) {
        until = now + pause
    }

    /// Ends the pause when it is over; true when accepting may start again.
    mutating func endIfDue(_ now: ContinuousClock.Instant) -> Bool {
        guard !isStopped, let until, now >= until else { return false }
        self.until = nil
        return true
    }
}
