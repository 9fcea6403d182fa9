extension Double {
    /// The value with `fractionDigits` digits after the point, rounded half away from zero:
    /// `12.345.decimalText(fractionDigits: 1)` is "12.3", as C's `"%.1f"` would print it for
    /// the durations and ratios turnout reports (`String(format:)` is full Foundation's, which
    /// the product does not link). Not finite or beyond 2^63 units: Swift's own description.
    public func decimalText(fractionDigits: Int) -> String {
        precondition((0...18).contains(fractionDigits), "between 0 and 18 fraction digits")
        var scale: UInt64 = 1
        for _ in 0..<fractionDigits { scale *= 10 }
        let scaled = (magnitude * Double(scale)).rounded()
        guard isFinite, scaled < 9.2e18 else { return "\(self)" }
        let units = UInt64(scaled)
        let sign = self < 0 && units != 0 ? "-" : ""
        guard fractionDigits > 0 else { return "\(sign)\(units)" }
        let fraction = String(units % scale)
        return "\(sign)\(units / scale)." + String(repeating: "0", count: fractionDigits - fraction.count) + fraction
    }
}
