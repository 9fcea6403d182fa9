import CNetfilter
import Glibc

/// Reads one nf_tables table back from the kernel as a `WireTable`: chains, rules, sets and the
/// elements of every set that is not dynamic.
///
/// Costs one dump per object kind plus one per set; at 10,000 services that is tens of
/// milliseconds, so callers that already know the table is unchanged (same ruleset generation)
/// should not read it (linux-pitfalls.md: do not diff full listings at scale).
public enum TableReader {
    /// The table, or `nil` when it does not exist. Throws `NetlinkError` (EPERM without CAP_NET_ADMIN).
    public static func read(family: UInt32, name: String, from socket: NetfilterSocket) throws(NetlinkError) -> WireTable? {
        guard try socket.tableExists(family: family, name: name) else { return nil }

        var chains: [String: WireChain] = [:]
        try socket.request(NFT_MSG_GETCHAIN, family: family, flags: NLM_F_DUMP, "list chains of \(name)", build: { header in
            let chain = nftnl_chain_alloc()!
            defer { nftnl_chain_free(chain) }
            nftnl_chain_set_str(chain, attribute(NFTNL_CHAIN_TABLE), name)
            nftnl_chain_nlmsg_build_payload(header, chain)
        }, handle: { header in
            let object = nftnl_chain_alloc()!
            defer { nftnl_chain_free(object) }
            guard nftnl_chain_nlmsg_parse(header, object) >= 0 else { return }
            let decoded = ObjectDecoding.chain(object)
            if decoded.table == name { chains[decoded.name] = decoded.chain }
        })

        var rules: [(chain: String, rule: WireRule)] = []
        try socket.request(NFT_MSG_GETRULE, family: family, flags: NLM_F_DUMP, "list rules of \(name)", build: { header in
            let rule = nftnl_rule_alloc()!
            defer { nftnl_rule_free(rule) }
            nftnl_rule_set_str(rule, attribute(NFTNL_RULE_TABLE), name)
            nftnl_rule_nlmsg_build_payload(header, rule)
        }, handle: { header in
            let object = nftnl_rule_alloc()!
            defer { nftnl_rule_free(object) }
            guard nftnl_rule_nlmsg_parse(header, object) >= 0 else { return }
            let decoded = ObjectDecoding.rule(object)
            if decoded.table == name { rules.append((decoded.chain, decoded.rule)) }
        })

        var sets: [String: WireSet] = [:]
        try socket.request(NFT_MSG_GETSET, family: family, flags: NLM_F_DUMP, "list sets of \(name)", build: { header in
            let set = nftnl_set_alloc()!
            defer { nftnl_set_free(set) }
            nftnl_set_set_str(set, attribute(NFTNL_SET_TABLE), name)
            nftnl_set_nlmsg_build_payload(header, set)
        }, handle: { header in
            let object = nftnl_set_alloc()!
            defer { nftnl_set_free(object) }
            guard nftnl_set_nlmsg_parse(header, object) >= 0 else { return }
            let decoded = ObjectDecoding.set(object)
            if decoded.table == name { sets[decoded.set.name] = decoded.set }
        })

        for (setName, set) in sets where !set.isDynamic {
            var elements: [WireElement] = []
            try socket.request(NFT_MSG_GETSETELEM, family: family, flags: NLM_F_DUMP, "list elements of set \(setName)", build: { header in
                let object = nftnl_set_alloc()!
                defer { nftnl_set_free(object) }
                nftnl_set_set_str(object, attribute(NFTNL_SET_TABLE), name)
                nftnl_set_set_str(object, attribute(NFTNL_SET_NAME), setName)
                nftnl_set_set_u32(object, attribute(NFTNL_SET_FAMILY), family)
                nftnl_set_elems_nlmsg_build_payload(header, object)
            }, handle: { header in
                let object = nftnl_set_alloc()!
                defer { nftnl_set_free(object) }
                guard nftnl_set_elems_nlmsg_parse(header, object) >= 0 else { return }
                elements += ObjectDecoding.elements(object)
            })
            sets[setName]?.elements = elements.sorted()
        }

        // Rules own their anonymous sets: compare those by content, as the encoder wrote them.
        for (chainName, rule) in rules {
            var resolved = rule
            resolved.expressions = rule.expressions.map { expression in
                guard case .lookup(.named(let setName), let source, let destination, let inverted) = expression,
                      let set = sets[setName], set.isAnonymous else { return expression }
                var anonymous = set
                anonymous.name = ""
                return .lookup(set: .anonymous(anonymous), source: source, destination: destination, inverted: inverted)
            }
            chains[chainName, default: WireChain(name: chainName, hook: nil, rules: [])].rules.append(resolved)
        }
        return WireTable(family: family, name: name,
                         chains: chains.values.sorted { $0.name < $1.name },
                         sets: sets.values.filter { !$0.isAnonymous }.sorted { $0.name < $1.name })
    }
}

extension NetfilterSocket {
    /// Whether `family name` exists (one `GETTABLE`, no dump).
    public func tableExists(family: UInt32, name: String) throws(NetlinkError) -> Bool {
        do throws(NetlinkError) {
            try request(NFT_MSG_GETTABLE, family: family, flags: 0, "read table \(ObjectEncoding.familyName(family)) \(name)", build: { header in
                let table = nftnl_table_alloc()!
                defer { nftnl_table_free(table) }
                nftnl_table_set_str(table, attribute(NFTNL_TABLE_NAME), name)
                nftnl_table_nlmsg_build_payload(header, table)
            }, handle: { _ in })
            return true
        } catch where error.errno == ENOENT {
            return false
        }
    }
}
