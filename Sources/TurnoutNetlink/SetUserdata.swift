/// nft's user data for sets (TLVs: type byte, length byte, value), written so `nft list` prints
/// Turnout's sets the way `turnout plan` shows them. The kernel stores it without reading it.
///
/// The layout is nft's (libnftnl's `NFTNL_UDATA_SET_*` types), checked byte for byte by the test
/// that installs `plan`'s text with nft and Turnout's batch side by side and compares the dumps.
enum SetUserdata {
    // NFTNL_UDATA_SET_* (libnftnl/udata.h).
    static let keyByteOrder: UInt8 = 0
    static let dataByteOrder: UInt8 = 1
    static let mergeElements: UInt8 = 2
    static let keyTypeof: UInt8 = 3
    static let dataTypeof: UInt8 = 4
    static let dataInterval: UInt8 = 6

    // nft's byte order enum: invalid (type-defined), host, big endian.
    static let byteOrderUnspecified: UInt32 = 0
    static let byteOrderHost: UInt32 = 1
    static let byteOrderBig: UInt32 = 2

    // nft's expression kinds inside `typeof` descriptions.
    static let verdictExpression: UInt32 = 1
    static let payloadExpression: UInt32 = 7
    static let metaExpression: UInt32 = 9
    static let concatExpression: UInt32 = 13
    static let numgenExpression: UInt32 = 23

    indirect enum Node {
        case u32(UInt8, UInt32)
        case nest(UInt8, [Node])

        var bytes: [UInt8] {
            switch self {
            case .u32(let type, let value):
                return [type, 4] + withUnsafeBytes(of: value.littleEndian) { Array($0) }
            case .nest(let type, let children):
                let body = children.flatMap(\.bytes)
                precondition(body.count < 256, "nft set user data attribute exceeds 255 bytes")
                return [type, UInt8(body.count)] + body
            }
        }
    }

    /// `typeof` description of one expression: `{0: kind, 1: {attributes}}`.
    static func expression(_ kind: UInt32, _ attributes: [Node]) -> [Node] {
        [.u32(0, kind), .nest(1, attributes)]
    }

    /// `typeof` of a concatenation: its members numbered from 0.
    static func concat(_ members: [[Node]]) -> [Node] {
        expression(concatExpression, members.enumerated().map { .nest(UInt8($0.offset), $0.element) })
    }

    static func encode(_ nodes: [Node]) -> [UInt8] { nodes.flatMap(\.bytes) }
}
