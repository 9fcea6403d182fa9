import TurnoutModel

/// Compiles a service table into iptables rules for one family, in kube-proxy's layout.
///
/// iptables has no maps, so dispatch is a list: `TURNOUT-SERVICES` holds one rule per frontend,
/// each jumping to a `TURNOUT-SVC-…` chain that walks a cascade of `statistic` matches with
/// probability wᵢ / Σⱼ≥ᵢ wⱼ into `TURNOUT-SEP-…` endpoint chains. This backend exists for hosts
/// that must stay on iptables; its per-packet cost grows with the table, the nftables one's does not.
///
/// Turnout only appends jump rules to built-in chains and owns every `TURNOUT-` chain; names stay
/// within iptables' 28 characters. Hairpin traffic is masqueraded through a mark bit of its own.
public enum IptablesServiceCompiler {
    public static let chainPrefix = "TURNOUT-"
    public static let servicesChain = "TURNOUT-SERVICES"
    public static let postroutingChain = "TURNOUT-POSTROUTING"
    public static let markMasqueradeChain = "TURNOUT-MARK-MASQ"
    public static let noEndpointsChain = "TURNOUT-NO-ENDPOINTS"
    public static let serviceChainPrefix = "TURNOUT-SVC-"
    public static let endpointChainPrefix = "TURNOUT-SEP-"
    /// Longest chain name iptables accepts (XT_EXTENSION_MAXNAMELEN - 1).
    public static let maximumChainNameLength = 28
    /// The mark bit that asks POSTROUTING to masquerade. Not kube-proxy's 0x4000, so both can coexist.
    public static let masqueradeMark: UInt32 = 0x0040_0000

    /// Where Turnout jumps from iptables' built-in chains: (table, chain, target, only new connections).
    public static let builtinJumps: [(table: String, chain: String, hook: Hook, target: String, onlyNew: Bool)] = [
        ("nat", "PREROUTING", .prerouting, servicesChain, false),
        ("nat", "OUTPUT", .output, servicesChain, false),
        ("nat", "POSTROUTING", .postrouting, postroutingChain, false),
        ("filter", "INPUT", .input, noEndpointsChain, true),
        ("filter", "FORWARD", .forward, noEndpointsChain, true),
        ("filter", "OUTPUT", .output, noEndpointsChain, true),
    ]

    /// iptables' fixed priorities for the built-in chains of `nat` and `filter`.
    static func builtinPriority(table: String, hook: Hook) -> Int32 {
        guard table == "nat" else { return 0 }
        return hook == .prerouting || hook == .output ? -100 : 100
    }

    /// The `nat` and `filter` tables for `family`; frontends of the other family are left out.
    public static func compile(_ table: ServiceTable, family: IPFamily, options: ServiceCompilerOptions = ServiceCompilerOptions()) -> [RuleTable] {
        let tableFamily: TableFamily = family == .ipv4 ? .ip : .ip6
        var services: [Rule] = [], noEndpoints: [Rule] = []
        var serviceChains: [Chain] = [], endpointChains: [Chain] = []
        // `recent` lists, declared like timed sets so the tracer and both renderers read them alike.
        var affinitySets: [NamedSet] = []

        for frontend in Frontend.all(in: table) where frontend.family == family {
            let match = frontendMatch(frontend)
            guard let pick = WeightedPick(service: frontend.service, port: frontend.port, family: family) else {
                let reject: RejectKind = frontend.port.transport == .tcp ? .tcpReset : .portUnreachable
                noEndpoints.append(Rule(match, [.reject(reject)], comment: "\(frontend.label) has no endpoints"))
                continue
            }
            if options.mode == .proxy && frontend.port.transport == .tcp {
                services.append(Rule(match, [.redirect(port: options.proxyPort)], comment: "\(frontend.label) to proxy"))
                continue
            }
            let identity = "\(frontend.service.name)/\(frontend.port.transport)/\(frontend.port.port)@\(frontend.address)"
            let serviceChain = serviceChainPrefix + StableHash.base32(identity, length: 16)
            services.append(Rule(match, [.verdict(.jump(serviceChain))], comment: frontend.label))

            var affinityChecks: [Rule] = [], cascade: [Rule] = []
            for (slot, probability) in pick.cascade {
                let endpointChain = endpointChainPrefix + StableHash.base32("\(identity)__\(slot.target)", length: 16)
                let client: [KeyField] = [.address(.source, family)]
                var dnatRule = Rule([.transport([frontend.port.transport])], [.dnat(slot.target)])
                if let affinity = frontend.service.affinity {
                    affinitySets.append(NamedSet(name: endpointChain, key: client, timeoutSeconds: affinity.timeoutSeconds))
                    // `recent` lists are named after the endpoint chain, as kube-proxy names them.
                    affinityChecks.append(Rule([.lookup(client, set: endpointChain, negated: false)], [.verdict(.jump(endpointChain))],
                                               comment: "\(frontend.label) -> \(slot.target) (affinity)"))
                    dnatRule.statements.insert(.updateSet(client, set: endpointChain), at: 0)
                }
                cascade.append(Rule(probability.map { [.probability($0)] } ?? [], [.verdict(.jump(endpointChain))],
                                    comment: "\(frontend.label) -> \(slot.target)"))
                endpointChains.append(Chain(name: endpointChain, rules: [
                    Rule([.addresses(.source, [IPPrefix(host: slot.target.address)], negated: false)],
                         [.verdict(.jump(markMasqueradeChain))], comment: "hairpin"),
                    dnatRule,
                ]))
            }
            serviceChains.append(Chain(name: serviceChain, rules: affinityChecks + cascade))
        }

        var natChains = builtinJumps.filter { $0.table == "nat" }.map { jump in
            builtinChain(jump)
        }
        natChains.append(Chain(name: servicesChain, rules: services))
        natChains.append(Chain(name: postroutingChain, rules: [
            Rule([.markBits(masqueradeMark, negated: true)], [.verdict(.return)]),
            Rule([], [.xorMark(masqueradeMark)]),
            Rule([], [.masquerade], comment: "hairpin: a client reaching itself through a service"),
        ]))
        natChains.append(Chain(name: markMasqueradeChain, rules: [Rule([], [.orMark(masqueradeMark)])]))
        natChains += serviceChains + endpointChains

        var filterChains = builtinJumps.filter { $0.table == "filter" }.map { jump in
            builtinChain(jump)
        }
        filterChains.append(Chain(name: noEndpointsChain, rules: noEndpoints))

        return [
            RuleTable(name: "nat", family: tableFamily, sets: affinitySets, chains: natChains),
            RuleTable(name: "filter", family: tableFamily, chains: filterChains),
        ]
    }

    private static func builtinChain(_ jump: (table: String, chain: String, hook: Hook, target: String, onlyNew: Bool)) -> Chain {
        let type: ChainType = jump.table == "nat" ? .nat : .filter
        return Chain(name: jump.chain,
                     base: BaseChainSpec(type: type, hook: jump.hook, priority: builtinPriority(table: jump.table, hook: jump.hook)),
                     isBuiltin: true,
                     rules: [Rule(jump.onlyNew ? [.connectionState([.new])] : [], [.verdict(.jump(jump.target))], comment: "turnout")])
    }

    private static func frontendMatch(_ frontend: Frontend) -> [Match] {
        [.addresses(.destination, [IPPrefix(host: frontend.address)], negated: false),
         .transport([frontend.port.transport]),
         .port(.destination, frontend.port.port)]
    }
}
