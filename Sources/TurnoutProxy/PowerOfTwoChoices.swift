/// Power of two choices over peak-EWMA connect latency × in-flight connections (Finagle's and
/// Linkerd's `p2c` + `peakEwma`), with endpoint weights respected.
///
/// Each pick draws two distinct candidates at random, each with probability proportional to its
/// weight, and takes the one with the lower cost `latency × (inFlight + 1) / weight` (the first
/// drawn on a tie). `latency` is the endpoint's ``PeakEWMA`` estimate at the pick's time; an
/// endpoint with no sample yet is taken to be as fast as the other candidate (and two such
/// endpoints compare by load alone), so a new endpoint is tried without being flooded. With
/// equal latencies the cost keeps in-flight connections proportional to the weights, so traffic
/// follows the weights; a slow endpoint keeps proportionally fewer, and as its estimate decays
/// while it is not picked, it is tried again.
///
/// A value type owned by one worker (one per ``ServiceRoute`` it serves); not shared, so no
/// lock, and it only knows that worker's connections. The worker must report, for the index it
/// picked: ``connectionOpened(_:)`` when it starts connecting, ``recordConnectLatency(_:of:at:)``
/// when the connect succeeds, and ``connectionClosed(_:)`` exactly once when that connection
/// (or the failed attempt) ends. Do not record a failed connect's time as a latency: a refused
/// connect is fast and would attract traffic; failures are for outlier ejection (`excluding:`).
/// Build a new one when the route table is swapped.
public struct PowerOfTwoChoices<Random: RandomNumberGenerator> {
    /// The endpoints' weights by index; an endpoint of weight 0 is never picked.
    public let weights: [UInt32]
    /// Connect latency per endpoint.
    public private(set) var latencies: [PeakEWMA]
    /// Connections opened to each endpoint and not yet closed.
    public private(set) var inFlight: [Int]
    /// `cumulative[i]` = Σ weights[0...i]: endpoint i owns the draws `cumulative[i] − weights[i] ..< cumulative[i]`.
    private let cumulative: [UInt64]
    private var random: Random

    public init(weights: [UInt32], decay: Duration = PeakEWMA.defaultDecay, random: Random) {
        self.weights = weights
        latencies = Array(repeating: PeakEWMA(decay: decay), count: weights.count)
        inFlight = Array(repeating: 0, count: weights.count)
        var sum: UInt64 = 0
        cumulative = weights.map { weight in
            sum += UInt64(weight)
            return sum
        }
        self.random = random
    }

    /// Over the route's endpoints, in their order.
    public init(route: ServiceRoute, decay: Duration = PeakEWMA.defaultDecay, random: Random) {
        self.init(weights: route.weights, decay: decay, random: random)
    }

    /// The index of the endpoint for a new connection at `now`, skipping those in `excluding`
    /// (ejected, unhealthy, or already tried for this connection); nil when no endpoint with a
    /// weight above 0 is left. With one left, that one.
    public mutating func pick(excluding excluded: Set<Int> = [], at now: ContinuousClock.Instant) -> Int? {
        var skipped = excluded.isEmpty ? [] : excluded.filter { weights.indices.contains($0) && weights[$0] > 0 }.sorted()
        let available = (cumulative.last ?? 0) - skipped.reduce(0) { $0 + UInt64(weights[$1]) }
        guard available > 0 else { return nil }
        let first = draw(below: available, skipping: skipped)
        let remaining = available - UInt64(weights[first])
        guard remaining > 0 else { return first }
        skipped.insert(first, at: skipped.firstIndex { $0 > first } ?? skipped.endIndex)
        let second = draw(below: remaining, skipping: skipped)

        let firstLatency = latencies[first].estimate(at: now)
        let secondLatency = latencies[second].estimate(at: now)
        let firstCost = cost(first, latency: firstLatency ?? secondLatency)
        let secondCost = cost(second, latency: secondLatency ?? firstLatency)
        return secondCost < firstCost ? second : first
    }

    /// The worker started connecting to `index`.
    public mutating func connectionOpened(_ index: Int) {
        inFlight[index] += 1
    }

    /// A connection (or connect attempt) to `index` that was reported opened has ended.
    public mutating func connectionClosed(_ index: Int) {
        assert(inFlight[index] > 0, "connectionClosed(\(index)) without connectionOpened")
        inFlight[index] = max(inFlight[index] - 1, 0)
    }

    /// A connect to `index` completed after `latency`, at `now`.
    public mutating func recordConnectLatency(_ latency: Duration, of index: Int, at now: ContinuousClock.Instant) {
        latencies[index].observe(latency, at: now)
    }

    /// `latency × (inFlight + 1) / weight`, the latency floored at 1 ns so that load still counts
    /// when estimates have decayed to nothing; nil latency (neither candidate sampled) is neutral.
    private func cost(_ index: Int, latency: Double?) -> Double {
        max(latency ?? 1, 1) * Double(inFlight[index] + 1) / Double(weights[index])
    }

    /// An index drawn with probability weight / `bound`, among the endpoints not in `skipped`
    /// (ascending); `bound` is the sum of their weights.
    private mutating func draw(below bound: UInt64, skipping skipped: [Int]) -> Int {
        var value = random.next(upperBound: bound)
        // Step over each skipped endpoint's range that starts at or before the value.
        for index in skipped {
            let weight = UInt64(weights[index])
            guard value >= cumulative[index] - weight else { break }
            value += weight
        }
        // The first endpoint whose range ends after the value; weight-0 ranges are empty.
        var low = 0, high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] > value { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

extension PowerOfTwoChoices: Sendable where Random: Sendable {}

extension PowerOfTwoChoices where Random == SplitMix64 {
    /// With a ``SplitMix64`` seeded by `seed`: the same seed and calls give the same picks.
    public init(weights: [UInt32], decay: Duration = PeakEWMA.defaultDecay, seed: UInt64) {
        self.init(weights: weights, decay: decay, random: SplitMix64(seed: seed))
    }
}
