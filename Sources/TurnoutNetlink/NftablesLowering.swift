import TurnoutModel
import TurnoutRules

/// Lowers the rule IR to nf_tables wire values: the same objects nft creates from the text
/// `NftablesRenderer` prints, expression for expression.
///
/// That equivalence is the contract: `turnout plan` shows what `turnout apply` installs. It is
/// tested by installing both into twin namespaces and comparing the dumps. Pure; any thread.
public enum NftablesLowering {
    // linux/netfilter.h, nf_tables.h: numbers the wire model carries.
    static let nfprotoInet: UInt32 = 1
    static let nfprotoIPv4: UInt32 = 2
    static let nfprotoIPv6: UInt32 = 10
    static let metaMark: UInt32 = 3
    static let metaSocketUser: UInt32 = 10
    static let metaSocketGroup: UInt32 = 11
    static let metaNFProto: UInt32 = 15
    static let metaL4Proto: UInt32 = 16
    /// NFT_META_IIFNAME, NFT_META_OIFNAME.
    static let metaInputInterfaceName: UInt32 = 6
    static let metaOutputInterfaceName: UInt32 = 7
    /// nft's `ifname` data type (TYPE_IFNAME).
    static let interfaceNameType: UInt32 = 41
    static let payloadNetwork: UInt32 = 1
    static let payloadTransport: UInt32 = 2
    static let compareEqual: UInt32 = 0
    static let compareNotEqual: UInt32 = 1
    /// NFT_CMP_LTE, NFT_CMP_GTE: byte-wise comparisons, so big-endian values compare as numbers.
    static let compareLessOrEqual: UInt32 = 3
    static let compareGreaterOrEqual: UInt32 = 5
    static let conntrackState: UInt32 = 0
    static let conntrackStatus: UInt32 = 2
    static let byteorderToNetwork: UInt32 = 1
    static let natDestination: UInt32 = 1
    /// NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED: what the kernel records for a NAT
    /// with address and port registers, so written and read-back rules compare equal.
    static let natAddressAndPort: UInt32 = 0x3
    static let natPortOnly: UInt32 = 0x2
    static let rejectTCPReset: UInt32 = 1
    static let rejectICMPXUnreachable: UInt32 = 2
    static let rejectICMPXPortUnreachable: UInt32 = 1
    static let hookNumbers: [Hook: UInt32] = [.prerouting: 0, .input: 1, .forward: 2, .output: 3, .postrouting: 4]

    // nft's datatype ids (src/datatype.h), six bits per concatenated field.
    static let verdictType: UInt32 = 1
    static let integerType: UInt32 = 4
    static let ipv4Type: UInt32 = 7
    static let ipv6Type: UInt32 = 8
    static let protocolType: UInt32 = 12
    static let serviceType: UInt32 = 13
    static let verdictDataType: UInt32 = 0xffff_ff00

    public static func familyNumber(_ family: TableFamily) -> UInt32 {
        switch family {
        case .inet: nfprotoInet
        case .ip: nfprotoIPv4
        case .ip6: nfprotoIPv6
        }
    }

    public static func lower(_ table: RuleTable) -> WireTable {
        WireTable(family: familyNumber(table.family), name: table.name,
                  chains: lowerChains(table.chains, in: table).sorted { $0.name < $1.name },
                  // Sets are independent and a large table's few big ones (picks, hairpins) each
                  // take a core's worth of sorting and byte layout.
                  sets: table.sets.concurrentMap(lowerSet).sorted { $0.name < $1.name })
    }

    /// `chains` as they read inside `table`, whose set declarations decide how lookup keys are
    /// laid out (interval sets byte-swap host-order fields). The chains need not be the table's.
    static func lowerChains(_ chains: [Chain], in table: RuleTable) -> [WireChain] {
        let lowering = RuleLowering(table: table)
        return chains.map { chain in
            WireChain(name: chain.name,
                      hook: chain.base.map { WireHook(type: $0.type.rawValue, hook: hookNumbers[$0.hook]!, priority: $0.priority, policy: 1) },
                      rules: chain.rules.map(lowering.lower))
        }
    }

    // MARK: Sets

