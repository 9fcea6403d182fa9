/// One worker's balancer for one route: the configured algorithm behind one interface.
///
/// Owned by a worker (one per ``ServiceRoute`` of the snapshot it serves), rebuilt when the
/// snapshot changes; never shared, so no lock. A class so that the balancers' arrays are
/// mutated in place on every pick, never copied.
final class EndpointPicker {
    private var weighted: WeightedRoundRobin?
    private var p2c: PowerOfTwoChoices<SplitMix64>?

    init(_ route: ServiceRoute, balancer: ProxyConfiguration.Balancer, seed: UInt64) {
        switch balancer {
        case .weighted: weighted = WeightedRoundRobin(route: route)
        case .p2cEWMA: p2c = PowerOfTwoChoices(weights: route.weights, seed: seed)
        }
    }

    /// The next endpoint index not in `excluded`; nil when none is left.
    func pick(excluding excluded: Set<Int>, at now: ContinuousClock.Instant) -> Int? {
        if weighted != nil { return weighted!.pick(excluding: excluded) }
        return p2c!.pick(excluding: excluded, at: now)
    }

    /// A connect to `index` succeeded after `latency`: it is now in flight.
    func connected(_ index: Int, after latency: Duration, at now: ContinuousClock.Instant) {
        guard p2c != nil else { return }
        p2c!.recordConnectLatency(latency, of: index, at: now)
        p2c!.connectionOpened(index)
    }

    /// A connect to `index` failed: it counts as `penalty` slow (the connect timeout, the worst
    /// latency there is), whatever the failure took. A refusal takes microseconds; recorded as
    /// such it would make a dead endpoint look like the fastest and draw traffic to it.
    func failed(_ index: Int, penalty: Duration, at now: ContinuousClock.Instant) {
        p2c?.recordConnectLatency(penalty, of: index, at: now)
    }

    /// A connection to `index` that `connected` counted has closed.
    func closed(_ index: Int) {
        p2c?.connectionClosed(index)
    }
}
