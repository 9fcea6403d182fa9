import Synchronization
import TurnoutModel

/// The proxy's routing state at one moment: the table, its ``RouteTable``, and the per-service
/// load shared by all workers (for the circuit breaker).
///
/// Immutable and `Sendable`: the control side builds one per accepted table and publishes it
/// in a ``SnapshotCell``; each worker picks it up before its next accept. A relay keeps the
/// snapshot it started with, so an established connection keeps its endpoint across reloads.
public final class ProxySnapshot: Sendable {
    public let table: ServiceTable
    public let routes: RouteTable
    /// 1 for the first table, +1 per accepted reload.
    public let generation: UInt64
    /// By ``ServiceRoute/id``.
    let load: [ServiceLoad]

    /// Builds the snapshot; `previous` lends its ``ServiceLoad`` objects to routes of the same
    /// label, so connections opened before a reload still count against the service's limit.
    public init(table: ServiceTable, generation: UInt64, previous: ProxySnapshot? = nil) {
        self.table = table
        routes = RouteTable(table)
        self.generation = generation
        // One load per service port (its label), shared by the IPv4 and IPv6 routes of it: the
        // limit is per service port, whatever the family.
        var byLabel: [String: ServiceLoad] = [:]
        if let previous { for route in previous.routes.routes { byLabel[route.label] = previous.load[route.id] } }
        load = routes.routes.map { route in
            if let shared = byLabel[route.label] { return shared }
            let made = ServiceLoad()
            byLabel[route.label] = made
            return made
        }
    }
}

/// Open connections of one service port across all workers: what the circuit breaker limits.
final class ServiceLoad: Sendable {
    private let open = Atomic<Int>(0)

    /// Takes a slot unless `limit` are taken; the caller must `release()` a taken slot once.
    func acquire(limit: Int) -> Bool {
        if open.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        open.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    func release() { open.wrappingSubtract(1, ordering: .relaxed) }

    var current: Int { open.load(ordering: .relaxed) }
}

/// Where the current ``ProxySnapshot`` is published for the workers.
///
/// `publish` swaps it under a lock; workers check the generation with one atomic load per
/// accept and take the lock only when it moved.
public final class SnapshotCell: Sendable {
    private let current: Mutex<ProxySnapshot>
    private let published: Atomic<UInt64>

    public init(_ snapshot: ProxySnapshot) {
        current = Mutex(snapshot)
        published = Atomic(snapshot.generation)
    }

    public var snapshot: ProxySnapshot { current.withLock { $0 } }

    public func publish(_ snapshot: ProxySnapshot) {
        current.withLock { $0 = snapshot }
        published.store(snapshot.generation, ordering: .releasing)
    }

    /// The snapshot, if its generation is not `known` any more.
    func newer(than known: UInt64) -> ProxySnapshot? {
        guard published.load(ordering: .acquiring) != known else { return nil }
        return current.withLock { $0 }
    }
}
