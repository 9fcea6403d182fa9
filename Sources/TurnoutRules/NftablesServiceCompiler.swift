import TurnoutModel

/// Compiles a service table into Turnout's nftables table, `inet turnout`.
///
/// Per-packet cost does not grow with the table: one concatenated-key map lookup finds the
/// frontend (`ip daddr . meta l4proto . th dport vmap @service-ips4`), and one hash-map lookup
/// keyed by the frontend and `numgen random mod Σw` picks and rewrites to the endpoint (an
/// interval map only for splits too fine for one element per value; see `WeightedPick`). There is no chain per
/// service or endpoint, because chains are what make kernel commits slow (linux-pitfalls.md);
/// only services with client-IP affinity get their own chains, as in kube-proxy.
///
/// Traffic with no serving endpoint is refused in filter chains that run before NAT (priority
/// -110), with a TCP reset, so clients fail fast instead of hanging.
public enum NftablesServiceCompiler {
    public static let tableName = "turnout"

    // Chains.
    public static let servicesChain = "services"
    public static let masqueradingChain = "masquerading"
    public static let noEndpointsChain = "no-endpoints-check"
    public static let rejectChain = "reject-connection"
    public static let proxyRedirectChain = "redirect-to-proxy"
    /// `weighted-pick-N`: picks among endpoints whose reduced weights sum to N, one map element
    /// per drawn value (`endpoint-picks4/6`).
    public static let weightedPickPrefix = "weighted-pick-"
    /// `weighted-range-N`: the same for splits held as ranges (`endpoint-ranges4/6`).
    public static let weightedRangePrefix = "weighted-range-"
    public static let serviceChainPrefix = "service-"
    public static let endpointChainPrefix = "endpoint-"
    public static let affinitySetPrefix = "affinity-"

    // Sets and maps, one per family: "service-ips4", "service-ips6", ….
    public static let serviceIPsMap = "service-ips"
    public static let endpointPicksMap = "endpoint-picks"
    public static let endpointRangesMap = "endpoint-ranges"
    public static let noEndpointServicesSet = "no-endpoint-services"
    public static let hairpinSet = "hairpin-endpoints"

    /// Longest object name nftables accepts (NFT_NAME_MAXLEN - 1).
    static let maximumNameLength = 255

    /// The base chains: where Turnout hooks into netfilter. Filter chains run before DNAT (-100)
    /// so they still see the service address; POSTROUTING masquerades only hairpin connections.
    public static let baseChains: [(name: String, spec: BaseChainSpec, jumpTo: String, onlyNew: Bool)] = [
        ("nat-prerouting", BaseChainSpec(type: .nat, hook: .prerouting, priority: -100), servicesChain, false),
        ("nat-output", BaseChainSpec(type: .nat, hook: .output, priority: -100), servicesChain, false),
        ("nat-postrouting", BaseChainSpec(type: .nat, hook: .postrouting, priority: 100), masqueradingChain, false),
        ("filter-input", BaseChainSpec(type: .filter, hook: .input, priority: -110), noEndpointsChain, true),
        ("filter-forward", BaseChainSpec(type: .filter, hook: .forward, priority: -110), noEndpointsChain, true),
        ("filter-output", BaseChainSpec(type: .filter, hook: .output, priority: -110), noEndpointsChain, true),
    ]

    public static func compile(_ table: ServiceTable, options: ServiceCompilerOptions = ServiceCompilerOptions()) -> RuleTable {
        var builder = Builder(options: options)
        for frontend in Frontend.all(in: table) { builder.add(frontend) }
        return builder.finish()
    }

    static func familySuffix(_ family: IPFamily) -> String { family == .ipv4 ? "4" : "6" }

