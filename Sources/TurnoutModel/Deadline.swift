extension ContinuousClock.Instant {
    /// Milliseconds from now until this instant, rounded up, for `poll(2)`'s timeout; 0 once it
    /// has passed. Rounding up keeps a poll from waking just before the deadline and spinning.
    public var pollMilliseconds: Int32 {
        let remaining = ContinuousClock.now.duration(to: self)
        guard remaining > .zero else { return 0 }
        let (seconds, attoseconds) = remaining.components
        return Int32(clamping: seconds * 1_000 + attoseconds / 1_000_000_000_000_000 + 1)
    }
}
