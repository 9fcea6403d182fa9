import TurnoutModel

/// Compiles a service table into Turnout's nftables table, `inet turnout`.
///
/// Per-packet cost does not grow with the table: one concatenated-key map lookup finds the
/// frontend (`ip daddr . meta l4proto . th dport vmap @service-ips4`), and one hash-map lookup
/// keyed by the frontend and `numgen random mod Σw` picks and rewrites to the endpoint (an
/// interval map only for splits too fine for one element per value; see `WeightedPick`). Services
/// whose reduced weights sum to the same N share one pick chain and its maps (one per family), so
/// the pick maps come and go with their chain. There is no chain per
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
    /// per drawn value (`endpoint-picks4-modN`, `endpoint-picks6-modN`).
    public static let weightedPickPrefix = "weighted-pick-"
    /// `weighted-range-N`: the same for splits held as ranges (`endpoint-ranges4-modN`, …).
    public static let weightedRangePrefix = "weighted-range-"
    public static let serviceChainPrefix = "service-"
    public static let endpointChainPrefix = "endpoint-"
    public static let affinitySetPrefix = "affinity-"

    // Sets and maps, one per family: "service-ips4", "service-ips6", ….
    public static let serviceIPsMap = "service-ips"
    /// One pair of maps per pick chain, named with its modulus: "endpoint-picks4-mod10".
    ///
    /// Why not one map for every modulus: a rule that looks up a map makes the kernel check
    /// every element already in it when the rule is added (`nf_tables_bind_set` walks the map
    /// unless another rule of the same chain is bound to it). A pick chain for a modulus no
    /// service used before then cost a walk over every service's slots: 25–28 ms at 10,000
    /// services × 10 endpoints. A chain's own maps hold only its services' slots, and are
    /// empty when the chain is added.
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
        assemble(table.services.map { rules(for: $0, options: options) }, options: options)
    }

    /// What `service` adds to the table; `compile` is `assemble` of these for every service.
    public static func rules(for service: Service, options: ServiceCompilerOptions = ServiceCompilerOptions()) -> ServiceRules {
        var builder = ServiceBuilder(options: options)
        for port in service.ports {
            for address in service.addresses { builder.add(Frontend(service: service, address: address, port: port)) }
        }
        return builder.rules
    }

    /// The table holding `services`' contributions: the skeleton (base chains, fixed chains,
    /// the fixed sets and maps declared for both families), the shared chains they use with
    /// those chains' maps, their own chains and sets, and the union of their elements.
    ///
    /// With `.canonical` (what `compile` gives, and what text and tests want) each set's
    /// elements are sorted and unique. `.unsorted` skips that work (about a third of compiling
    /// 10,000 services): elements follow service order and an element several services share
    /// may repeat. Only a consumer that sorts and deduplicates itself may ask for it, as the
    /// netlink lowering does (it orders elements by their wire bytes).
    public static func assemble(_ services: [ServiceRules], options: ServiceCompilerOptions = ServiceCompilerOptions(),
                                elementOrder: ElementOrder = .canonical) -> RuleTable {
        var elements: [String: [SetElement]] = [:]
        var sharedChains: Set<SharedChain> = []
        var ownChains: [Chain] = []
        var ownSets: [NamedSet] = []
        for service in services {
            for member in service.elements { elements[member.set, default: []].append(member.element) }
            for member in service.sharedElements { elements[member.set, default: []].append(member.element) }
            sharedChains.formUnion(service.sharedChains)
            ownChains += service.chains
            ownSets += service.sets
        }
        let base = skeleton()
        let shared = sharedChains.sorted()
        let sets = (base.sets + shared.flatMap(sets(for:))).map { declared in
            var set = declared
            let members = elements[set.name] ?? []
            switch elementOrder {
            case .canonical: set.elements = members.sorted().removingAdjacentDuplicates()
            case .unsorted: set.elements = members
            }
            return set
        }
        return RuleTable(name: tableName, family: .inet,
                         sets: sets + ownSets.sorted { $0.name < $1.name },
                         chains: base.chains + shared.map { chain(for: $0, options: options) } + ownChains.sorted { $0.name < $1.name })
    }

    /// How `assemble` leaves each set's elements.
    public enum ElementOrder: Sendable {
        /// Sorted and unique.
        case canonical
        /// Service order, shared elements possibly repeated.
        case unsorted
    }

    /// The table with no service in it: base chains, fixed chains, and the fixed sets and maps
    /// declared (empty) for both families. Services only ever add elements, shared chains (with
    /// their maps) and their own chains and sets to it.
    public static func skeleton() -> RuleTable {
        var chains: [Chain] = baseChains.map { entry in
            Chain(name: entry.name, base: entry.spec, rules: [
                Rule(entry.onlyNew ? [.connectionState([.new])] : [], [.verdict(.jump(entry.jumpTo))]),
            ])
        }
        chains.append(Chain(name: servicesChain, rules: IPFamily.allCases.map { family in
            Rule([], [.verdictMap(frontendKey(family), .named(serviceIPsMap + familySuffix(family)))])
        }))
        chains.append(Chain(name: noEndpointsChain, rules: IPFamily.allCases.map { family in
            Rule([.lookup(frontendKey(family), set: noEndpointServicesSet + familySuffix(family), negated: false)], [.verdict(.goto(rejectChain))])
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
        var sets: [NamedSet] = []
        for family in IPFamily.allCases {
            let suffix = familySuffix(family)
            sets.append(NamedSet(name: serviceIPsMap + suffix, key: frontendKey(family), dataType: .verdict))
            sets.append(NamedSet(name: noEndpointServicesSet + suffix, key: frontendKey(family)))
            sets.append(NamedSet(name: hairpinSet + suffix, key: [.address(.source, family), .address(.destination, family)]))
        }
        return RuleTable(name: tableName, family: .inet, sets: sets, chains: chains)
    }

    /// A chain services share, as `assemble` adds it.
    public static func chain(for shared: SharedChain, options: ServiceCompilerOptions) -> Chain {
        switch shared {
        case .proxyRedirect:
            return Chain(name: shared.name, rules: [Rule([.transport([.tcp])], [.redirect(port: options.proxyPort)])])
        case .pick(let modulus), .range(let modulus):
            return Chain(name: shared.name, rules: IPFamily.allCases.map { family in
                Rule([.transport([.tcp, .udp, .sctp])],
                     [.dnatMap(frontendKey(family) + [.random(modulus: modulus)], map: mapName(of: shared, family: family), family: family)])
            })
        }
    }

    /// The maps a shared chain looks up, as `assemble` declares them: a pick or range chain's
    /// endpoint map for each family; none for the proxy redirect.
    public static func sets(for shared: SharedChain) -> [NamedSet] {
        switch shared {
        case .proxyRedirect:
            return []
        case .pick(let modulus), .range(let modulus):
            let isRange = if case .range = shared { true } else { false }
            return IPFamily.allCases.map { family in
                NamedSet(name: mapName(of: shared, family: family), key: frontendKey(family) + [.random(modulus: modulus)],
                         dataType: .socket(family), isInterval: isRange)
            }
        }
    }

    /// `endpoint-picks4-mod10`: the map of `weighted-pick-10` for IPv4.
    public static func mapName(of shared: SharedChain, family: IPFamily) -> String {
        switch shared {
        case .proxyRedirect: preconditionFailure("the proxy redirect looks up no map")
        case .pick(let modulus): "\(endpointPicksMap)\(familySuffix(family))-mod\(modulus)"
        case .range(let modulus): "\(endpointRangesMap)\(familySuffix(family))-mod\(modulus)"
        }
    }

    /// `ip daddr . meta l4proto . th dport`: the key every frontend is found by.
    static func frontendKey(_ family: IPFamily) -> [KeyField] {
        [.address(.destination, family), .transport, .port(.destination)]
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

    /// Collects one service's contribution, frontend by frontend.
    private struct ServiceBuilder {
        let options: ServiceCompilerOptions
        var rules = ServiceRules()

        init(options: ServiceCompilerOptions) { self.options = options }

        mutating func add(_ frontend: Frontend) {
            let family = frontend.family
            let suffix = familySuffix(family)
            let key: [KeyPart] = [.address(frontend.address), .transport(frontend.port.transport), .port(frontend.port.port)]
            guard let pick = WeightedPick(service: frontend.service, port: frontend.port, family: family) else {
                rules.elements.append(SetMember(set: noEndpointServicesSet + suffix, element: SetElement(key)))
                return
            }
            if options.mode == .proxy && frontend.port.transport == .tcp {
                rules.sharedChains.insert(.proxyRedirect)
                rules.elements.append(SetMember(set: serviceIPsMap + suffix, element: SetElement(key, .verdict(.goto(proxyRedirectChain)))))
                return
            }
            for slot in pick.slots {
                rules.sharedElements.append(SetMember(set: hairpinSet + suffix, element: SetElement([.address(slot.target.address), .address(slot.target.address)])))
            }
            if let affinity = frontend.service.affinity {
                let chain = addAffinityChains(frontend, pick: pick, affinity: affinity)
                rules.elements.append(SetMember(set: serviceIPsMap + suffix, element: SetElement(key, .verdict(.goto(chain)))))
                return
            }
            let shared: SharedChain = pick.usesExactSlots ? .pick(modulus: pick.total) : .range(modulus: pick.total)
            let map = mapName(of: shared, family: family)
            rules.sharedChains.insert(shared)
            rules.elements.append(SetMember(set: serviceIPsMap + suffix, element: SetElement(key, .verdict(.goto(shared.name)))))
            for slot in pick.slots {
                for part in pick.keyParts(of: slot) {
                    rules.elements.append(SetMember(set: map, element: SetElement(key + [part], .socket(slot.target))))
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
                rules.sets.append(NamedSet(name: affinitySet, key: client, timeoutSeconds: affinity.timeoutSeconds))
                checks.append(Rule([.lookup(client, set: affinitySet, negated: false)], [.verdict(.goto(endpointChain))]))
                rules.chains.append(Chain(name: endpointChain, rules: [
                    Rule([], [.updateSet(client, set: affinitySet)]),
                    Rule([.transport([frontend.port.transport])], [.dnat(slot.target)]),
                ]))
                ranges.append(SetElement([slot.keyPart], .verdict(.goto(endpointChain))))
            }
            rules.chains.append(Chain(name: serviceChain, rules: checks + [
                Rule([], [.verdictMap([.random(modulus: pick.total)], .inline(ranges))]),
            ]))
            return serviceChain
        }
    }
}
