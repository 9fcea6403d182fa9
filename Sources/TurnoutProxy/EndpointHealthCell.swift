import Synchronization

/// Where the ``HealthChecker`` publishes its latest ``EndpointHealthSnapshot`` for the workers.
///
/// Sendable: `publish` swaps the snapshot under a lock and then bumps the round atomically;
/// a worker compares the round with one atomic load per accept and takes the lock only when a
/// new round came. Before the first round (or with active checks off) every endpoint is healthy.
final class EndpointHealthCell: Sendable {
    private let current = Mutex(EndpointHealthSnapshot.empty)
    private let publishedRound = Atomic<UInt64>(0)

    var snapshot: EndpointHealthSnapshot { current.withLock { $0 } }

    /// The round of the latest snapshot (0 before the first).
    var round: UInt64 { publishedRound.load(ordering: .acquiring) }

    func publish(_ snapshot: EndpointHealthSnapshot) {
        current.withLock { $0 = snapshot }
        publishedRound.store(snapshot.round, ordering: .releasing)
    }
}
