import TurnoutModel
import TurnoutRules

/// Lowers one IR rule to expressions, in nft's order: a network-header load in an `inet` table
/// is preceded by its `meta nfproto` dependency (once per rule), concatenated keys fill
/// consecutive 4-byte registers from register 1, and host-order key fields are byte-swapped
/// before interval lookups.
struct RuleLowering {
    typealias L = NftablesLowering
    let table: RuleTable

    func lower(_ rule: Rule) -> WireRule {
        var state = State(isInet: table.family == .inet)
        for match in rule.matches { lower(match, into: &state) }
        for statement in rule.statements { lower(statement, into: &state) }
        return WireRule(state.expressions, userdata: rule.comment.map(commentUserdata) ?? [])
    }

    struct State {
        let isInet: Bool
        var family: IPFamily?
        var expressions: [WireExpression] = []

        mutating func requireFamily(_ family: IPFamily) {
            guard isInet, self.family != family else { return }
            expressions += [.metaLoad(key: L.metaNFProto, register: 1),
                            .compare(op: L.compareEqual, register: 1, data: [UInt8(family == .ipv4 ? L.nfprotoIPv4 : L.nfprotoIPv6)])]
            self.family = family
        }
    }

    /// nft's rule comment: user data type 0, the NUL-terminated text.
    private func commentUserdata(_ comment: String) -> [UInt8] {
        let text = Array(comment.utf8) + [0]
        precondition(text.count < 256, "rule comments are limited to 255 bytes")
        return [0, UInt8(text.count)] + text
    }

