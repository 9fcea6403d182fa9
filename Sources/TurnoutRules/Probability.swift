/// An exact probability as a reduced fraction, so traces report 1/6 and not 0.16666666666666666.
///
/// Sums and products reduce by the gcd at every step; the denominators that occur (weight sums,
/// numgen moduli and their products along one path) stay far below overflow.
public struct Probability: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let numerator: UInt64
    public let denominator: UInt64

    public static let zero = Probability(0, 1)
    public static let one = Probability(1, 1)

    public init(_ numerator: UInt64, _ denominator: UInt64) {
        precondition(denominator > 0 && numerator <= denominator, "a probability lies in [0, 1]")
        let divisor = Probability.gcd(numerator, denominator)
        self.numerator = numerator / divisor
        self.denominator = denominator / divisor
    }

    public var complement: Probability { Probability(denominator - numerator, denominator) }
    public var doubleValue: Double { Double(numerator) / Double(denominator) }

    public static func * (lhs: Probability, rhs: Probability) -> Probability {
        // Cross-reduce first so intermediate products stay small.
        let a = gcd(lhs.numerator, rhs.denominator), b = gcd(rhs.numerator, lhs.denominator)
        return Probability((lhs.numerator / a) * (rhs.numerator / b), (lhs.denominator / b) * (rhs.denominator / a))
    }

    public static func + (lhs: Probability, rhs: Probability) -> Probability {
        let divisor = gcd(lhs.denominator, rhs.denominator)
        let denominator = lhs.denominator / divisor * rhs.denominator
        return Probability(lhs.numerator * (denominator / lhs.denominator) + rhs.numerator * (denominator / rhs.denominator), denominator)
    }

    public static func < (lhs: Probability, rhs: Probability) -> Bool {
        lhs.numerator.multipliedFullWidth(by: rhs.denominator) < rhs.numerator.multipliedFullWidth(by: lhs.denominator)
    }

    public var description: String { denominator == 1 ? "\(numerator)" : "\(numerator)/\(denominator)" }

    /// `16.67%`: rounded to hundredths of a percent, computed exactly from the fraction.
    public var percentText: String {
        let hundredths = (numerator * 10_000 + denominator / 2) / denominator
        return "\(hundredths / 100).\(String(hundredths % 100).leftPadded(to: 2))%"
    }

    static func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var (a, b) = (a, b)
        while b != 0 { (a, b) = (b, a % b) }
        return a == 0 ? 1 : a
    }
}
