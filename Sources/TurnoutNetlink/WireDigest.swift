/// A stable 128-bit fingerprint of a wire table (two FNV-1a 64 streams with different offsets).
///
/// Identical tables give identical digests in every process and on every run (unlike `Hasher`),
/// so a digest recorded after an apply tells a later run whether the kernel still holds exactly
/// what Turnout wrote. Not cryptographic: it detects drift, not tampering.
public struct WireDigest: Hashable, Sendable, CustomStringConvertible {
    private var first: UInt64 = 0xcbf2_9ce4_8422_2325
    private var second: UInt64 = 0x6c62_272e_07bb_0142

    public init(_ table: WireTable) {
        feed(table.family)
        feed(table.name)
        for chain in table.chains {
            feed(chain.name)
            if let hook = chain.hook { feed(hook.type); feed(hook.hook); feed(UInt32(bitPattern: hook.priority)); feed(hook.policy) }
            for rule in chain.rules {
                feed(0xA1)
                feed(rule.userdata)
                for expression in rule.expressions { feed(expression) }
            }
        }
        for set in table.sets { feed(set) }
    }

    public var description: String {
        String(first, radix: 16).leftPadded(16) + String(second, radix: 16).leftPadded(16)
    }

    private mutating func feed(_ bytes: [UInt8]) {
        feed(UInt32(bytes.count))
        for byte in bytes { mix(byte) }
    }

    private mutating func feed(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { for byte in $0 { mix(byte) } }
    }

    private mutating func feed(_ value: UInt64?) {
        feed(UInt32(truncatingIfNeeded: (value ?? .max) >> 32))
        feed(UInt32(truncatingIfNeeded: value ?? .max))
    }

    private mutating func feed(_ text: String) { feed(Array(text.utf8)) }

    private mutating func mix(_ byte: UInt8) {
        first = (first ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        second = (second ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 ^ 0x9e37_79b9_7f4a_7c15
    }

    private mutating func feed(_ set: WireSet) {
        feed(set.name)
        for value in [set.flags, set.keyType, set.keyLength, set.dataType ?? .max, set.dataLength ?? .max] { feed(value) }
        feed(set.timeoutMilliseconds)
        feed(set.concatFieldLengths)
        feed(set.userdata)
        guard !set.isDynamic else { return }
        for element in set.elements {
            feed(element.key)
            feed(element.keyEnd ?? [0xFF, 0xFF])
            feed(element.isIntervalEnd ? 1 : 0)
            feed(element.data ?? [0xFF, 0xFF])
            feed(element.verdict.map { UInt32(bitPattern: $0.code) } ?? .max)
            feed(element.verdict?.chain ?? "")
        }
    }

    private mutating func feed(_ expression: WireExpression) {
        // The case's own text names it and its scalar attributes; byte arrays print in full, and
        // anonymous sets are fed structurally.
        if case .lookup(.anonymous(let set), let source, let destination, let inverted) = expression {
            feed("lookup-anonymous")
            feed(set)
            feed(source)
            feed(destination ?? .max)
            feed(inverted ? 1 : 0)
        } else {
            feed(String(describing: expression))
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
