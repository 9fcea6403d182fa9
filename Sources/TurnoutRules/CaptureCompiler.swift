import TurnoutModel

/// Compiles `CaptureOptions` into the rules `turnout init` installs: Istio's capture, one table
/// of its own (`inet turnout-capture`, or `TURNOUT-CAPTURE-` chains in iptables' `nat` table).
///
/// Outbound, in this order (first match wins; exclusions before inclusions, as Istio orders
/// them, so that no inclusion can pull excluded traffic into the proxy):
///  1. excluded interfaces and excluded ports: left alone;
///  2. the inbound passthrough source (`127.0.0.6` / `::6` over `lo`): the proxy delivering an
///     inbound connection to the app, left alone;
///  3. the proxy (its uid or gid) calling one of the pod's own, non-loopback addresses over
///     `lo`: to the inbound port, so the app's server side goes through the proxy too;
///  4. everything else of the proxy: left alone (the loop guard);
///  5. everything else over `lo` (the app talking to itself, localhost): left alone;
///  6. `captureOutboundPorts`: to the proxy, whatever the address;
///  7. excluded destination blocks: left alone; 8. the captured blocks (or all): to the proxy.
/// Inbound: excluded interfaces and ports, then the captured ports (or all) to the inbound port.
/// Only TCP is ever redirected; UDP (DNS) is never touched.
///
/// Deliberate difference from Istio: step 3 spares every loopback destination (`127.0.0.0/8`,
/// `::1`), not only `127.0.0.1`, since a proxy calling `127.0.0.2` means localhost too.
public enum CaptureCompiler {
    /// The nftables table Turnout owns for capture.
    public static let tableName = "turnout-capture"
    public static let inboundChain = "inbound"
    public static let outboundChain = "outbound"
    /// iptables: Turnout's capture chains in the `nat` table (distinct from the service
    /// chains, so applying services never touches capture and `init --cleanup` never services).
    public static let iptablesChainPrefix = "TURNOUT-CAPTURE-"
    public static let iptablesInboundChain = "TURNOUT-CAPTURE-INBOUND"
    public static let iptablesOutboundChain = "TURNOUT-CAPTURE-OUTBOUND"
    public static let loopbackInterface = "lo"

    /// The base chains. Priority -105 runs before the service dispatch of `inet turnout`
    /// (dstnat, -100): an app's connection to a service VIP reaches the proxy with the VIP as
    /// its original destination, and the proxy's own connection (never captured) then meets
    /// the service map. The first NAT chain that rewrites a connection decides it.
    public static let baseChains: [(name: String, spec: BaseChainSpec, jumpTo: String)] = [
        ("nat-prerouting", BaseChainSpec(type: .nat, hook: .prerouting, priority: -105), inboundChain),
        ("nat-output", BaseChainSpec(type: .nat, hook: .output, priority: -105), outboundChain),
    ]

    /// `inet turnout-capture`.
    public static func nftables(_ options: CaptureOptions) -> RuleTable {
        let chains = chains(options)
        var tableChains: [Chain] = []
        for entry in baseChains where chains[entry.jumpTo] != nil {
            var matches: [Match] = [.transport([.tcp])]
            if !options.ipv6 { matches.insert(.family(.ipv4), at: 0) }
            tableChains.append(Chain(name: entry.name, base: entry.spec, rules: [Rule(matches, [.verdict(.jump(entry.jumpTo))])]))
        }
        for name in [inboundChain, outboundChain] {
            if let rules = chains[name] { tableChains.append(Chain(name: name, rules: rules)) }
        }
        return RuleTable(name: tableName, family: .inet, chains: tableChains)
    }

