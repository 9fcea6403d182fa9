/// Smooth weighted round robin (nginx's algorithm): a deterministic pick that spreads each
/// endpoint's turns evenly (9:1 gives `a a a a b a a a a a`, not nine `a` in a row).
///
/// Each pick adds every candidate's weight to its running score, takes the highest (the lowest
/// index on a tie) and subtracts the candidates' total weight from the winner. With no exclusion
/// the sequence repeats every `Σweights` picks, and any `Σweights` consecutive picks give each
/// endpoint exactly its weight. Excluded endpoints sit the round out with their score untouched,
/// as nginx treats a peer that is down or already tried: the others share their turns, and once
/// nothing is excluded the shares converge back to the weights (scores stay bounded), but exact
/// windows are promised only for picks without exclusions from a fresh balancer.
///
/// A value type owned by one worker (one per ``ServiceRoute`` it serves); not shared, so no lock.
/// Build a new one when the route table is swapped.
public struct WeightedRoundRobin: Sendable, Hashable {
    /// The endpoints' weights by index; an endpoint of weight 0 is never picked.
    public let weights: [UInt32]
    private var scores: [Int64]

    public init(weights: [UInt32]) {
        self.weights = weights
        scores = Array(repeating: 0, count: weights.count)
    }

    /// Over the route's endpoints, in their order.
    public init(route: ServiceRoute) {
        self.init(weights: route.weights)
    }

    /// The index of the next endpoint, skipping those in `excluding` (ejected, unhealthy, or
    /// already tried for this connection); nil when no endpoint with a weight above 0 is left.
    public mutating func pick(excluding excluded: Set<Int> = []) -> Int? {
        var total: Int64 = 0
        var best: Int?
        for index in weights.indices where weights[index] > 0 && !excluded.contains(index) {
            let weight = Int64(weights[index])
            scores[index] += weight
            total += weight
            if best.map({ scores[index] > scores[$0] }) ?? true { best = index }
        }
        guard let best else { return nil }
        scores[best] -= total
        return best
    }
}
