/// The layer-4 protocols a service port can carry. Raw values are the table's spelling and nft's.
public enum TransportProtocol: String, Hashable, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case tcp
    case udp
    case sctp

    /// The IANA protocol number, as `meta l4proto` compares it.
    public var number: UInt8 {
        switch self {
        case .tcp: 6
        case .udp: 17
        case .sctp: 132
        }
    }

    public var description: String { rawValue }

    public static func < (lhs: TransportProtocol, rhs: TransportProtocol) -> Bool { lhs.number < rhs.number }
}
