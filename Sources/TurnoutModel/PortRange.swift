/// A TCP/UDP port or an inclusive range of them: `80`, `9000-9100` (also `9000:9100`, as
/// iptables writes it).
public struct PortRange: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let lower: UInt16
    public let upper: UInt16

    /// `nil` when `lower` is 0 or above `upper`.
    public init?(_ lower: UInt16, _ upper: UInt16) {
        guard lower >= 1, lower <= upper else { return nil }
        self.lower = lower
        self.upper = upper
    }

    public init?(_ port: UInt16) { self.init(port, port) }

    /// Parses `PORT`, `LOW-HIGH` or `LOW:HIGH`; throws a message naming what is wrong.
    public init(parsing text: some StringProtocol) throws(ValueError) {
        let text = String(text)
        let bounds = text.split(whereSeparator: { $0 == "-" || $0 == ":" }).map(String.init)
        func port(_ value: String) throws(ValueError) -> UInt16 {
            guard let number = UInt16(value), number >= 1 else { throw ValueError("'\(text)' is not a port (1–65535) or range (LOW-HIGH)") }
            return number
        }
        let separators = text.filter { $0 == "-" || $0 == ":" }.count
        guard (bounds.count == 1 && separators == 0) || (bounds.count == 2 && separators == 1) else {
            throw ValueError("'\(text)' is not a port (1–65535) or range (LOW-HIGH)")
        }
        let lower = try port(bounds[0])
        let upper = bounds.count == 2 ? try port(bounds[1]) : lower
        guard let range = PortRange(lower, upper) else { throw ValueError("'\(text)': the range's start is above its end") }
        self = range
    }

    public var isSinglePort: Bool { lower == upper }

    public func contains(_ port: UInt16) -> Bool { (lower...upper).contains(port) }

    /// How many of iptables' multiport slots it takes: a range counts as two (of fifteen).
    public var multiportSlots: Int { isSinglePort ? 1 : 2 }

    /// `80` or `9000-9100`.
    public var description: String { isSinglePort ? "\(lower)" : "\(lower)-\(upper)" }

    public static func < (lhs: PortRange, rhs: PortRange) -> Bool { (lhs.lower, lhs.upper) < (rhs.lower, rhs.upper) }

    /// `ranges` sorted, with overlapping and touching ranges joined (`80, 81-90` → `80-90`):
    /// the same ports, each in exactly one range, as nft keeps an interval set.
    public static func normalized(_ ranges: [PortRange]) -> [PortRange] {
        var result: [PortRange] = []
        for range in ranges.sorted() {
            if let last = result.last, UInt32(range.lower) <= UInt32(last.upper) + 1 {
                result[result.count - 1] = PortRange(last.lower, max(last.upper, range.upper))!
            } else {
                result.append(range)
            }
        }
        return result
    }
}
