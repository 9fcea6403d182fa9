#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import TurnoutProxy

/// The balancers, one nested suite each (so `--filter Balancer` selects them all).
@Suite("Balancers")
enum BalancerTests {}

/// Smooth weighted round robin: exact shares, spread out, with exclusions.
extension BalancerTests {
    @Suite("smooth weighted round robin")
    struct RoundRobinTests {
        static let weightVectors: [[UInt32]] = [[1], [1, 1], [9, 1], [90, 10], [1, 2, 3], [5, 1, 1], [7, 11, 13], [100, 1], [3, 0, 2], [1, 1, 1, 1, 1]]

        @Test("weights w₁:…:wₙ → each endpoint exactly wᵢ times in every window of Σw consecutive picks", arguments: weightVectors)
        func exactInEveryWindow(_ weights: [UInt32]) {
            var balancer = WeightedRoundRobin(weights: weights)
            let window = Int(weights.reduce(0, +))
            let picks = (0..<(3 * window)).map { _ in balancer.pick()! }
            for start in 0...(picks.count - window) {
                var counts = Array(repeating: UInt32(0), count: weights.count)
                for index in picks[start..<(start + window)] { counts[index] += 1 }
                #expect(counts == weights, "window starting at pick \(start)")
            }
        }

        @Test("weights 9:1 → exactly 9 and 1 in every window of 10, the 1 in the middle, not bunched")
        func nineToOne() {
            var balancer = WeightedRoundRobin(weights: [9, 1])
            #expect((0..<10).map { _ in balancer.pick()! } == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        }

        @Test("weights 5:1:1 → nginx's sequence a a b a c a a")
        func nginxExample() {
            var balancer = WeightedRoundRobin(weights: [5, 1, 1])
            #expect((0..<14).map { _ in balancer.pick()! } == [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0])
        }

        @Test("weights 1:1:1 excluding 1 → 0 and 2 alternate, 1 never")
        func excluding() {
            var balancer = WeightedRoundRobin(weights: [1, 1, 1])
            #expect((0..<6).map { _ in balancer.pick(excluding: [1])! } == [0, 2, 0, 2, 0, 2])
        }

        @Test("weights 2:1, 10 picks excluding 0, then 3,000 without → 2,000 and 1,000 within ±2")
        func convergesAfterExclusion() {
            var balancer = WeightedRoundRobin(weights: [2, 1])
            #expect((0..<10).allSatisfy { _ in balancer.pick(excluding: [0]) == 1 })
            var counts = [0, 0]
            for _ in 0..<3_000 { counts[balancer.pick()!] += 1 }
            #expect(abs(counts[0] - 2_000) <= 2 && abs(counts[1] - 1_000) <= 2, "\(counts)")
        }

        @Test("every endpoint excluded, or only weight 0 left, or none at all → nil")
        func nothingLeft() {
            var balancer = WeightedRoundRobin(weights: [1, 2, 0])
            #expect(balancer.pick(excluding: [0, 1]) == nil)
            #expect(balancer.pick(excluding: [0, 1, 2]) == nil)
            var drained = WeightedRoundRobin(weights: [0, 0])
            #expect(drained.pick() == nil)
            var empty = WeightedRoundRobin(weights: [])
            #expect(empty.pick() == nil)
        }

        @Test("weights 0:5:0 → always 1; out-of-range exclusions are ignored")
        func zeroWeightsNeverPicked() {
            var balancer = WeightedRoundRobin(weights: [0, 5, 0])
            #expect((0..<20).allSatisfy { _ in balancer.pick(excluding: [7, -1]) == 1 })
        }
    }
}

/// Peak EWMA: peaks at once, decays with τ, times given explicitly.
extension BalancerTests {
    @Suite("peak EWMA of connect latency")
    struct PeakEWMATests {
        let start = ContinuousClock.now

        @Test("no sample → no estimate")
        func noSample() {
            #expect(PeakEWMA().estimate(at: start) == nil)
            #expect(PeakEWMA().decay == .seconds(10))
        }

        @Test("10 ms then 30 ms one second later → 30 ms at once (peak)")
        func peak() throws {
            var ewma = PeakEWMA()
            ewma.observe(.milliseconds(10), at: start)
            #expect(try #require(ewma.estimate(at: start)) == 10e6)
            ewma.observe(.milliseconds(30), at: start + .seconds(1))
            #expect(try #require(ewma.estimate(at: start + .seconds(1))) == 30e6)
        }

