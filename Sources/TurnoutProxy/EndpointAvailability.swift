import TurnoutModel

/// Which endpoints of one route a balancer may pick for one connection: the available ones,
/// or all of them when too few are available (panic), less those this connection already tried.
///
/// Built per connection from the route's endpoint count and the indices that are unhealthy
/// (``EndpointHealthSnapshot``) or ejected (``OutlierEjection``); ``exclusion(tried:)`` then gives
/// each connect attempt its `excluding:` set for ``WeightedRoundRobin`` or ``PowerOfTwoChoices``.
/// A pure value: any thread. Count ``isPanic`` when it is true: it says health is being ignored.
public struct EndpointAvailability: Sendable, Hashable {
    /// The route's endpoint count; indices are `0..<endpointCount`.
    public let endpointCount: Int
    /// The endpoints that are unhealthy or ejected (indices outside the route are dropped).
    public let unavailable: Set<Int>
    /// True when the available share is below the panic threshold: health is ignored and every
    /// endpoint may be picked.
    public let isPanic: Bool

    public init(endpointCount: Int, unavailable: Set<Int>, panicThreshold: PanicThreshold = .standard) {
        let unavailable = unavailable.filter { (0..<endpointCount).contains($0) }
        self.endpointCount = endpointCount
        self.unavailable = unavailable
        isPanic = panicThreshold.isPanic(available: endpointCount - unavailable.count, of: endpointCount)
    }

    /// Over `route`'s endpoints, asking `isUnavailable` about each (typically: unhealthy in the
    /// latest snapshot, or ejected now).
    public init(route: ServiceRoute, panicThreshold: PanicThreshold = .standard, isUnavailable: (RouteEndpoint) -> Bool) {
        self.init(endpointCount: route.endpoints.count,
                  unavailable: Set(route.endpoints.filter(isUnavailable).map(\.index)),
                  panicThreshold: panicThreshold)
    }

    /// What health alone excludes: the unavailable endpoints, or none in panic.
    public var healthExclusion: Set<Int> { isPanic ? [] : unavailable }

    /// The `excluding:` set for a connect attempt, `tried` being the endpoints this connection
    /// already failed to connect to: health's exclusion and those. When that excludes every
    /// endpoint, the balancer picks none and the connection gives up rather than go back to an
    /// endpoint that just refused it or one marked down (in panic, every endpoint is tried once).
    public func exclusion(tried: Set<Int> = []) -> Set<Int> {
        healthExclusion.union(tried.filter { (0..<endpointCount).contains($0) })
    }
}
