import Synchronization
import TurnoutModel

/// Passive outlier ejection for one service port, shared by every worker: their connect results
/// go into one ``OutlierEjection``, so "5 failures in a row" means five in a row for the
/// service, whichever workers made them.
///
/// Lives in the ``ProxySnapshot`` beside the service's ``ServiceLoad`` and is handed on to the
/// next snapshot by label (ejections survive a reload; see ``update(endpoints:)``). Sendable: the
/// ejection state is behind a lock, taken only on a connect failure, on a success while some
/// endpoint has failures counted, and when a worker's view is stale. A worker reads ``changes``
/// (one relaxed atomic load) to know whether the ejected set it cached still holds.
final class ServiceOutliers: Sendable {
    /// What a worker caches: the endpoints ejected now, and until when that answer holds.
    struct Ejected {
        let endpoints: Set<SocketAddress>
        /// ``ServiceOutliers/changes`` when this was read.
        let changes: UInt64
        /// The earliest end of a current ejection: the set shrinks then. Nil when none is ejected.
        let until: ContinuousClock.Instant?

        func holds(changes current: UInt64, at now: ContinuousClock.Instant) -> Bool {
            current == changes && until.map { now < $0 } != false
        }
    }

    private struct State {
        var ejection: OutlierEjection<SocketAddress>
        /// Endpoints whose failures in a row are above 0.
        var failing: Set<SocketAddress> = []
    }

    private let state: Mutex<State>
    /// Bumped (under the lock) whenever an endpoint is ejected or the endpoint set changes.
    private let changeCount = Atomic<UInt64>(0)
    /// Whether some endpoint has failures counted: only then does a success need the lock.
    private let anyFailing = Atomic<Bool>(false)

    init(endpoints: some Sequence<SocketAddress>, policy: OutlierPolicy) {
        state = Mutex(State(ejection: OutlierEjection(endpoints: endpoints, policy: policy)))
    }

    var changes: UInt64 { changeCount.load(ordering: .acquiring) }

    /// The endpoint set of a new table: those that stay keep their ejection and count.
    func update(endpoints: some Sequence<SocketAddress>) {
        state.withLock { state in
            state.ejection.update(endpoints: endpoints)
            state.failing = state.failing.filter { state.ejection.consecutiveFailures($0) > 0 }
            anyFailing.store(!state.failing.isEmpty, ordering: .relaxed)
            changeCount.wrappingAdd(1, ordering: .releasing)
        }
    }

    /// A connect to `endpoint` failed at `now`; answers what the ejection made of it.
    func connectFailed(_ endpoint: SocketAddress, at now: ContinuousClock.Instant) -> OutlierEjection<SocketAddress>.FailureOutcome {
        state.withLock { state in
            let outcome = state.ejection.recordConnectFailure(endpoint: endpoint, at: now)
            switch outcome {
            case .counted: state.failing.insert(endpoint)
            case .ejected:
                state.failing.remove(endpoint)
                changeCount.wrappingAdd(1, ordering: .releasing)
            case .overflow: state.failing.remove(endpoint)
            case .ignored: break
            }
            anyFailing.store(!state.failing.isEmpty, ordering: .relaxed)
            return outcome
        }
    }

    /// A connect to `endpoint` succeeded at `now`: its failures in a row start again. Lock-free
    /// while no endpoint has failures counted (the common case).
    func connectSucceeded(_ endpoint: SocketAddress, at now: ContinuousClock.Instant) {
        guard anyFailing.load(ordering: .relaxed) else { return }
        state.withLock { state in
            guard state.failing.remove(endpoint) != nil else { return }
            state.ejection.recordConnectSuccess(endpoint: endpoint, at: now)
            anyFailing.store(!state.failing.isEmpty, ordering: .relaxed)
        }
    }

    /// The endpoints ejected at `now`, with what a cache needs to know when to ask again.
    func ejected(at now: ContinuousClock.Instant) -> Ejected {
        state.withLock { state in
            let endpoints = state.ejection.ejectedEndpoints(at: now)
            // Read under the lock, so no ejection can slip between the set and its stamp.
            let changes = changeCount.load(ordering: .relaxed)
            let until = endpoints.isEmpty ? nil : endpoints.compactMap { state.ejection.ejectedUntil($0) }.min()
            return Ejected(endpoints: endpoints, changes: changes, until: until)
        }
    }
}