    /// `prefix + 8-char hash + readable suffix`, cut to nft's limit (the hash keeps it unique).
    ///
    /// The readable part keeps only what nft accepts in an unquoted name (letters, digits, `_ . / -`);
    /// anything else, such as the colons of an IPv6 address, becomes `.`.
    static func objectName(_ prefix: String, identity: String, readable: String) -> String {
        let safe = String(decoding: readable.utf8.map { byte in
            let allowed = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x5F || byte == 0x2E || byte == 0x2F || byte == 0x2D
            return allowed ? byte : 0x2E
        }, as: UTF8.self)
        let name = "\(prefix)\(StableHash.base32(identity, length: 8))-\(safe)"
        return String(name.prefix(maximumNameLength))
    }

    private struct Builder {
        let options: ServiceCompilerOptions
        var serviceIPs: [IPFamily: [SetElement]] = [:]
        var picks: [IPFamily: [SetElement]] = [:]
        var ranges: [IPFamily: [SetElement]] = [:]
        var noEndpoints: [IPFamily: [SetElement]] = [:]
        var hairpins: Set<IPAddress> = []
        var pickModuli: Set<UInt32> = []
        var rangeModuli: Set<UInt32> = []
        var usesProxy = false
        var extraChains: [Chain] = []
        var extraSets: [NamedSet] = []

        init(options: ServiceCompilerOptions) { self.options = options }

        mutating func add(_ frontend: Frontend) {
            let key: [KeyPart] = [.address(frontend.address), .transport(frontend.port.transport), .port(frontend.port.port)]
            guard let pick = WeightedPick(service: frontend.service, port: frontend.port, family: frontend.family) else {
                noEndpoints[frontend.family, default: []].append(SetElement(key))
                return
            }
            if options.mode == .proxy && frontend.port.transport == .tcp {
                usesProxy = true
                serviceIPs[frontend.family, default: []].append(SetElement(key, .verdict(.goto(proxyRedirectChain))))
                return
            }
            hairpins.formUnion(pick.slots.map(\.target.address))
            if let affinity = frontend.service.affinity {
                let chain = addAffinityChains(frontend, pick: pick, affinity: affinity)
                serviceIPs[frontend.family, default: []].append(SetElement(key, .verdict(.goto(chain))))
                return
            }
            let prefix = pick.usesExactSlots ? weightedPickPrefix : weightedRangePrefix
            if pick.usesExactSlots { pickModuli.insert(pick.total) } else { rangeModuli.insert(pick.total) }
            serviceIPs[frontend.family, default: []].append(SetElement(key, .verdict(.goto("\(prefix)\(pick.total)"))))
            for slot in pick.slots {
                for part in pick.keyParts(of: slot) {
                    let element = SetElement(key + [part], .socket(slot.target))
                    if pick.usesExactSlots { picks[frontend.family, default: []].append(element) } else { ranges[frontend.family, default: []].append(element) }
                }
            }
        }

        /// kube-proxy's affinity layout: a timed set of client addresses per endpoint, checked
        /// before the weighted pick and refreshed by the endpoint chain on every new connection.
        private mutating func addAffinityChains(_ frontend: Frontend, pick: WeightedPick, affinity: SessionAffinity) -> String {
            let family = frontend.family
            let readable = "\(frontend.service.name)/\(frontend.port.transport)/\(frontend.port.port)/\(family)"
            let identity = "\(readable)@\(frontend.address)"
            let serviceChain = objectName(serviceChainPrefix, identity: identity, readable: readable)
            var checks: [Rule] = []
            var ranges: [SetElement] = []
            for slot in pick.slots {
                let endpointReadable = "\(readable)__\(slot.target.address)/\(slot.target.port)"
                let endpointChain = objectName(endpointChainPrefix, identity: "\(identity)__\(slot.target)", readable: endpointReadable)
                let affinitySet = objectName(affinitySetPrefix, identity: "\(identity)__\(slot.target)", readable: endpointReadable)
                let client: [KeyField] = [.address(.source, family)]
                extraSets.append(NamedSet(name: affinitySet, key: client, timeoutSeconds: affinity.timeoutSeconds))
                checks.append(Rule([.lookup(client, set: affinitySet, negated: false)], [.verdict(.goto(endpointChain))]))
                extraChains.append(Chain(name: endpointChain, rules: [
                    Rule([], [.updateSet(client, set: affinitySet)]),
                    Rule([.transport([frontend.port.transport])], [.dnat(slot.target)]),
                ]))
                ranges.append(SetElement([slot.keyPart], .verdict(.goto(endpointChain))))
            }
            extraChains.append(Chain(name: serviceChain, rules: checks + [
                Rule([], [.verdictMap([.random(modulus: pick.total)], .inline(ranges))]),
            ]))
            return serviceChain
        }

