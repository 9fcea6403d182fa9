import CNetfilter

/// Reads libnftnl objects parsed from a dump back into wire values: the inverse of
/// `ObjectEncoding`, attribute for attribute, so an undrifted table reads back equal.
enum ObjectDecoding {
    static func chain(_ object: OpaquePointer) -> (name: String, table: String, chain: WireChain) {
        let name = String(cString: nftnl_chain_get_str(object, attribute(NFTNL_CHAIN_NAME)))
        let table = String(cString: nftnl_chain_get_str(object, attribute(NFTNL_CHAIN_TABLE)))
        var hook: WireHook?
        if nftnl_chain_is_set(object, attribute(NFTNL_CHAIN_HOOKNUM)) {
            hook = WireHook(type: nftnl_chain_get_str(object, attribute(NFTNL_CHAIN_TYPE)).map { String(cString: $0) } ?? "filter",
                            hook: nftnl_chain_get_u32(object, attribute(NFTNL_CHAIN_HOOKNUM)),
                            priority: nftnl_chain_get_s32(object, attribute(NFTNL_CHAIN_PRIO)),
                            policy: nftnl_chain_get_u32(object, attribute(NFTNL_CHAIN_POLICY)))
        }
        return (name, table, WireChain(name: name, hook: hook, rules: []))
    }

    /// A rule's chain and its expressions; anonymous set lookups are still `.named("__set3")`,
    /// for the reader to resolve once it has the sets.
    static func rule(_ object: OpaquePointer) -> (table: String, chain: String, rule: WireRule) {
        let table = String(cString: nftnl_rule_get_str(object, attribute(NFTNL_RULE_TABLE)))
        let chain = String(cString: nftnl_rule_get_str(object, attribute(NFTNL_RULE_CHAIN)))
        var length: UInt32 = 0
        let userdata = nftnl_rule_is_set(object, attribute(NFTNL_RULE_USERDATA))
            ? [UInt8](pointer: nftnl_rule_get_data(object, attribute(NFTNL_RULE_USERDATA), &length), count: length) : []
        var expressions: [WireExpression] = []
        let iterator = nftnl_expr_iter_create(object)!
        defer { nftnl_expr_iter_destroy(iterator) }
        while let expression = nftnl_expr_iter_next(iterator) { expressions.append(decode(expression)) }
        return (table, chain, WireRule(expressions, userdata: userdata))
    }

    static func set(_ object: OpaquePointer) -> (table: String, set: WireSet) {
        func u32(_ key: nftnl_set_attr) -> UInt32? {
            nftnl_set_is_set(object, attribute(key)) ? nftnl_set_get_u32(object, attribute(key)) : nil
        }
        func bytes(_ key: nftnl_set_attr) -> [UInt8] {
            guard nftnl_set_is_set(object, attribute(key)) else { return [] }
            var length: UInt32 = 0
            return [UInt8](pointer: nftnl_set_get_data(object, attribute(key), &length), count: length)
        }
        let table = String(cString: nftnl_set_get_str(object, attribute(NFTNL_SET_TABLE)))
        let flags = u32(NFTNL_SET_FLAGS) ?? 0
        let set = WireSet(
            name: String(cString: nftnl_set_get_str(object, attribute(NFTNL_SET_NAME))),
            flags: flags,
            keyType: u32(NFTNL_SET_KEY_TYPE) ?? 0,
            keyLength: u32(NFTNL_SET_KEY_LEN) ?? 0,
            dataType: flags & WireSet.mapFlag != 0 ? u32(NFTNL_SET_DATA_TYPE) : nil,
            dataLength: flags & WireSet.mapFlag != 0 && u32(NFTNL_SET_DATA_TYPE) != verdictDataType ? u32(NFTNL_SET_DATA_LEN) : nil,
            timeoutMilliseconds: nftnl_set_is_set(object, attribute(NFTNL_SET_TIMEOUT)) ? nftnl_set_get_u64(object, attribute(NFTNL_SET_TIMEOUT)) : nil,
            // Anonymous sets carry their element count, and the kernel gives a set that rules
            // fill (`update @set`) a size of its own (nft_dynset_init): neither is configuration.
            capacity: flags & (WireSet.anonymousFlag | WireSet.timeoutFlag) == 0 ? u32(NFTNL_SET_DESC_SIZE) : nil,
            concatFieldLengths: bytes(NFTNL_SET_DESC_CONCAT).filter { $0 != 0 },
            userdata: bytes(NFTNL_SET_USERDATA))
        return (table, set)
    }

