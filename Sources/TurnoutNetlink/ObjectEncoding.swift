import CNetfilter
import Glibc

/// Writes wire values into a batch as libnftnl objects: one function per nf_tables message kind.
///
/// Every function allocates its libnftnl objects, serialises them into the batch and frees them
/// before returning; nothing libnftnl-owned outlives a call.
enum ObjectEncoding {
    /// Element lists are split so each `NEWSETELEM` stays far below netlink's 64 KiB attribute
    /// limit (the element list is one nested attribute with a 16-bit length).
    static let elementBytesPerMessage = 32 * 1024

    static func addTable(_ batch: NetlinkBatch, family: UInt32, name: String) {
        tableMessage(batch, NFT_MSG_NEWTABLE, flags: NLM_F_CREATE, family: family, name: name, "add table")
    }

    static func deleteTable(_ batch: NetlinkBatch, family: UInt32, name: String) {
        tableMessage(batch, NFT_MSG_DELTABLE, flags: 0, family: family, name: name, "delete table")
    }

    private static func tableMessage(_ batch: NetlinkBatch, _ type: nf_tables_msg_types, flags: Int32, family: UInt32,
                                     name: String, _ verb: String) {
        let table = nftnl_table_alloc()!
        defer { nftnl_table_free(table) }
        nftnl_table_set_str(table, attribute(NFTNL_TABLE_NAME), name)
        nftnl_table_set_u32(table, attribute(NFTNL_TABLE_FAMILY), family)
        batch.append(type, family: family, flags: flags, "\(verb) \(familyName(family)) \(name)") {
            nftnl_table_nlmsg_build_payload($0, table)
        }
    }

    static func addChain(_ batch: NetlinkBatch, family: UInt32, table: String, _ chain: WireChain) {
        let object = chainObject(family: family, table: table, name: chain.name)
        defer { nftnl_chain_free(object) }
        if let hook = chain.hook {
            nftnl_chain_set_u32(object, attribute(NFTNL_CHAIN_HOOKNUM), hook.hook)
            nftnl_chain_set_s32(object, attribute(NFTNL_CHAIN_PRIO), hook.priority)
            nftnl_chain_set_str(object, attribute(NFTNL_CHAIN_TYPE), hook.type)
            nftnl_chain_set_u32(object, attribute(NFTNL_CHAIN_POLICY), hook.policy)
        }
        batch.append(NFT_MSG_NEWCHAIN, family: family, flags: NLM_F_CREATE, "add chain \(familyName(family)) \(table) \(chain.name)") {
            nftnl_chain_nlmsg_build_payload($0, object)
        }
    }

    static func deleteChain(_ batch: NetlinkBatch, family: UInt32, table: String, name: String) {
        let object = chainObject(family: family, table: table, name: name)
        defer { nftnl_chain_free(object) }
        batch.append(NFT_MSG_DELCHAIN, family: family, flags: 0, "delete chain \(familyName(family)) \(table) \(name)") {
            nftnl_chain_nlmsg_build_payload($0, object)
        }
    }

    private static func chainObject(family: UInt32, table: String, name: String) -> OpaquePointer {
        let object = nftnl_chain_alloc()!
        nftnl_chain_set_str(object, attribute(NFTNL_CHAIN_TABLE), table)
        nftnl_chain_set_str(object, attribute(NFTNL_CHAIN_NAME), name)
        nftnl_chain_set_u32(object, attribute(NFTNL_CHAIN_FAMILY), family)
        return object
    }

    /// Deletes every rule of a chain (`DELRULE` naming only the chain), keeping the chain.
    static func flushChain(_ batch: NetlinkBatch, family: UInt32, table: String, name: String) {
        let rule = nftnl_rule_alloc()!
        defer { nftnl_rule_free(rule) }
        nftnl_rule_set_u32(rule, attribute(NFTNL_RULE_FAMILY), family)
        nftnl_rule_set_str(rule, attribute(NFTNL_RULE_TABLE), table)
        nftnl_rule_set_str(rule, attribute(NFTNL_RULE_CHAIN), name)
        batch.append(NFT_MSG_DELRULE, family: family, flags: 0, "flush chain \(familyName(family)) \(table) \(name)") {
            nftnl_rule_nlmsg_build_payload($0, rule)
        }
    }