    static func lowerSet(_ set: NamedSet) -> WireSet {
        let concatenated = set.key.count > 1
        var flags: UInt32 = 0
        if set.dataType != nil { flags |= WireSet.mapFlag }
        if set.isInterval { flags |= WireSet.intervalFlag }
        if set.isInterval && concatenated { flags |= WireSet.concatFlag }
        if set.isDynamic { flags |= WireSet.timeoutFlag | WireSet.evalFlag }
        var dataType: UInt32?
        var dataLength: UInt32?
        switch set.dataType {
        case .verdict: dataType = verdictDataType
        case .socket(let family):
            dataType = (addressType(family) << 6) | serviceType
            dataLength = UInt32(addressLength(family) + 4)
        case nil: break
        }
        let layout = KeyLayout(set.key, interval: set.isInterval)
        var wire = WireSet(
            name: set.name, flags: flags, keyType: layout.type, keyLength: layout.length,
            dataType: dataType, dataLength: dataLength,
            timeoutMilliseconds: set.timeoutSeconds.map { UInt64($0) * 1000 },
            concatFieldLengths: set.isInterval && concatenated ? layout.fieldLengths.map(UInt8.init) : [],
            userdata: userdata(set),
            elements: elements(set.elements, layout: layout, interval: set.isInterval))
        // Counted after WireSet deduplicated the elements: an unsorted IR (assemble's
        // `.unsorted`) may repeat shared ones, and the capacity must not depend on that.
        if set.capacity != nil { wire.capacity = UInt32(NamedSet.capacity(forElements: wire.elements.count)) }
        return wire
    }

    static func addressType(_ family: IPFamily) -> UInt32 { family == .ipv4 ? ipv4Type : ipv6Type }
    static func addressLength(_ family: IPFamily) -> Int { family == .ipv4 ? 4 : 16 }

    /// How a key is laid out in registers and element bytes.
    struct KeyLayout {
        var fields: [KeyField]
        var fieldLengths: [Int]
        var type: UInt32
        /// Concatenations pad every field to 4 bytes; a single field keeps its own length.
        var length: UInt32
        /// Host-order fields are byte-swapped to network order before interval lookups, so
        /// ranges compare as numbers.
        var interval: Bool

        init(_ fields: [KeyField], interval: Bool) {
            self.fields = fields
            self.interval = interval
            fieldLengths = fields.map(KeyLayout.length)
            type = fields.reduce(0) { ($0 << 6) | KeyLayout.type($1) }
            length = fields.count == 1 ? UInt32(fieldLengths[0]) : UInt32(fieldLengths.reduce(0) { $0 + ($1 + 3) / 4 * 4 })
        }

        static func length(_ field: KeyField) -> Int {
            switch field {
            case .address(_, let family): addressLength(family)
            case .transport: 1
            case .port: 2
            case .random: 4
            }
        }

        static func type(_ field: KeyField) -> UInt32 {
            switch field {
            case .address(_, let family): addressType(family)
            case .transport: protocolType
            case .port: serviceType
            case .random: integerType
            }
        }

        /// The key's bytes, written straight into one buffer of the key's length: a 10,000-service
        /// table lowers about 270,000 keys, and a temporary array per field doubled the time.
        func bytes(_ parts: [KeyPart], upper: Bool) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(Int(length))
            for (part, fieldLength) in zip(parts, fieldLengths) {
                let start = out.count
                switch part {
                case .address(.v4(let value)):
                    append(bigEndian: value, to: &out)
                case .address(.v6(let high, let low)):
                    append(bigEndian: UInt32(truncatingIfNeeded: high >> 32), to: &out)
                    append(bigEndian: UInt32(truncatingIfNeeded: high), to: &out)
                    append(bigEndian: UInt32(truncatingIfNeeded: low >> 32), to: &out)
                    append(bigEndian: UInt32(truncatingIfNeeded: low), to: &out)
                case .transport(let transport):
                    out.append(transport.number)
                case .port(let port):
                    out.append(UInt8(port >> 8))
                    out.append(UInt8(port & 0xff))
                case .integer(let number):
                    appendInteger(number, to: &out)
                case .integerRange(let low, let high):
                    appendInteger(upper ? high : low, to: &out)
                }
                precondition(out.count - start == fieldLength, "key part \(part) does not fit its field")
                if fields.count > 1 {
                    for _ in 0..<(4 - fieldLength % 4) % 4 { out.append(0) }
                }
            }
            return out
        }

