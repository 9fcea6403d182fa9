#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A peak-sensitive moving average of one endpoint's connect latency (Finagle's and Linkerd's
/// peak EWMA), with time passed in so that it is deterministic.
///
/// A sample above the current average replaces it at once (a slowdown is believed immediately);
/// a sample at or below it is blended in with weight `1 − e^(−Δt/τ)`, Δt being the time since the
/// previous sample, so recoveries are believed gradually. Reading with ``estimate(at:)`` also
/// decays the average toward 0 with the same τ for the time since the last sample: an endpoint
/// that stopped being picked because it was slow looks cheaper as time passes and gets tried
/// again. Unlike Finagle, the read does not store that decay, so how often something reads the
/// estimate (the balancer, `/stats`) does not change it.
///
/// Until the first sample there is no estimate (nil): ``PowerOfTwoChoices`` then treats the
/// endpoint as neutral, as fast as the endpoint it is compared with, so a new endpoint is tried.
///
/// A value type owned by one worker; the worker records a sample when a connect it started
/// completes. Time going backwards counts as no time passing; a sample at the same instant as
/// the previous one changes the average only if it is above it (a peak).
public struct PeakEWMA: Sendable, Hashable {
    /// τ used unless told otherwise: 10 s, as Finagle and Linkerd.
    public static let defaultDecay: Duration = .seconds(10)

    /// The time constant τ: after τ without a sample, a read gives `1/e` of the average.
    public let decay: Duration
    private let decayNanoseconds: Double
    /// The average in nanoseconds as of ``lastSample``.
    private var average: Double = 0
    /// The latest time given to a sample; nil before the first.
    public private(set) var lastSample: ContinuousClock.Instant?

    public init(decay: Duration = PeakEWMA.defaultDecay) {
        precondition(decay > .zero, "the decay time constant must be positive")
        self.decay = decay
        decayNanoseconds = decay.nanoseconds
    }

    /// Records one connect latency measured at `now`.
    public mutating func observe(_ latency: Duration, at now: ContinuousClock.Instant) {
        let sample = max(latency.nanoseconds, 0)
        if let lastSample, sample <= average {
            let weight = retained(since: lastSample, at: now)
            average = average * weight + sample * (1 - weight)
        } else {
            average = sample
        }
        lastSample = max(now, lastSample ?? now)
    }

    /// The estimate in nanoseconds at `now`: the average decayed toward 0 for the time since the
    /// last sample; nil before the first sample.
    public func estimate(at now: ContinuousClock.Instant) -> Double? {
        guard let lastSample else { return nil }
        return average * retained(since: lastSample, at: now)
    }

    /// `e^(−Δt/τ)`: the share of the old average that survives Δt.
    private func retained(since then: ContinuousClock.Instant, at now: ContinuousClock.Instant) -> Double {
        let elapsed = max(then.duration(to: now).nanoseconds, 0)
        return exp(-elapsed / decayNanoseconds)
    }
}

extension Duration {
    /// The duration in nanoseconds, as a `Double`.
    fileprivate var nanoseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }
}