    /// Appends a rule; anonymous sets it looks up are created just before it, in the same batch.
    static func addRule(_ batch: NetlinkBatch, family: UInt32, table: String, chain: String, _ rule: WireRule, index: Int) {
        var expressions: [OpaquePointer] = []
        for expression in rule.expressions {
            var anonymousID: UInt32?
            if case .lookup(.anonymous(let set), _, _, _) = expression {
                let id = batch.makeSetID()
                addSet(batch, family: family, table: table, set, id: id, purpose: "rule \(index + 1) of chain \(chain)")
                anonymousID = id
            }
            expressions.append(encode(expression, anonymousSetID: anonymousID))
        }
        let object = nftnl_rule_alloc()!
        defer { nftnl_rule_free(object) }  // frees the expressions it owns
        nftnl_rule_set_u32(object, attribute(NFTNL_RULE_FAMILY), family)
        nftnl_rule_set_str(object, attribute(NFTNL_RULE_TABLE), table)
        nftnl_rule_set_str(object, attribute(NFTNL_RULE_CHAIN), chain)
        if !rule.userdata.isEmpty {
            rule.userdata.withUnsafeBytes { raw in
                _ = nftnl_rule_set_data(object, attribute(NFTNL_RULE_USERDATA), raw.baseAddress, UInt32(raw.count))
            }
        }
        for expression in expressions { nftnl_rule_add_expr(object, expression) }
        batch.append(NFT_MSG_NEWRULE, family: family, flags: NLM_F_CREATE | NLM_F_APPEND,
                     "add rule \(index + 1) to chain \(familyName(family)) \(table) \(chain)") {
            nftnl_rule_nlmsg_build_payload($0, object)
        }
    }

    /// Creates a set and fills it. Named sets are found by name by later messages; anonymous ones
    /// (`__set%d`, named by the kernel) by `id`.
    /// Adds `set`, and its elements unless `withElements` is false (the caller adds them later
    /// with `addElements`, after the rules that bind the set: see `TableDelta.append`).
    static func addSet(_ batch: NetlinkBatch, family: UInt32, table: String, _ set: WireSet, id: UInt32, purpose: String? = nil,
                       withElements: Bool = true) {
        let name = set.isAnonymous ? (set.isMap ? "__map%d" : "__set%d") : set.name
        let label = set.isAnonymous ? "anonymous \(set.isMap ? "map" : "set") of \(purpose ?? "a rule")" : "\(set.isMap ? "map" : "set") \(set.name)"
        let object = setObject(family: family, table: table, name: name, id: id)
        defer { nftnl_set_free(object) }
        nftnl_set_set_u32(object, attribute(NFTNL_SET_FLAGS), set.flags)
        nftnl_set_set_u32(object, attribute(NFTNL_SET_KEY_TYPE), set.keyType)
        nftnl_set_set_u32(object, attribute(NFTNL_SET_KEY_LEN), set.keyLength)
        if let dataType = set.dataType { nftnl_set_set_u32(object, attribute(NFTNL_SET_DATA_TYPE), dataType) }
        if let dataLength = set.dataLength { nftnl_set_set_u32(object, attribute(NFTNL_SET_DATA_LEN), dataLength) }
        if let timeout = set.timeoutMilliseconds { nftnl_set_set_u64(object, attribute(NFTNL_SET_TIMEOUT), timeout) }
        if set.isAnonymous {
            nftnl_set_set_u32(object, attribute(NFTNL_SET_DESC_SIZE), UInt32(set.elements.count))
        } else if let capacity = set.capacity {
            nftnl_set_set_u32(object, attribute(NFTNL_SET_DESC_SIZE), capacity)
        }
        if !set.concatFieldLengths.isEmpty {
            set.concatFieldLengths.withUnsafeBytes { raw in
                _ = nftnl_set_set_data(object, attribute(NFTNL_SET_DESC_CONCAT), raw.baseAddress, UInt32(raw.count))
            }
        }
        if !set.userdata.isEmpty {
            set.userdata.withUnsafeBytes { raw in
                _ = nftnl_set_set_data(object, attribute(NFTNL_SET_USERDATA), raw.baseAddress, UInt32(raw.count))
            }
        }
        batch.append(NFT_MSG_NEWSET, family: family, flags: NLM_F_CREATE, "add \(label) to \(familyName(family)) \(table)") {
            nftnl_set_nlmsg_build_payload($0, object)
        }
        guard withElements else { return }
        elementMessages(batch, NFT_MSG_NEWSETELEM, family: family, table: table, setName: name, setID: id,
                        set.elements, label: "add elements to \(label)")
    }

    static func deleteSet(_ batch: NetlinkBatch, family: UInt32, table: String, name: String) {
        let object = setObject(family: family, table: table, name: name, id: nil)
        defer { nftnl_set_free(object) }
        batch.append(NFT_MSG_DELSET, family: family, flags: 0, "delete set \(familyName(family)) \(table) \(name)") {
            nftnl_set_nlmsg_build_payload($0, object)
        }
    }

