#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address, kept as its network-order bytes.
///
/// Parsing and printing use `inet_pton`/`inet_ntop`, so the text form is the canonical one
/// (RFC 5952 for IPv6) and two spellings of one address compare equal. Ordering is family first
/// (IPv4 before IPv6), then bytes, which gives the compilers a deterministic element order.
public enum IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    case v4(UInt32)
    case v6(UInt64, UInt64)

    /// Parses a textual address; `nil` when it is neither a dotted quad nor an IPv6 address.
    public init?(_ text: some StringProtocol) {
        let text = String(text)
        if text.contains(":") {
            var raw = in6_addr()
            guard inet_pton(AF_INET6, text, &raw) == 1 else { return nil }
            let bytes = withUnsafeBytes(of: &raw) { Array($0) }
            self = IPAddress(v6Bytes: bytes)
        } else {
            var raw = in_addr()
            // inet_pton is strict: it refuses "010.1.1.1" and "1.2.3", unlike inet_aton.
            guard inet_pton(AF_INET, text, &raw) == 1 else { return nil }
            self = .v4(UInt32(bigEndian: raw.s_addr))
        }
    }

    /// Builds an address from 16 network-order bytes.
    public init(v6Bytes bytes: [UInt8]) {
        precondition(bytes.count == 16, "an IPv6 address has 16 bytes")
        var high: UInt64 = 0, low: UInt64 = 0
        for i in 0..<8 { high = high << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { low = low << 8 | UInt64(bytes[i]) }
        self = .v6(high, low)
    }

    public var family: IPFamily {
        switch self {
        case .v4: .ipv4
        case .v6: .ipv6
        }
    }

    /// The address in network byte order (4 or 16 bytes), as nf_tables compares it.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let value):
            return withUnsafeBytes(of: value.bigEndian) { Array($0) }
        case .v6(let high, let low):
            return withUnsafeBytes(of: (high.bigEndian, low.bigEndian)) { Array($0) }
        }
    }

    /// Addresses no service or endpoint can use: unspecified, multicast, IPv4 broadcast.
    public var isUnroutable: Bool {
        switch self {
        case .v4(let value):
            return value == 0 || value >> 28 == 0xE || value == 0xFFFF_FFFF
        case .v6(let high, let low):
            return (high == 0 && low == 0) || high >> 56 == 0xFF
        }
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var bytes = self.bytes
        let af = family == .ipv4 ? AF_INET : AF_INET6
        return bytes.withUnsafeMutableBytes { raw in
            buffer.withUnsafeMutableBufferPointer { out in
                guard inet_ntop(af, raw.baseAddress, out.baseAddress, socklen_t(out.count)) != nil else {
                    return "?"
                }
                return String(cString: out.baseAddress!)
            }
        }
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        switch (lhs, rhs) {
        case (.v4(let a), .v4(let b)): a < b
        case (.v6(let a1, let a2), .v6(let b1, let b2)): (a1, a2) < (b1, b2)
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }
}

/// The two IP families. Raw values are the names nft uses for `meta nfproto`.
public enum IPFamily: String, Hashable, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case ipv4
    case ipv6

    public var description: String { rawValue }

    public static func < (lhs: IPFamily, rhs: IPFamily) -> Bool { lhs == .ipv4 && rhs == .ipv6 }
}

/// An address together with a port, printed `10.0.0.1:80` or `[fd00::1]:80`.
public struct SocketAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `ADDR:PORT` or `[ADDR6]:PORT`; `nil` when either half is invalid or the port is 0.
    public init?(_ text: String) {
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                  text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let address = IPAddress(host), let port = UInt16(portText), port != 0 else { return nil }
        self.init(address: address, port: port)
    }

    public var description: String {
        address.family == .ipv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }

    public static func < (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        (lhs.address, lhs.port) < (rhs.address, rhs.port)
    }
}

extension IPFamily {
    /// 32 or 128.
    public var bitCount: Int { self == .ipv4 ? 32 : 128 }
}

extension IPAddress {
    /// The address with every bit after the first `length` cleared.
    public func masked(to length: Int) -> IPAddress {
        switch self {
        case .v4(let value):
            return .v4(length == 0 ? 0 : value & ~UInt32(0) << (32 - length))
        case .v6(let high, let low):
            let highMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << (64 - length))
            let lowMask: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << (128 - length))
            return .v6(high & highMask, low & lowMask)
        }
    }

    /// The address with every bit after the first `length` set: the last address of its block.
    public func filled(from length: Int) -> IPAddress {
        switch self {
        case .v4(let value):
            return .v4(length == 32 ? value : value | ~UInt32(0) >> length)
        case .v6(let high, let low):
            let highFill: UInt64 = length >= 64 ? 0 : ~UInt64(0) >> length
            let lowFill: UInt64 = length >= 128 ? 0 : (length <= 64 ? ~0 : ~UInt64(0) >> (length - 64))
            return .v6(high | highFill, low | lowFill)
        }
    }

    /// The address `count` further on, wrapping at the end of the family's space
    /// (`10.0.0.0` + 1 = `10.0.0.1`; IPv6 carries from the low 64 bits into the high ones).
    public func adding(_ count: UInt32) -> IPAddress {
        switch self {
        case .v4(let value):
            return .v4(value &+ count)
        case .v6(let high, let low):
            let (sum, carried) = low.addingReportingOverflow(UInt64(count))
            return .v6(carried ? high &+ 1 : high, sum)
        }
    }
}
