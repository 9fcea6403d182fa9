/// One nf_tables expression of a rule, with the attributes Turnout writes and reads back.
///
/// Numbers are the kernel's (`NFT_META_*`, `NFT_PAYLOAD_*`, registers, …) so a dumped rule
/// decodes to exactly the value that was encoded. Registers: 0 is the verdict register, 1–4 the
/// 16-byte registers, 8–23 the 4-byte ones (`NFT_REG32_00`…); concatenated keys occupy
/// consecutive 4-byte words, named as nft names them (see ``Register``).
public enum WireExpression: Hashable, Sendable {
    /// `[ meta load KEY => reg DREG ]`
    case metaLoad(key: UInt32, register: UInt32)
    /// `[ meta set KEY with reg SREG ]`
    case metaSet(key: UInt32, register: UInt32)
    /// `[ payload load LEN b @ BASE header + OFFSET => reg DREG ]`
    case payload(base: UInt32, offset: UInt32, length: UInt32, register: UInt32)
    /// `[ cmp OP reg SREG DATA ]`
    case compare(op: UInt32, register: UInt32, data: [UInt8])
    /// `[ bitwise reg DREG = ( reg SREG & MASK ) ^ XOR ]`
    case bitwise(source: UInt32, destination: UInt32, length: UInt32, mask: [UInt8], xor: [UInt8])
    /// `[ byteorder reg DREG = hton(reg SREG, SIZE, LEN) ]`
    case byteorder(source: UInt32, destination: UInt32, op: UInt32, length: UInt32, size: UInt32)
    /// `[ ct load KEY => reg DREG ]`
    case conntrack(key: UInt32, register: UInt32)
    /// `[ lookup reg SREG set NAME (dreg DREG) ]`; `inverted` is `!=`.
    case lookup(set: SetReference, source: UInt32, destination: UInt32?, inverted: Bool)
    /// `[ dynset update reg_key SREG set NAME ]`
    case dynsetUpdate(set: String, source: UInt32)
    /// `[ numgen reg DREG = random mod MODULUS ]`
    case randomNumber(modulus: UInt32, register: UInt32)
    /// `[ nat dnat ip addr_min reg A proto_min reg P flags F ]`
    case nat(type: UInt32, family: UInt32, addressRegister: UInt32?, portRegister: UInt32?, flags: UInt32)
    /// `[ redir proto_min reg P flags F ]`
    case redirect(portRegister: UInt32?, flags: UInt32)
    /// `[ masq ]`
    case masquerade
    /// `[ reject type T code C ]`
    case reject(type: UInt32, code: UInt32)
    /// `[ immediate reg DREG DATA ]`
    case immediateData(register: UInt32, data: [UInt8])
    /// `[ immediate reg 0 VERDICT (-> CHAIN) ]`
    case immediateVerdict(WireVerdict)
    /// `[ counter ]` (packets and bytes are state, not compared).
    case counter
    /// An expression Turnout never writes, found in a dump: it makes the table differ.
    case unknown(String)
}

/// The set an expression looks up: a named set of the table, or an anonymous one owned by the
/// rule (`meta l4proto { tcp, udp }`), compared by content because the kernel names it.
public enum SetReference: Hashable, Sendable {
    case named(String)
    case anonymous(WireSet)
}

/// nf_tables register numbering, as nft allocates it for concatenations.
public enum Register {
    public static let verdict: UInt32 = 0
    /// The register holding the 4-byte word `word` of a value that starts at register 1. Words on a
    /// 16-byte boundary use the 16-byte register's number (1–4), others `NFT_REG32_00 + word`.
    public static func word(_ word: Int) -> UInt32 {
        word % 4 == 0 ? UInt32(1 + word / 4) : UInt32(8 + word)
    }
}
