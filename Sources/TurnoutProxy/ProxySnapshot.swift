import Synchronization
import TurnoutModel

/// The proxy's routing state at one moment: the table, its ``RouteTable``, and the per-service
/// state shared by all workers: the load (for the circuit breaker) and the outlier ejection.
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
    /// By ``ServiceRoute/id``.
    let outliers: [ServiceOutliers]

    /// Builds the snapshot; `previous` lends its ``ServiceLoad`` and ``ServiceOutliers`` objects
    /// to routes of the same label, so connections opened before a reload still count against
    /// the service's limit and an ejected endpoint stays ejected.
    public init(table: ServiceTable, generation: UInt64, outlierPolicy: OutlierPolicy = .standard, previous: ProxySnapshot? = nil) {
        self.table = table
        routes = RouteTable(table)
        self.generation = generation
        // One of each per service port (its label), shared by the IPv4 and IPv6 routes of it:
        // the limit and the ejected share are per service port, whatever the family.
        var loads: [String: ServiceLoad] = [:]
        var outliersByLabel: [String: ServiceOutliers] = [:]
        if let previous {
            for route in previous.routes.routes {
                loads[route.label] = previous.load[route.id]
                outliersByLabel[route.label] = previous.outliers[route.id]
            }
        }
        var endpointsByLabel: [String: [SocketAddress]] = [:]
        for route in routes.routes { endpointsByLabel[route.label, default: []] += route.endpoints.map(\.address) }
        var updated = Set<String>()
        load = routes.routes.map { route in
            if let shared = loads[route.label] { return shared }
            let made = ServiceLoad()
            loads[route.label] = made
            return made
        }
        outliers = routes.routes.map { route in
            let endpoints = endpointsByLabel[route.label] ?? []
            if let shared = outliersByLabel[route.label] {
                if updated.insert(route.label).inserted { shared.update(endpoints: endpoints) }
                return shared
            }
            let made = ServiceOutliers(endpoints: endpoints, policy: outlierPolicy)
            outliersByLabel[route.label] = made
            updated.insert(route.label)
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