    private func lower(_ match: Match, into state: inout State) {
        switch match {
        case .family(let family):
            state.expressions += [.metaLoad(key: L.metaNFProto, register: 1),
                                  .compare(op: L.compareEqual, register: 1, data: [UInt8(family == .ipv4 ? L.nfprotoIPv4 : L.nfprotoIPv6)])]
            state.family = family
        case .transport(let transports):
            state.expressions.append(.metaLoad(key: L.metaL4Proto, register: 1))
            if transports.count == 1 {
                state.expressions.append(.compare(op: L.compareEqual, register: 1, data: [transports.first!.number]))
            } else {
                let set = WireSet(name: "", flags: WireSet.anonymousFlag | WireSet.constantFlag, keyType: L.protocolType, keyLength: 1,
                                  userdata: L.anonymousUserdata(key: .transport, isMap: false),
                                  elements: transports.map { WireElement(key: [$0.number]) })
                state.expressions.append(.lookup(set: .anonymous(set), source: 1, destination: nil, inverted: false))
            }
        case .port(let direction, let port):
            state.expressions += [.payload(base: L.payloadTransport, offset: direction == .source ? 0 : 2, length: 2, register: 1),
                                  .compare(op: L.compareEqual, register: 1, data: [UInt8(port >> 8), UInt8(port & 0xff)])]
        case .lookup(let key, let set, let negated):
            loadKey(key, interval: table.set(named: set)?.isInterval ?? false, into: &state)
            state.expressions.append(.lookup(set: .named(set), source: 1, destination: nil, inverted: negated))
        case .connectionState(let states):
            // NF_CT_STATE_BIT: established 1 << 1, related 1 << 2, new 1 << 3.
            let bit: [ConnectionState: UInt32] = [.established: 0x2, .related: 0x4, .new: 0x8]
            let bits = states.reduce(UInt32(0)) { $0 | bit[$1]! }
            testBits(.conntrack(key: L.conntrackState, register: 1), bits, into: &state)
        case .destinationNATed:
            testBits(.conntrack(key: L.conntrackStatus, register: 1), 0x20, into: &state)  // IPS_DST_NAT
        case .markBits(let bits, let negated):
            state.expressions += [.metaLoad(key: L.metaMark, register: 1),
                                  .bitwise(source: 1, destination: 1, length: 4, mask: littleEndian(bits), xor: littleEndian(0)),
                                  .compare(op: negated ? L.compareNotEqual : L.compareEqual, register: 1, data: littleEndian(bits))]
        case .socketUser(let ids, let negated):
            owner(L.metaSocketUser, ids, negated: negated, into: &state)
        case .socketGroup(let ids, let negated):
            owner(L.metaSocketGroup, ids, negated: negated, into: &state)
        case .addresses(let direction, let prefixes, let negated):
            let family = prefixes[0].family
            state.requireFamily(family)
            if prefixes.count == 1 {
                // As nft 1.0.6 does it (measured): a byte-aligned prefix loads only its bytes
                // (`10.0.0.0/8` is one byte compared with 10); any other, /0 included, loads the
                // whole address and masks it.
                let prefix = prefixes[0]
                let aligned = prefix.length % 8 == 0 && prefix.length > 0
                let covered = aligned ? prefix.length / 8 : L.addressLength(family)
                let bytes = Array(prefix.address.bytes.prefix(covered))
                let op = negated ? L.compareNotEqual : L.compareEqual
                state.expressions.append(.payload(base: L.payloadNetwork, offset: addressOffset(direction, family),
                                                  length: UInt32(covered), register: 1))
                if !aligned {
                    let allOnes: IPAddress = family == .ipv4 ? .v4(.max) : .v6(.max, .max)
                    let mask = Array(allOnes.masked(to: prefix.length).bytes.prefix(covered))
                    state.expressions.append(.bitwise(source: 1, destination: 1, length: UInt32(covered), mask: mask,
                                                      xor: Array(repeating: 0, count: covered)))
                }
                state.expressions.append(.compare(op: op, register: 1, data: bytes))
            } else if prefixes.allSatisfy({ $0.length == family.bitCount }) {
                state.expressions.append(.payload(base: L.payloadNetwork, offset: addressOffset(direction, family),
                                                  length: UInt32(L.addressLength(family)), register: 1))
                let set = plainSet(keyType: L.addressType(family), typeof: .address(direction, family), keys: prefixes.map(\.address.bytes))
                state.expressions.append(.lookup(set: .anonymous(set), source: 1, destination: nil, inverted: negated))
            } else {
                state.expressions.append(.payload(base: L.payloadNetwork, offset: addressOffset(direction, family),
                                                  length: UInt32(L.addressLength(family)), register: 1))
                // nft joins blocks that abut (10.0.0.0/9 and 10.128.0.0/9 are one interval).
                var ranges: [(first: IPAddress, last: IPAddress)] = []
                for prefix in prefixes {
                    if let previous = ranges.last, previous.last < prefix.last,
                       previous.last.adding(1) == prefix.address {
                        ranges[ranges.count - 1].last = prefix.last
                    } else {
                        ranges.append((prefix.address, prefix.last))
                    }
                }
                let set = intervalSet(keyType: L.addressType(family), typeof: .address(direction, family),
                                      ranges: ranges.map { ($0.first.bytes, $0.last.bytes) })
                state.expressions.append(.lookup(set: .anonymous(set), source: 1, destination: nil, inverted: negated))
            }
        case .ports(let direction, let ranges, let negated):
            state.expressions.append(.payload(base: L.payloadTransport, offset: direction == .source ? 0 : 2, length: 2, register: 1))
            if ranges.count == 1 && ranges[0].isSinglePort {
                let port = ranges[0].lower
                state.expressions.append(.compare(op: negated ? L.compareNotEqual : L.compareEqual, register: 1,
                                                  data: [UInt8(port >> 8), UInt8(port & 0xff)]))
            } else if ranges.count == 1 && !negated {
                // `th dport >= LOW th dport <= HIGH`, as the renderer prints a lone range.
                let (low, high) = (ranges[0].lower, ranges[0].upper)
                state.expressions += [.compare(op: L.compareGreaterOrEqual, register: 1, data: [UInt8(low >> 8), UInt8(low & 0xff)]),
                                      .payload(base: L.payloadTransport, offset: direction == .source ? 0 : 2, length: 2, register: 1),
                                      .compare(op: L.compareLessOrEqual, register: 1, data: [UInt8(high >> 8), UInt8(high & 0xff)])]
            } else {
                let bytes: (UInt16) -> [UInt8] = { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
                // nft makes a set an interval set only when one of its elements is a range.
                let set = ranges.allSatisfy(\.isSinglePort)
                    ? plainSet(keyType: L.serviceType, typeof: .port(direction), keys: ranges.map { bytes($0.lower) })
                    : intervalSet(keyType: L.serviceType, typeof: .port(direction), ranges: ranges.map { (bytes($0.lower), bytes($0.upper)) })
                state.expressions.append(.lookup(set: .anonymous(set), source: 1, destination: nil, inverted: negated))
            }
        case .interface(let direction, let names, let negated):
            state.expressions.append(.metaLoad(key: direction == .input ? L.metaInputInterfaceName : L.metaOutputInterfaceName, register: 1))
            // Names are compared as IFNAMSIZ (16) NUL-padded bytes.
            let padded: (String) -> [UInt8] = { Array($0.utf8) + Array(repeating: 0, count: 16 - $0.utf8.count) }
            if names.count == 1 {
                state.expressions.append(.compare(op: negated ? L.compareNotEqual : L.compareEqual, register: 1, data: padded(names[0])))
            } else {
                let key = direction == .input ? L.metaInputInterfaceName : L.metaOutputInterfaceName
                let set = WireSet(name: "", flags: WireSet.anonymousFlag | WireSet.constantFlag, keyType: L.interfaceNameType, keyLength: 16,
                                  userdata: L.lookupSetUserdata(byteOrder: SetUserdata.byteOrderHost, typeof: .meta(key), interval: false),
                                  elements: names.map { WireElement(key: padded($0)) })
                state.expressions.append(.lookup(set: .anonymous(set), source: 1, destination: nil, inverted: negated))
            }
        case .probability:
            preconditionFailure("statistic probabilities are an iptables construct; nft tables use numgen")
        }
    }

    /// nft's anonymous interval set of single-field, big-endian keys (addresses, ports).
    private func intervalSet(keyType: UInt32, typeof: L.LookupKey, ranges: [([UInt8], [UInt8])]) -> WireSet {
        WireSet(name: "", flags: WireSet.anonymousFlag | WireSet.constantFlag | WireSet.intervalFlag, keyType: keyType,
                keyLength: UInt32(ranges[0].0.count),
                userdata: L.lookupSetUserdata(byteOrder: SetUserdata.byteOrderBig, typeof: typeof, interval: true),
                elements: L.rbtreeElements(ranges.map { L.RangeElement(first: $0.0, last: $0.1) }))
    }

    /// nft's anonymous set of single-field, big-endian keys without ranges.
    private func plainSet(keyType: UInt32, typeof: L.LookupKey, keys: [[UInt8]]) -> WireSet {
        WireSet(name: "", flags: WireSet.anonymousFlag | WireSet.constantFlag, keyType: keyType, keyLength: UInt32(keys[0].count),
                userdata: L.lookupSetUserdata(byteOrder: SetUserdata.byteOrderBig, typeof: typeof, interval: false),
                elements: keys.map { WireElement(key: $0) })
    }

    private func lower(_ statement: Statement, into state: inout State) {
        switch statement {
        case .dnat(let socket):
            state.expressions += [.immediateData(register: 1, data: socket.address.bytes),
                                  .immediateData(register: 2, data: [UInt8(socket.port >> 8), UInt8(socket.port & 0xff)]),
                                  .nat(type: L.natDestination, family: natFamily(socket.address.family), addressRegister: 1, portRegister: 2,
                                       flags: L.natAddressAndPort)]
        case .dnatMap(let key, let map, let family):
            loadKey(key, interval: table.set(named: map)?.isInterval ?? false, into: &state)
            state.expressions += [.lookup(set: .named(map), source: 1, destination: 1, inverted: false),
                                  .nat(type: L.natDestination, family: natFamily(family), addressRegister: 1,
                                       portRegister: Register.word(L.addressLength(family) / 4), flags: L.natAddressAndPort)]
        case .redirect(let port):
            state.expressions += [.immediateData(register: 1, data: [UInt8(port >> 8), UInt8(port & 0xff)]),
                                  .redirect(portRegister: 1, flags: L.natPortOnly)]
        case .masquerade:
            state.expressions.append(.masquerade)
        case .reject(.tcpReset):
            state.expressions.append(.reject(type: L.rejectTCPReset, code: 0))
        case .reject(.portUnreachable):
            switch table.family {
            case .inet: state.expressions.append(.reject(type: L.rejectICMPXUnreachable, code: L.rejectICMPXPortUnreachable))
            case .ip: state.expressions.append(.reject(type: 0, code: 3))   // ICMP port unreachable
            case .ip6: state.expressions.append(.reject(type: 0, code: 4))  // ICMPv6 port unreachable
            }
        case .updateSet(let key, let set):
            loadKey(key, interval: false, into: &state)
            state.expressions.append(.dynsetUpdate(set: set, source: 1))
        case .orMark(let bits):
            state.expressions += [.metaLoad(key: L.metaMark, register: 1),
                                  .bitwise(source: 1, destination: 1, length: 4, mask: littleEndian(~bits), xor: littleEndian(bits)),
                                  .metaSet(key: L.metaMark, register: 1)]
        case .xorMark(let bits):
            state.expressions += [.metaLoad(key: L.metaMark, register: 1),
                                  .bitwise(source: 1, destination: 1, length: 4, mask: littleEndian(.max), xor: littleEndian(bits)),
                                  .metaSet(key: L.metaMark, register: 1)]
        case .verdictMap(let key, .named(let map)):
            loadKey(key, interval: table.set(named: map)?.isInterval ?? false, into: &state)
            state.expressions.append(.lookup(set: .named(map), source: 1, destination: Register.verdict, inverted: false))
        case .verdictMap(let key, .inline(let elements)):
            let interval = elements.contains { $0.key.contains { if case .integerRange = $0 { true } else { false } } }
            loadKey(key, interval: interval, into: &state)
            let layout = L.KeyLayout(key, interval: interval)
            precondition(key.count == 1, "inline verdict maps take a single key field")
            var flags = WireSet.anonymousFlag | WireSet.constantFlag | WireSet.mapFlag
            if interval { flags |= WireSet.intervalFlag }
            let set = WireSet(name: "", flags: flags, keyType: layout.type, keyLength: layout.length, dataType: L.verdictDataType,
                              userdata: L.anonymousUserdata(key: key[0], isMap: true),
                              elements: L.elements(elements, layout: layout, interval: interval))
            state.expressions.append(.lookup(set: .anonymous(set), source: 1, destination: Register.verdict, inverted: false))
        case .verdict(let verdict):
            state.expressions.append(.immediateVerdict(L.wireVerdict(verdict)))
        }
    }

    /// Loads a (possibly concatenated) key into registers from register 1.
    private func loadKey(_ key: [KeyField], interval: Bool, into state: inout State) {
        var word = 0
        for field in key {
            let register = Register.word(word)
            switch field {
            case .address(let direction, let family):
                state.requireFamily(family)
                state.expressions.append(.payload(base: L.payloadNetwork, offset: addressOffset(direction, family),
                                                  length: UInt32(L.addressLength(family)), register: register))
                word += L.addressLength(family) / 4
            case .transport:
                state.expressions.append(.metaLoad(key: L.metaL4Proto, register: register))
                if interval { state.expressions.append(.byteorder(source: register, destination: register, op: L.byteorderToNetwork, length: 1, size: 2)) }
                word += 1
            case .port(let direction):
                state.expressions.append(.payload(base: L.payloadTransport, offset: direction == .source ? 0 : 2, length: 2, register: register))
                word += 1
            case .random(let modulus):
                state.expressions.append(.randomNumber(modulus: modulus, register: register))
                if interval { state.expressions.append(.byteorder(source: register, destination: register, op: L.byteorderToNetwork, length: 4, size: 4)) }
                word += 1
            }
        }
    }

    private func testBits(_ load: WireExpression, _ bits: UInt32, into state: inout State) {
        state.expressions += [load,
                              .bitwise(source: 1, destination: 1, length: 4, mask: littleEndian(bits), xor: littleEndian(0)),
                              .compare(op: L.compareNotEqual, register: 1, data: littleEndian(0))]
    }

    private func owner(_ key: UInt32, _ ids: Set<UInt32>, negated: Bool, into state: inout State) {
        state.expressions.append(.metaLoad(key: key, register: 1))
        if ids.count == 1 {
            state.expressions.append(.compare(op: negated ? L.compareNotEqual : L.compareEqual, register: 1, data: littleEndian(ids.first!)))
        } else {
            // nft's uid/gid types (TYPE_UID 24, TYPE_GID 25) are host-order integers of 4 bytes.
            let set = WireSet(name: "", flags: WireSet.anonymousFlag | WireSet.constantFlag, keyType: key == L.metaSocketUser ? 24 : 25, keyLength: 4,
                              userdata: L.lookupSetUserdata(byteOrder: SetUserdata.byteOrderHost, typeof: .meta(key), interval: false),
                              elements: ids.map { WireElement(key: littleEndian($0)) })
            state.expressions.append(.lookup(set: .anonymous(set), source: 1, destination: nil, inverted: negated))
        }
    }

    private func addressOffset(_ direction: PacketDirection, _ family: IPFamily) -> UInt32 {
        switch (family, direction) {
        case (.ipv4, .source): 12
        case (.ipv4, .destination): 16
        case (.ipv6, .source): 8
        case (.ipv6, .destination): 24
        }
    }

    private func natFamily(_ family: IPFamily) -> UInt32 { family == .ipv4 ? L.nfprotoIPv4 : L.nfprotoIPv6 }

    private func littleEndian(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}