        func finish() -> RuleTable {
            var chains: [Chain] = baseChains.map { entry in
                Chain(name: entry.name, base: entry.spec, rules: [
                    Rule(entry.onlyNew ? [.connectionState([.new])] : [], [.verdict(.jump(entry.jumpTo))]),
                ])
            }
            func keyed(_ family: IPFamily) -> [KeyField] {
                [.address(.destination, family), .transport, .port(.destination)]
            }
            chains.append(Chain(name: servicesChain, rules: IPFamily.allCases.map { family in
                Rule([], [.verdictMap(keyed(family), .named(serviceIPsMap + familySuffix(family)))])
            }))
            chains.append(Chain(name: noEndpointsChain, rules: IPFamily.allCases.map { family in
                Rule([.lookup(keyed(family), set: noEndpointServicesSet + familySuffix(family), negated: false)], [.verdict(.goto(rejectChain))])
            }))
            chains.append(Chain(name: rejectChain, rules: [
                Rule([.transport([.tcp])], [.reject(.tcpReset)]),
                Rule([], [.reject(.portUnreachable)]),
            ]))
            chains.append(Chain(name: masqueradingChain, rules: IPFamily.allCases.map { family in
                Rule([.destinationNATed, .lookup([.address(.source, family), .address(.destination, family)],
                                                  set: hairpinSet + familySuffix(family), negated: false)],
                     [.masquerade])
            }))
            if usesProxy {
                chains.append(Chain(name: proxyRedirectChain, rules: [
                    Rule([.transport([.tcp])], [.redirect(port: options.proxyPort)]),
                ]))
            }
            for (prefix, map, moduli) in [(weightedPickPrefix, endpointPicksMap, pickModuli), (weightedRangePrefix, endpointRangesMap, rangeModuli)] {
                for modulus in moduli.sorted() {
                    chains.append(Chain(name: "\(prefix)\(modulus)", rules: IPFamily.allCases.map { family in
                        Rule([.transport([.tcp, .udp, .sctp])],
                             [.dnatMap(keyed(family) + [.random(modulus: modulus)], map: map + familySuffix(family), family: family)])
                    }))
                }
            }
            chains += extraChains.sorted { $0.name < $1.name }

            var sets: [NamedSet] = []
            for family in IPFamily.allCases {
                let suffix = familySuffix(family)
                sets.append(NamedSet(name: serviceIPsMap + suffix, key: keyed(family), dataType: .verdict,
                                     elements: (serviceIPs[family] ?? []).sorted()))
                sets.append(NamedSet(name: endpointPicksMap + suffix, key: keyed(family) + [.random(modulus: 1)],
                                     dataType: .socket(family), elements: (picks[family] ?? []).sorted()))
                sets.append(NamedSet(name: endpointRangesMap + suffix, key: keyed(family) + [.random(modulus: 1)],
                                     dataType: .socket(family), isInterval: true, elements: (ranges[family] ?? []).sorted()))
                sets.append(NamedSet(name: noEndpointServicesSet + suffix, key: keyed(family),
                                     elements: (noEndpoints[family] ?? []).sorted()))
                sets.append(NamedSet(name: hairpinSet + suffix, key: [.address(.source, family), .address(.destination, family)],
                                     elements: hairpins.filter { $0.family == family }.sorted().map { SetElement([.address($0), .address($0)]) }))
            }
            sets += extraSets.sorted { $0.name < $1.name }
            return RuleTable(name: tableName, family: .inet, sets: sets, chains: chains)
        }
    }
}
