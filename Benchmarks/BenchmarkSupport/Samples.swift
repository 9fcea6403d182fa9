/// Wall-clock samples of one measured step, reported as median and minimum.
///
/// The median is the headline (robust to one run hitting a page-fault storm or a noisy
/// neighbour); the minimum shows the floor the code can reach on this machine.
public struct Samples: Sendable {
    public private(set) var durations: [Duration] = []

    public init() {}

    public var isEmpty: Bool { durations.isEmpty }

    public mutating func append(_ duration: Duration) { durations.append(duration) }

    public var medianMilliseconds: Double {
        precondition(!durations.isEmpty, "no samples")
        let sorted = durations.map(Samples.milliseconds).sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    public var minimumMilliseconds: Double {
        precondition(!durations.isEmpty, "no samples")
        return durations.map(Samples.milliseconds).min()!
    }

    public static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1_000 + Double(attoseconds) / 1e15
    }
}

/// Times `body` once with the monotonic clock, returning its result and how long it took.
@inline(never)
public func timed<Result>(_ body: () throws -> Result) rethrows -> (Result, Duration) {
    let clock = ContinuousClock()
    let start = clock.now
    let result = try body()
    return (result, clock.now - start)
}