        @Test("30 ms then 10 ms five seconds later, τ 10 s → 30·e^−½ + 10·(1 − e^−½) ms")
        func decayTowardLowerSample() throws {
            var ewma = PeakEWMA()
            ewma.observe(.milliseconds(30), at: start)
            ewma.observe(.milliseconds(10), at: start + .seconds(5))
            let expected = 30e6 * exp(-0.5) + 10e6 * (1 - exp(-0.5))
            #expect(close(try #require(ewma.estimate(at: start + .seconds(5))), expected))
        }

        @Test("20 ms, read after τ → 20/e ms; after τ·ln 20 → 1 ms; reading changes nothing")
        func idleDecay() throws {
            var ewma = PeakEWMA()
            ewma.observe(.milliseconds(20), at: start)
            let before = ewma
            #expect(close(try #require(ewma.estimate(at: start + .seconds(10))), 20e6 / M_E))
            #expect(close(try #require(ewma.estimate(at: start + .nanoseconds(Int64(10e9 * log(20.0))))), 1e6))
            #expect(ewma == before)
        }

        @Test("τ 1 s: 40 ms, then 10 ms after 1 s → 10 + 30/e ms")
        func customDecay() throws {
            var ewma = PeakEWMA(decay: .seconds(1))
            ewma.observe(.milliseconds(40), at: start)
            ewma.observe(.milliseconds(10), at: start + .seconds(1))
            #expect(close(try #require(ewma.estimate(at: start + .seconds(1))), 10e6 + 30e6 / M_E))
        }

        @Test("a sample or read at an earlier time → no decay (time never runs backwards)")
        func timeBackwards() throws {
            var ewma = PeakEWMA()
            ewma.observe(.milliseconds(20), at: start + .seconds(5))
            #expect(try #require(ewma.estimate(at: start)) == 20e6)
            ewma.observe(.milliseconds(5), at: start)
            #expect(try #require(ewma.estimate(at: start)) == 20e6, "zero time passed: the old average keeps all its weight")
            #expect(close(try #require(ewma.estimate(at: start + .seconds(15))), 20e6 / M_E), "decay still counts from the latest time, +5 s")
        }

        private func close(_ value: Double, _ expected: Double) -> Bool {
            abs(value - expected) <= expected * 1e-9
        }
    }
}

/// Power of two choices over peak EWMA × in-flight, driven by a deterministic simulation.
extension BalancerTests {
    @Suite("power of two choices")
    struct PowerOfTwoChoicesTests {
        /// Slow endpoint 0 (20 ms) against fast endpoint 1 (1 ms), equal weights; one pick per
        /// simulated millisecond, each connection held 100 picks, so at most 99 others are in flight.
        ///
        /// Why at most 13% is safe: all of endpoint 0's samples are 20 ms, so its average stays
        /// 20 ms and a read within the run's 10 s gives at least 20·e⁻¹ ≈ 7.36 ms; endpoint 1 reads
        /// at most 1 ms. Once sampled, 0 wins only if 7.36·(s+1) < 1·(f+1) with s+f ≤ 99, i.e. s ≤ 11;
        /// before its first sample it wins only by load, and that pick gives it the sample. So at
        /// most 12 of its connections are open at once, which is at most 12 picks in any 100.
        @Test("latency 20 ms vs 1 ms, weights 1:1, 10,000 picks → the slow endpoint gets at most 13%")
        func slowEndpointAvoided() {
            var simulation = Simulation(weights: [1, 1], latencies: [.milliseconds(20), .milliseconds(1)], seed: 1)
            let counts = simulation.run(picks: 10_000)
            #expect(counts[0] * 100 <= 10_000 * 13, "\(counts)")
            #expect(counts[0] > 0, "the slow endpoint is still tried: \(counts)")
        }

