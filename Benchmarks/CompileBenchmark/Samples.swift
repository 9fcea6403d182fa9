/// Wall-clock samples of one measured step, reported as median and minimum.
///
/// The median is the headline (robust to one run hitting a page-fault storm or a noisy
/// neighbour); the minimum shows the floor the code can reach on this machine.
struct Samples {
    private(set) var durations: [Duration] = []

    var isEmpty: Bool { durations.isEmpty }

    mutating func append(_ duration: Duration) { durations.append(duration) }

    var medianMilliseconds: Double {
        precondition(!durations.isEmpty, "no samples")
        let sorted = durations.map(Samples.milliseconds).sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    var minimumMilliseconds: Double {
        precondition(!durations.isEmpty, "no samples")
        return durations.map(Samples.milliseconds).min()!
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1_000 + Double(attoseconds) / 1e15
    }
}

/// Times `body` once with the monotonic clock, returning its result and how long it took.
@inline(never)
func timed<Result>(_ body: () throws -> Result) rethrows -> (Result, Duration) {
    let clock = ContinuousClock()
    let start = clock.now
    let result = try body()
    return (result, clock.now - start)
}