    /// The kernel's `NFT_DATA_VERDICT` data type: verdict maps have no data length.
    static let verdictDataType: UInt32 = 0xffff_ff00

    static func elements(_ object: OpaquePointer) -> [WireElement] {
        var elements: [WireElement] = []
        let iterator = nftnl_set_elems_iter_create(object)!
        defer { nftnl_set_elems_iter_destroy(iterator) }
        while let element = nftnl_set_elems_iter_next(iterator) {
            func bytes(_ key: Int) -> [UInt8]? {
                guard nftnl_set_elem_is_set(element, attribute(key)) else { return nil }
                var length: UInt32 = 0
                return [UInt8](pointer: nftnl_set_elem_get(element, attribute(key), &length), count: length)
            }
            let flags = nftnl_set_elem_is_set(element, attribute(NFTNL_SET_ELEM_FLAGS)) ? nftnl_set_elem_get_u32(element, attribute(NFTNL_SET_ELEM_FLAGS)) : 0
            var verdict: WireVerdict?
            if nftnl_set_elem_is_set(element, attribute(NFTNL_SET_ELEM_VERDICT)) {
                let chain = nftnl_set_elem_is_set(element, attribute(NFTNL_SET_ELEM_CHAIN))
                    ? String(cString: nftnl_set_elem_get_str(element, attribute(NFTNL_SET_ELEM_CHAIN))) : nil
                verdict = WireVerdict(code: Int32(bitPattern: nftnl_set_elem_get_u32(element, attribute(NFTNL_SET_ELEM_VERDICT))), chain: chain)
            }
            elements.append(WireElement(key: bytes(NFTNL_SET_ELEM_KEY) ?? [], keyEnd: bytes(NFTNL_SET_ELEM_KEY_END),
                                        isIntervalEnd: flags & NFT_SET_ELEM_INTERVAL_END.rawValue != 0,
                                        data: bytes(NFTNL_SET_ELEM_DATA), verdict: verdict))
        }
        return elements
    }