        private func append(bigEndian value: UInt32, to out: inout [UInt8]) {
            out.append(UInt8(truncatingIfNeeded: value >> 24))
            out.append(UInt8(truncatingIfNeeded: value >> 16))
            out.append(UInt8(truncatingIfNeeded: value >> 8))
            out.append(UInt8(truncatingIfNeeded: value))
        }

        /// Host order (little-endian here) as numgen writes it, or big-endian for interval
        /// lookups, which compare keys as numbers.
        private func appendInteger(_ number: UInt32, to out: inout [UInt8]) {
            withUnsafeBytes(of: interval ? number.bigEndian : number.littleEndian) { out.append(contentsOf: $0) }
        }
    }

    /// A DNAT target as map data: the address, then the port in network order padded to 4 bytes.
    static func socketBytes(_ socket: SocketAddress) -> [UInt8] {
        var out = socket.address.bytes
        out.reserveCapacity(out.count + 4)
        out.append(UInt8(socket.port >> 8))
        out.append(UInt8(socket.port & 0xff))
        out.append(0)
        out.append(0)
        return out
    }

    /// One range of a single-field interval set or map, as big-endian key bytes.
    struct RangeElement {
        var first: [UInt8]
        var last: [UInt8]
        var data: [UInt8]? = nil
        var verdict: WireVerdict? = nil
    }

    /// The elements nft sends for an interval set kept as an rbtree (single-field keys):
    /// each range is its first key (carrying the data), followed by an interval end at
    /// last + 1 unless the next range starts right there or the key space ends; and an
    /// interval end at key zero before everything when the first range does not start there.
    /// `ranges` must be sorted and must not overlap.
    static func rbtreeElements(_ ranges: [RangeElement]) -> [WireElement] {
        guard let head = ranges.first else { return [] }
        var out: [WireElement] = []
        if head.first.contains(where: { $0 != 0 }) {
            out.append(WireElement(key: Array(repeating: 0, count: head.first.count), isIntervalEnd: true))
        }
        for (index, range) in ranges.enumerated() {
            out.append(WireElement(key: range.first, data: range.data, verdict: range.verdict))
            guard let end = successor(range.last) else { continue }
            if index + 1 < ranges.count && ranges[index + 1].first == end { continue }
            out.append(WireElement(key: end, isIntervalEnd: true))
        }
        return out
    }

    /// The big-endian number one above `bytes`, or `nil` when `bytes` is all ones.
    private static func successor(_ bytes: [UInt8]) -> [UInt8]? {
        var next = bytes
        for index in next.indices.reversed() {
            if next[index] == 0xff { next[index] = 0; continue }
            next[index] += 1
            return next
        }
        return nil
    }

    static func elements(_ elements: [SetElement], layout: KeyLayout, interval: Bool) -> [WireElement] {
        func data(_ element: SetElement) -> (data: [UInt8]?, verdict: WireVerdict?) {
            switch element.data {
            case .verdict(let verdict): (nil, wireVerdict(verdict))
            case .socket(let socket): (socketBytes(socket), nil)
            case nil: (nil, nil)
            }
        }
        if interval && layout.fields.count > 1 {
            // pipapo: every element is a [key, keyEnd] range.
            return elements.map { element in
                let (bytes, verdict) = data(element)
                return WireElement(key: layout.bytes(element.key, upper: false), keyEnd: layout.bytes(element.key, upper: true),
                                   data: bytes, verdict: verdict)
            }
        }
        if interval {
            let ranges = elements.sorted().map { element in
                let (bytes, verdict) = data(element)
                return RangeElement(first: layout.bytes(element.key, upper: false), last: layout.bytes(element.key, upper: true),
                                    data: bytes, verdict: verdict)
            }
            return rbtreeElements(ranges)
        }
        return elements.map { element in
            let (bytes, verdict) = data(element)
            return WireElement(key: layout.bytes(element.key, upper: false), data: bytes, verdict: verdict)
        }
    }

    static func wireVerdict(_ verdict: Verdict) -> WireVerdict {
        switch verdict {
        case .accept: WireVerdict(code: WireVerdict.acceptCode)
        case .drop: WireVerdict(code: WireVerdict.dropCode)
        case .return: WireVerdict(code: WireVerdict.returnCode)
        case .jump(let chain): WireVerdict(code: WireVerdict.jumpCode, chain: chain)
        case .goto(let chain): WireVerdict(code: WireVerdict.gotoCode, chain: chain)
        }
    }

    /// What nft 1.0.6 stores for the same declaration (see `SetUserdata`).
    static func userdata(_ set: NamedSet) -> [UInt8] {
        typealias U = SetUserdata
        if set.isDynamic { return U.encode([.u32(U.keyByteOrder, U.byteOrderBig)]) }
        var nodes: [U.Node] = [.u32(U.keyByteOrder, U.byteOrderUnspecified)]
        if set.dataType != nil { nodes.append(.u32(U.dataByteOrder, U.byteOrderUnspecified)) }
        if set.key.contains(where: { if case .random = $0 { true } else { false } }) {
            // `typeof` declaration: the key and data expressions themselves.
            nodes.append(.nest(U.keyTypeof, U.concat(set.key.map(typeofExpression))))
            if case .socket(let family) = set.dataType {
                nodes.append(.nest(U.dataTypeof, U.concat([typeofExpression(.address(.destination, family)), typeofExpression(.port(.destination))])))
            }
        } else {
            nodes.append(.nest(U.keyTypeof, U.concat([])))
        }
        if set.dataType != nil { nodes.append(.u32(U.dataInterval, 0)) }
        return U.encode(nodes)
    }

    /// Anonymous sets of rules: `meta l4proto { tcp, udp }` and inline verdict maps.
    static func anonymousUserdata(key: KeyField, isMap: Bool) -> [UInt8] {
        typealias U = SetUserdata
        if isMap {
            return U.encode([.u32(U.keyByteOrder, U.byteOrderHost), .u32(U.dataByteOrder, U.byteOrderUnspecified),
                             .nest(U.dataTypeof, U.expression(U.verdictExpression, [])), .u32(U.dataInterval, 0)])
        }
        return U.encode([.u32(U.keyByteOrder, U.byteOrderHost), .nest(U.keyTypeof, typeofExpression(key))])
    }

    /// What an anonymous lookup set (`th dport { 80, 443 }`, `meta skuid { 0, 1337 }`) matches,
    /// for its `typeof` user data.
    enum LookupKey {
        case address(PacketDirection, IPFamily)
        case port(PacketDirection)
        case meta(UInt32)
    }

    /// nft's user data for an anonymous lookup set: the key's byte order, for an interval set
    /// the merge-elements flag (nft joins abutting intervals in them), then the key's `typeof`.
    static func lookupSetUserdata(byteOrder: UInt32, typeof key: LookupKey, interval: Bool) -> [UInt8] {
        typealias U = SetUserdata
        let typeof: [U.Node] = switch key {
        case .address(let direction, let family): typeofExpression(.address(direction, family))
        case .port(let direction): typeofExpression(.port(direction))
        case .meta(let metaKey): U.expression(U.metaExpression, [.u32(0, metaKey)])
        }
        return U.encode([.u32(U.keyByteOrder, byteOrder)] + (interval ? [.u32(U.mergeElements, 1)] : []) + [.nest(U.keyTypeof, typeof)])
    }

    static func typeofExpression(_ field: KeyField) -> [SetUserdata.Node] {
        typealias U = SetUserdata
        // nft's protocol descriptions and header templates: ip 12, ip6 13, th 11; fields by index.
        switch field {
        case .address(let direction, .ipv4):
            return U.expression(U.payloadExpression, [.u32(0, 12), .u32(1, direction == .source ? 11 : 12)])
        case .address(let direction, .ipv6):
            return U.expression(U.payloadExpression, [.u32(0, 13), .u32(1, direction == .source ? 8 : 9)])
        case .port(let direction):
            return U.expression(U.payloadExpression, [.u32(0, 11), .u32(1, direction == .source ? 1 : 2)])
        case .transport:
            return U.expression(U.metaExpression, [.u32(0, metaL4Proto)])
        case .random(let modulus):
            return U.expression(U.numgenExpression, [.u32(0, 1), .u32(1, modulus), .u32(2, 0)])
        }
    }
}