    static func addElements(_ batch: NetlinkBatch, family: UInt32, table: String, set: String, _ elements: [WireElement]) {
        elementMessages(batch, NFT_MSG_NEWSETELEM, family: family, table: table, setName: set, setID: nil, elements,
                        label: "add elements to set \(set)")
    }

    static func deleteElements(_ batch: NetlinkBatch, family: UInt32, table: String, set: String, _ elements: [WireElement]) {
        elementMessages(batch, NFT_MSG_DELSETELEM, family: family, table: table, setName: set, setID: nil, elements,
                        label: "delete elements from set \(set)")
    }

    private static func setObject(family: UInt32, table: String, name: String, id: UInt32?) -> OpaquePointer {
        let object = nftnl_set_alloc()!
        nftnl_set_set_str(object, attribute(NFTNL_SET_TABLE), table)
        nftnl_set_set_str(object, attribute(NFTNL_SET_NAME), name)
        nftnl_set_set_u32(object, attribute(NFTNL_SET_FAMILY), family)
        if let id { nftnl_set_set_u32(object, attribute(NFTNL_SET_ID), id) }
        return object
    }

    /// Splits elements into messages of at most `elementBytesPerMessage` estimated bytes each.
    private static func elementMessages(_ batch: NetlinkBatch, _ type: nf_tables_msg_types, family: UInt32, table: String,
                                        setName: String, setID: UInt32?, _ elements: [WireElement], label: String) {
        var start = 0
        while start < elements.count {
            var end = start
            var bytes = 0
            while end < elements.count && (end == start || bytes + estimatedSize(elements[end]) <= elementBytesPerMessage) {
                bytes += estimatedSize(elements[end])
                end += 1
            }
            let object = setObject(family: family, table: table, name: setName, id: setID)
            defer { nftnl_set_free(object) }
            for element in elements[start..<end] { nftnl_set_elem_add(object, encode(element)) }
            let range = elements.count > end - start ? " (\(start + 1)–\(end) of \(elements.count))" : ""
            batch.append(type, family: family, flags: type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, label + range) {
                nftnl_set_elems_nlmsg_build_payload($0, object)
            }
            start = end
        }
    }

    /// An upper bound of an element's netlink size: attribute headers and padding included.
    private static func estimatedSize(_ element: WireElement) -> Int {
        func padded(_ count: Int) -> Int { (count + 3) & ~3 }
        var size = 8 + 8 + padded(element.key.count) + 8
        if let keyEnd = element.keyEnd { size += 8 + padded(keyEnd.count) }
        if let data = element.data { size += 8 + padded(data.count) }
        if let verdict = element.verdict { size += 24 + padded((verdict.chain?.utf8.count ?? 0) + 1) }
        return size
    }

    private static func encode(_ element: WireElement) -> OpaquePointer {
        let object = nftnl_set_elem_alloc()!
        element.key.withUnsafeBytes { _ = nftnl_set_elem_set(object, attribute(NFTNL_SET_ELEM_KEY), $0.baseAddress, UInt32($0.count)) }
        if let keyEnd = element.keyEnd {
            keyEnd.withUnsafeBytes { _ = nftnl_set_elem_set(object, attribute(NFTNL_SET_ELEM_KEY_END), $0.baseAddress, UInt32($0.count)) }
        }
        if element.isIntervalEnd { nftnl_set_elem_set_u32(object, attribute(NFTNL_SET_ELEM_FLAGS), NFT_SET_ELEM_INTERVAL_END.rawValue) }
        if let data = element.data {
            data.withUnsafeBytes { _ = nftnl_set_elem_set(object, attribute(NFTNL_SET_ELEM_DATA), $0.baseAddress, UInt32($0.count)) }
        }
        if let verdict = element.verdict {
            nftnl_set_elem_set_u32(object, attribute(NFTNL_SET_ELEM_VERDICT), UInt32(bitPattern: verdict.code))
            if let chain = verdict.chain { nftnl_set_elem_set_str(object, attribute(NFTNL_SET_ELEM_CHAIN), chain) }
        }
        return object
    }

