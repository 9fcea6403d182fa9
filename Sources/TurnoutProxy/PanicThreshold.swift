import TurnoutModel

/// The share of a service's endpoints that must be available for health to count: below it, the
/// proxy ignores health and spreads connections over every endpoint (Envoy's panic mode).
///
/// Why: when most endpoints are marked down, the few left would take the whole load and fall
/// over too, and a mark can be wrong (a partition between the proxy and the endpoints' network,
/// a checker starved of descriptors). Trying every endpoint keeps the service partly up; connect
/// retry still steps past the ones that refuse.
///
/// The default 50% is Envoy's `healthy_panic_threshold` default, compared as Envoy does for one
/// priority level: panic when the available share is strictly below it (half of four endpoints
/// available is not panic). 0 disables panic: with every endpoint unavailable, nothing is picked
/// and connections are rejected. Validated (0...100) when made; throws a ``ValueError``.
public struct PanicThreshold: Sendable, Hashable {
    /// The threshold, in percent of the route's endpoints.
    public let percent: Int

    /// 50%, Envoy's default.
    public static let standard = PanicThreshold(validated: 50)

    public init(percent: Int) throws(ValueError) {
        guard (0...100).contains(percent) else { throw ValueError("panic threshold must be 0...100 percent, got \(percent)") }
        self.init(validated: percent)
    }

    private init(validated percent: Int) {
        self.percent = percent
    }

    /// Whether `available` endpoints out of `total` is below the threshold; never for a route
    /// with no endpoint (there is nothing to spread over).
    public func isPanic(available: Int, of total: Int) -> Bool {
        total > 0 && available * 100 < percent * total
    }
}