    private static func decode(_ object: OpaquePointer) -> WireExpression {
        let name = String(cString: nftnl_expr_get_str(object, attribute(NFTNL_EXPR_NAME)))
        func has(_ key: Int) -> Bool { nftnl_expr_is_set(object, attribute(key)) }
        func u32(_ key: Int) -> UInt32 { nftnl_expr_get_u32(object, attribute(key)) }
        func optionalU32(_ key: Int) -> UInt32? { has(key) ? u32(key) : nil }
        func bytes(_ key: Int) -> [UInt8] {
            var length: UInt32 = 0
            return has(key) ? [UInt8](pointer: nftnl_expr_get(object, attribute(key), &length), count: length) : []
        }
        func string(_ key: Int) -> String { has(key) ? String(cString: nftnl_expr_get_str(object, attribute(key))) : "" }
        switch name {
        case "meta":
            return has(NFTNL_EXPR_META_SREG)
                ? .metaSet(key: u32(NFTNL_EXPR_META_KEY), register: u32(NFTNL_EXPR_META_SREG))
                : .metaLoad(key: u32(NFTNL_EXPR_META_KEY), register: u32(NFTNL_EXPR_META_DREG))
        case "payload" where !has(NFTNL_EXPR_PAYLOAD_SREG):
            return .payload(base: u32(NFTNL_EXPR_PAYLOAD_BASE), offset: u32(NFTNL_EXPR_PAYLOAD_OFFSET),
                            length: u32(NFTNL_EXPR_PAYLOAD_LEN), register: u32(NFTNL_EXPR_PAYLOAD_DREG))
        case "cmp":
            return .compare(op: u32(NFTNL_EXPR_CMP_OP), register: u32(NFTNL_EXPR_CMP_SREG), data: bytes(NFTNL_EXPR_CMP_DATA))
        case "bitwise" where (optionalU32(NFTNL_EXPR_BITWISE_OP) ?? 0) == 0:
            return .bitwise(source: u32(NFTNL_EXPR_BITWISE_SREG), destination: u32(NFTNL_EXPR_BITWISE_DREG),
                            length: u32(NFTNL_EXPR_BITWISE_LEN), mask: bytes(NFTNL_EXPR_BITWISE_MASK), xor: bytes(NFTNL_EXPR_BITWISE_XOR))
        case "byteorder":
            return .byteorder(source: u32(NFTNL_EXPR_BYTEORDER_SREG), destination: u32(NFTNL_EXPR_BYTEORDER_DREG),
                              op: u32(NFTNL_EXPR_BYTEORDER_OP), length: u32(NFTNL_EXPR_BYTEORDER_LEN), size: u32(NFTNL_EXPR_BYTEORDER_SIZE))
        case "ct" where has(NFTNL_EXPR_CT_DREG) && !has(NFTNL_EXPR_CT_DIR):
            return .conntrack(key: u32(NFTNL_EXPR_CT_KEY), register: u32(NFTNL_EXPR_CT_DREG))
        case "lookup":
            return .lookup(set: .named(string(NFTNL_EXPR_LOOKUP_SET)), source: u32(NFTNL_EXPR_LOOKUP_SREG),
                           destination: optionalU32(NFTNL_EXPR_LOOKUP_DREG),
                           inverted: (optionalU32(NFTNL_EXPR_LOOKUP_FLAGS) ?? 0) & NFT_LOOKUP_F_INV.rawValue != 0)
        case "dynset" where u32(NFTNL_EXPR_DYNSET_OP) == NFT_DYNSET_OP_UPDATE.rawValue && !has(NFTNL_EXPR_DYNSET_SREG_DATA):
            return .dynsetUpdate(set: string(NFTNL_EXPR_DYNSET_SET_NAME), source: u32(NFTNL_EXPR_DYNSET_SREG_KEY))
        case "numgen" where u32(NFTNL_EXPR_NG_TYPE) == NFT_NG_RANDOM.rawValue && (optionalU32(NFTNL_EXPR_NG_OFFSET) ?? 0) == 0:
            return .randomNumber(modulus: u32(NFTNL_EXPR_NG_MODULUS), register: u32(NFTNL_EXPR_NG_DREG))
        case "nat":
            return .nat(type: u32(NFTNL_EXPR_NAT_TYPE), family: u32(NFTNL_EXPR_NAT_FAMILY),
                        addressRegister: optionalU32(NFTNL_EXPR_NAT_REG_ADDR_MIN), portRegister: optionalU32(NFTNL_EXPR_NAT_REG_PROTO_MIN),
                        flags: optionalU32(NFTNL_EXPR_NAT_FLAGS) ?? 0)
        case "redir":
            return .redirect(portRegister: optionalU32(NFTNL_EXPR_REDIR_REG_PROTO_MIN), flags: optionalU32(NFTNL_EXPR_REDIR_FLAGS) ?? 0)
        case "masq" where !has(NFTNL_EXPR_MASQ_REG_PROTO_MIN):
            return .masquerade
        case "reject":
            return .reject(type: u32(NFTNL_EXPR_REJECT_TYPE), code: UInt32(nftnl_expr_get_u8(object, attribute(NFTNL_EXPR_REJECT_CODE))))
        case "immediate" where has(NFTNL_EXPR_IMM_VERDICT):
            return .immediateVerdict(WireVerdict(code: Int32(bitPattern: u32(NFTNL_EXPR_IMM_VERDICT)),
                                                 chain: has(NFTNL_EXPR_IMM_CHAIN) ? string(NFTNL_EXPR_IMM_CHAIN) : nil))
        case "immediate":
            return .immediateData(register: u32(NFTNL_EXPR_IMM_DREG), data: bytes(NFTNL_EXPR_IMM_DATA))
        case "counter":
            return .counter
        default:
            return .unknown(name)
        }
    }
}