        @Test("equal latency, weights → shares within ±5% of the weights (fixed seed)",
              arguments: [[3, 1], [1, 2, 3], [1, 1, 1, 1], [9, 1]] as [[UInt32]])
        func weightsRespected(_ weights: [UInt32]) {
            var simulation = Simulation(weights: weights, latencies: weights.map { _ in .milliseconds(1) }, seed: 42)
            let picks = 10_000
            let counts = simulation.run(picks: picks)
            let total = Double(weights.reduce(0, +))
            for (index, weight) in weights.enumerated() {
                let expected = Double(picks) * Double(weight) / total
                #expect(abs(Double(counts[index]) - expected) <= expected * 0.05, "endpoint \(index): \(counts)")
            }
        }

        @Test("weights 1:2:3:4 excluding 1 and 3 → only 0 and 2, about 1:3")
        func excluding() {
            var simulation = Simulation(weights: [1, 2, 3, 4], latencies: Array(repeating: .milliseconds(1), count: 4), seed: 7)
            let counts = simulation.run(picks: 4_000, excluding: [1, 3])
            #expect(counts[1] == 0 && counts[3] == 0, "\(counts)")
            #expect(abs(counts[2] - 3_000) <= 150 && abs(counts[0] - 1_000) <= 50, "\(counts)")
        }

        @Test("all excluded, only weight 0 left, or no endpoints → nil; one left → that one")
        func nothingOrOneLeft() {
            let now = ContinuousClock.now
            var balancer = PowerOfTwoChoices(weights: [1, 1, 0], seed: 3)
            #expect(balancer.pick(excluding: [0, 1], at: now) == nil)
            #expect(balancer.pick(excluding: [0, 1, 2], at: now) == nil)
            #expect((0..<50).allSatisfy { _ in balancer.pick(excluding: [0, 9], at: now) == 1 })
            var empty = PowerOfTwoChoices(weights: [], seed: 3)
            #expect(empty.pick(at: now) == nil)
        }

        @Test("weights 0:1:1 over 1,000 picks → endpoint 0 never")
        func zeroWeightNeverPicked() {
            var simulation = Simulation(weights: [0, 1, 1], latencies: Array(repeating: .milliseconds(1), count: 3), seed: 5)
            #expect(simulation.run(picks: 1_000)[0] == 0)
        }

        @Test("a new endpoint (no sample) beside one with 10 in flight → the next 10 picks go to it, then load evens out")
        func newEndpointTried() {
            let now = ContinuousClock.now
            var balancer = PowerOfTwoChoices(weights: [1, 1], seed: 11)
            balancer.recordConnectLatency(.milliseconds(1), of: 0, at: now)
            for _ in 0..<10 { balancer.connectionOpened(0) }
            var picks: [Int] = []
            for _ in 0..<30 {
                let index = balancer.pick(at: now)!
                balancer.connectionOpened(index)
                picks.append(index)
            }
            #expect(picks.prefix(10).allSatisfy { $0 == 1 }, "\(picks)")
            #expect(abs(balancer.inFlight[0] - balancer.inFlight[1]) <= 1, "\(balancer.inFlight)")
        }

        @Test("same seed and calls → same picks")
        func deterministic() {
            var first = Simulation(weights: [5, 3, 2], latencies: [.milliseconds(1), .milliseconds(4), .milliseconds(2)], seed: 99)
            var second = first
            #expect(first.run(picks: 2_000) == second.run(picks: 2_000))
        }
    }
}

/// One connection per simulated millisecond: close the connections opened `holding` picks ago,
/// pick, open, and record the endpoint's fixed connect latency at once.
struct Simulation {
    var balancer: PowerOfTwoChoices<SplitMix64>
    let latencies: [Duration]
    let holding: Int
    let start = ContinuousClock.now

    init(weights: [UInt32], latencies: [Duration], holding: Int = 100, seed: UInt64) {
        balancer = PowerOfTwoChoices(weights: weights, seed: seed)
        self.latencies = latencies
        self.holding = holding
    }

    /// Picks per endpoint.
    mutating func run(picks: Int, excluding excluded: Set<Int> = []) -> [Int] {
        var counts = Array(repeating: 0, count: latencies.count)
        var open: [Int] = []
        for step in 0..<picks {
            let now = start + .milliseconds(step)
            if open.count == holding { balancer.connectionClosed(open.removeFirst()) }
            guard let index = balancer.pick(excluding: excluded, at: now) else { break }
            balancer.connectionOpened(index)
            balancer.recordConnectLatency(latencies[index], of: index, at: now)
            open.append(index)
            counts[index] += 1
        }
        return counts
    }
}