    private static func encode(_ expression: WireExpression, anonymousSetID: UInt32?) -> OpaquePointer {
        func make(_ name: String, _ configure: (OpaquePointer) -> Void) -> OpaquePointer {
            let object = nftnl_expr_alloc(name)!
            configure(object)
            return object
        }
        func setBytes(_ object: OpaquePointer, _ key: Int, _ bytes: [UInt8]) {
            bytes.withUnsafeBytes { _ = nftnl_expr_set(object, attribute(key), $0.baseAddress, UInt32($0.count)) }
        }
        switch expression {
        case .metaLoad(let key, let register):
            return make("meta") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_META_KEY), key)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_META_DREG), register)
            }
        case .metaSet(let key, let register):
            return make("meta") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_META_KEY), key)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_META_SREG), register)
            }
        case .payload(let base, let offset, let length, let register):
            return make("payload") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_PAYLOAD_BASE), base)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_PAYLOAD_OFFSET), offset)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_PAYLOAD_LEN), length)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_PAYLOAD_DREG), register)
            }
        case .compare(let op, let register, let data):
            return make("cmp") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_CMP_SREG), register)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_CMP_OP), op)
                setBytes($0, NFTNL_EXPR_CMP_DATA, data)
            }
        case .bitwise(let source, let destination, let length, let mask, let xor):
            return make("bitwise") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_BITWISE_SREG), source)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_BITWISE_DREG), destination)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_BITWISE_LEN), length)
                setBytes($0, NFTNL_EXPR_BITWISE_MASK, mask)
                setBytes($0, NFTNL_EXPR_BITWISE_XOR, xor)
            }
        case .byteorder(let source, let destination, let op, let length, let size):
            return make("byteorder") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_BYTEORDER_SREG), source)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_BYTEORDER_DREG), destination)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_BYTEORDER_OP), op)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_BYTEORDER_LEN), length)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_BYTEORDER_SIZE), size)
            }
        case .conntrack(let key, let register):
            return make("ct") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_CT_KEY), key)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_CT_DREG), register)
            }
        case .lookup(let set, let source, let destination, let inverted):
            return make("lookup") {
                switch set {
                case .named(let name): nftnl_expr_set_str($0, attribute(NFTNL_EXPR_LOOKUP_SET), name)
                case .anonymous(let anonymous):
                    nftnl_expr_set_str($0, attribute(NFTNL_EXPR_LOOKUP_SET), anonymous.isMap ? "__map%d" : "__set%d")
                    nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_LOOKUP_SET_ID), anonymousSetID!)
                }
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_LOOKUP_SREG), source)
                if let destination { nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_LOOKUP_DREG), destination) }
                if inverted { nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_LOOKUP_FLAGS), NFT_LOOKUP_F_INV.rawValue) }
            }
        case .dynsetUpdate(let set, let source):
            return make("dynset") {
                nftnl_expr_set_str($0, attribute(NFTNL_EXPR_DYNSET_SET_NAME), set)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_DYNSET_OP), NFT_DYNSET_OP_UPDATE.rawValue)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_DYNSET_SREG_KEY), source)
            }
        case .randomNumber(let modulus, let register):
            return make("numgen") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NG_DREG), register)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NG_MODULUS), modulus)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NG_TYPE), NFT_NG_RANDOM.rawValue)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NG_OFFSET), 0)
            }
        case .nat(let type, let family, let addressRegister, let portRegister, let flags):
            return make("nat") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NAT_TYPE), type)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NAT_FAMILY), family)
                if let addressRegister { nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NAT_REG_ADDR_MIN), addressRegister) }
                if let portRegister { nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NAT_REG_PROTO_MIN), portRegister) }
                if flags != 0 { nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_NAT_FLAGS), flags) }
            }
        case .redirect(let portRegister, let flags):
            return make("redir") {
                if let portRegister { nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_REDIR_REG_PROTO_MIN), portRegister) }
                if flags != 0 { nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_REDIR_FLAGS), flags) }
            }
        case .masquerade:
            return make("masq") { _ in }
        case .reject(let type, let code):
            return make("reject") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_REJECT_TYPE), type)
                nftnl_expr_set_u8($0, attribute(NFTNL_EXPR_REJECT_CODE), UInt8(code))
            }
        case .immediateData(let register, let data):
            return make("immediate") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_IMM_DREG), register)
                setBytes($0, NFTNL_EXPR_IMM_DATA, data)
            }
        case .immediateVerdict(let verdict):
            return make("immediate") {
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_IMM_DREG), Register.verdict)
                nftnl_expr_set_u32($0, attribute(NFTNL_EXPR_IMM_VERDICT), UInt32(bitPattern: verdict.code))
                if let chain = verdict.chain { nftnl_expr_set_str($0, attribute(NFTNL_EXPR_IMM_CHAIN), chain) }
            }
        case .counter:
            return make("counter") { _ in }
        case .unknown(let name):
            preconditionFailure("cannot encode an expression read from the kernel that Turnout does not write: \(name)")
        }
    }

    static func familyName(_ family: UInt32) -> String {
        switch Int32(family) {
        case Int32(NFPROTO_INET): "inet"
        case Int32(NFPROTO_IPV4): "ip"
        case Int32(NFPROTO_IPV6): "ip6"
        default: "family-\(family)"
        }
    }
}
