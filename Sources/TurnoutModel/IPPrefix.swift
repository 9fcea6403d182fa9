/// An address block in CIDR notation: `10.0.0.0/8`, `fd00::/8`, or one host (`10.0.0.1` = `/32`).
///
/// Host bits must be zero (`10.0.0.1/8` is refused rather than silently widened: it is usually a
/// typo for `/32` or for `10.0.0.0/8`, and the two mean very different capture rules).
public struct IPPrefix: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    /// `nil` when `length` is out of range for the family or host bits are set.
    public init?(address: IPAddress, length: Int) {
        guard (0...address.family.bitCount).contains(length), address.masked(to: length) == address else { return nil }
        self.address = address
        self.length = length
    }

    /// One address: `/32` or `/128`.
    public init(host address: IPAddress) {
        self.address = address
        length = address.family.bitCount
    }

    /// Parses `ADDRESS/LENGTH` or a bare address; throws a message naming what is wrong.
    public init(parsing text: some StringProtocol) throws(ValueError) {
        let text = String(text)
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { throw ValueError("'\(text)' is not an IP address or CIDR block") }
        var length = address.family.bitCount
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...address.family.bitCount).contains(parsed) else {
                throw ValueError("'\(text)': the prefix length must be 0–\(address.family.bitCount)")
            }
            length = parsed
        }
        guard let prefix = IPPrefix(address: address, length: length) else {
            throw ValueError("'\(text)' has host bits set; did you mean \(address.masked(to: length))/\(length)?")
        }
        self = prefix
    }

    public var family: IPFamily { address.family }

    /// The loopback block of `family`: `127.0.0.0/8` or `::1`. Routing sends it over `lo`.
    public static func loopback(_ family: IPFamily) -> IPPrefix {
        family == .ipv4 ? IPPrefix(address: .v4(0x7f00_0000), length: 8)! : IPPrefix(host: .v6(0, 1))
    }

    /// The last address in the block.
    public var last: IPAddress { address.filled(from: length) }

    public func contains(_ other: IPAddress) -> Bool {
        other.family == family && other.masked(to: length) == address
    }

    public func contains(_ other: IPPrefix) -> Bool { other.length >= length && contains(other.address) }

    public var description: String { "\(address)/\(length)" }

    public static func < (lhs: IPPrefix, rhs: IPPrefix) -> Bool {
        (lhs.address, lhs.length) < (rhs.address, rhs.length)
    }

    /// `prefixes` sorted, with every block that lies inside another one dropped. Two CIDR blocks
    /// either nest or are disjoint, so the result covers the same addresses with no overlap.
    public static func normalized(_ prefixes: [IPPrefix]) -> [IPPrefix] {
        var result: [IPPrefix] = []
        for prefix in prefixes.sorted() where !result.contains(where: { $0.contains(prefix) }) {
            result.append(prefix)
        }
        return result
    }
}