    /// iptables' `nat` table of `family`: the capture chains and one jump from `PREROUTING`
    /// and `OUTPUT` each; `nil` when `family` is IPv6 and IPv6 is off.
    public static func iptables(_ options: CaptureOptions, family: IPFamily) -> RuleTable? {
        guard options.families.contains(family) else { return nil }
        let chains = chains(options)
        let names = [inboundChain: iptablesInboundChain, outboundChain: iptablesOutboundChain]
        var tableChains: [Chain] = []
        for entry in baseChains where chains[entry.jumpTo] != nil {
            let builtin = entry.spec.hook == .prerouting ? "PREROUTING" : "OUTPUT"
            // iptables' nat chains sit at priority -100 (NF_IP_PRI_NAT_DST); capture's jump goes
            // first in them instead (see `IptablesOwnership.jumpsFirst`).
            tableChains.append(Chain(name: builtin, base: BaseChainSpec(type: .nat, hook: entry.spec.hook, priority: -100), isBuiltin: true,
                                     rules: [Rule([.transport([.tcp])], [.verdict(.jump(names[entry.jumpTo]!))], comment: tableName)]))
        }
        for name in [inboundChain, outboundChain] {
            guard let rules = chains[name] else { continue }
            tableChains.append(Chain(name: names[name]!, rules: rules.flatMap { iptablesRules($0, family: family) }))
        }
        return RuleTable(name: "nat", family: family == .ipv4 ? .ip : .ip6, chains: tableChains)
    }

    // MARK: - the drain form (`init --cleanup`)

    /// iptables: the one chain capture keeps while `init --cleanup` drains.
    public static let iptablesDrainChain = "TURNOUT-CAPTURE-DRAIN"

    /// The rule a drain keeps: any rule that uses conntrack keeps conntrack's hooks registered
    /// in the namespace, and it accepts (changes nothing) so it is inert for the one packet of
    /// each new connection that walks a nat chain.
    static let drainRule = Rule([.connectionState([.established])], [.verdict(.accept)], comment: tableName)

    /// `inet turnout-capture` while `init --cleanup` drains it: the nat base chains with no
    /// redirect left, only ``drainRule``.
    ///
    /// Why a drain at all: the kernel keeps rewriting an established, redirected connection only
    /// while a nat chain of its family exists and some rule holds conntrack's hooks (measured on
    /// 6.x). Deleting the capture table, often the namespace's last nat chain and last conntrack
    /// user, would make every connection the proxy holds for the app stall. In this form new
    /// connections are no longer captured, while those already redirected keep their NAT until
    /// they close; then the table goes.
    public static func nftablesDrain() -> RuleTable {
        RuleTable(name: tableName, family: .inet,
                  chains: baseChains.map { Chain(name: $0.name, base: $0.spec, rules: [drainRule]) })
    }

    /// iptables' `nat` table of `family` while `init --cleanup` drains: ``iptablesDrainChain``
    /// with ``drainRule`` and no jump to it. iptables-nft keeps its own nat base chains, so a
    /// rule that loads conntrack is all a drain needs; the rule is initialised, and so holds
    /// conntrack, even in a chain nothing jumps to.
    public static func iptablesDrain(family: IPFamily) -> RuleTable {
        RuleTable(name: "nat", family: family == .ipv4 ? .ip : .ip6,
                  chains: [Chain(name: iptablesDrainChain, rules: [Rule(drainRule.matches, [.verdict(.return)], comment: tableName)])])
    }

    // MARK: - the rule order, shared by both dialects

    /// The `inbound` and `outbound` chains' rules, nft style (lists as sets, both families);
    /// a chain is absent when that direction captures nothing.
    static func chains(_ options: CaptureOptions) -> [String: [Rule]] {
        let tcp = Match.transport([.tcp])
        let ret: [Statement] = [.verdict(.return)]
        let lo = Match.interface(.output, [loopbackInterface], negated: false)
        var outbound: [Rule] = []
        if !options.excludeInterfaces.isEmpty { outbound.append(Rule([.interface(.output, options.excludeInterfaces, negated: false)], ret)) }
        if !options.excludeOutboundPorts.isEmpty { outbound.append(Rule([tcp, .ports(.destination, options.excludeOutboundPorts, negated: false)], ret)) }
        for family in options.families {
            outbound.append(Rule([lo, .addresses(.source, [IPPrefix(host: CaptureOptions.passthroughSources[family]!)], negated: false)], ret))
        }
        let uids = Set(options.proxyUIDs), gids = Set(options.proxyGIDs)
        let owners: [Match] = (uids.isEmpty ? [] : [.socketUser(uids, negated: false)]) + (gids.isEmpty ? [] : [.socketGroup(gids, negated: false)])
        for owner in owners {
            for family in options.families {
                outbound.append(Rule([tcp, lo, .addresses(.destination, [IPPrefix.loopback(family)], negated: true), owner],
                                     [.redirect(port: options.inboundPort)]))
            }
        }
        for owner in owners { outbound.append(Rule([owner], ret)) }
        outbound.append(Rule([lo], ret))
        if !options.captureOutboundPorts.isEmpty {
            outbound.append(Rule([tcp, .ports(.destination, options.captureOutboundPorts, negated: false)], [.redirect(port: options.proxyPort)]))
        }
        for family in options.families {
            let excluded = options.excludeOutboundCIDRs.filter { $0.family == family }
            if !excluded.isEmpty { outbound.append(Rule([.addresses(.destination, excluded, negated: false)], ret)) }
        }
        switch options.captureOutbound {
        case .all:
            outbound.append(Rule([tcp], [.redirect(port: options.proxyPort)]))
        case .only(let blocks):
            for family in options.families {
                let included = blocks.filter { $0.family == family }
                if !included.isEmpty { outbound.append(Rule([tcp, .addresses(.destination, included, negated: false)], [.redirect(port: options.proxyPort)])) }
            }
        }

        var chains = [outboundChain: outbound]
        guard !options.captureInboundPorts.isEmpty else { return chains }
        var inbound: [Rule] = []
        if !options.excludeInterfaces.isEmpty { inbound.append(Rule([.interface(.input, options.excludeInterfaces, negated: false)], ret)) }
        if !options.excludeInboundPorts.isEmpty { inbound.append(Rule([tcp, .ports(.destination, options.excludeInboundPorts, negated: false)], ret)) }
        switch options.captureInboundPorts {
        case .all: inbound.append(Rule([tcp], [.redirect(port: options.inboundPort)]))
        case .only(let ports): inbound.append(Rule([tcp, .ports(.destination, ports, negated: false)], [.redirect(port: options.inboundPort)]))
        }
        chains[inboundChain] = inbound
        return chains
    }

    /// One nft-style rule as iptables rules of `family`: dropped when it is about the other
    /// family, and every list split into one rule per value (ports into `multiport` groups of
    /// at most 15 slots), since iptables matches one address, interface or owner per rule.
    /// Lists are only ever positive here, so splitting keeps the meaning (any of them).
    static func iptablesRules(_ rule: Rule, family: IPFamily) -> [Rule] {
        var alternatives: [[Match]] = [[]]
        for match in rule.matches {
            var options: [Match]
            switch match {
            case .family(let wanted):
                guard wanted == family else { return [] }
                continue
            case .addresses(let direction, let prefixes, let negated):
                guard prefixes.first?.family == family else { return [] }
                precondition(!negated || prefixes.count == 1, "iptables cannot negate a list of blocks")
                options = prefixes.map { .addresses(direction, [$0], negated: negated) }
            case .ports(let direction, let ranges, let negated):
                let groups = multiportGroups(ranges)
                precondition(!negated || groups.count == 1, "iptables cannot negate more than 15 ports")
                options = groups.map { .ports(direction, $0, negated: negated) }
            case .interface(let direction, let names, let negated):
                precondition(!negated || names.count == 1, "iptables cannot negate a list of interfaces")
                options = names.map { .interface(direction, [$0], negated: negated) }
            case .socketUser(let ids, let negated):
                precondition(!negated || ids.count == 1, "iptables cannot negate a list of users")
                options = ids.sorted().map { .socketUser([$0], negated: negated) }
            case .socketGroup(let ids, let negated):
                precondition(!negated || ids.count == 1, "iptables cannot negate a list of groups")
                options = ids.sorted().map { .socketGroup([$0], negated: negated) }
            default:
                options = [match]
            }
            alternatives = alternatives.flatMap { prefix in options.map { prefix + [$0] } }
        }
        return alternatives.map { Rule($0, rule.statements, comment: rule.comment) }
    }

    /// `ranges` in order, cut into groups of at most 15 multiport slots.
    static func multiportGroups(_ ranges: [PortRange]) -> [[PortRange]] {
        var groups: [[PortRange]] = [[]]
        var slots = 0
        for range in ranges {
            if slots + range.multiportSlots > 15 {
                groups.append([])
                slots = 0
            }
            groups[groups.count - 1].append(range)
            slots += range.multiportSlots
        }
        return groups
    }
}
