import TurnoutModel

/// Walks rule tables the way netfilter would for one packet and returns every possible outcome
/// with its exact probability (kube-proxy tests its compiler the same way).
///
/// Semantics modelled: base chains by hook and priority; `nat` chains only until one binds a
/// NAT for the hook; jump/goto/return; verdict maps; `numgen random mod N` lookups (split by the
/// ranges they hit); iptables `statistic` probabilities; marks; timed sets from ``TraceState``.
/// Endpoints are taken to be on other hosts (a DNATed packet is forwarded). Pure and Sendable.
public struct PacketTracer: Sendable {
    public let tables: [RuleTable]
    private let chainsByName: [[String: Chain]]

    public init(tables: [RuleTable]) {
        self.tables = tables
        chainsByName = tables.map { Dictionary($0.chains.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }) }
    }

    public func trace(_ packet: TracePacket, state: TraceState = TraceState()) -> [TraceOutcome] {
        let start = Flow(packet: packet, dynamic: state.dynamicEntries)
        let hooks: ArraySlice<Hook> = packet.origin == .local ? [.output, .postrouting] : [.prerouting, .forward, .postrouting]
        var outcomes: [Disposition: TraceOutcome] = [:]
        for (flow, probability, disposition) in runHooks(hooks, flow: start, probability: .one) where probability > .zero {
            if var existing = outcomes[disposition] {
                existing.probability = existing.probability + probability
                outcomes[disposition] = existing
            } else {
                outcomes[disposition] = TraceOutcome(disposition: disposition, probability: probability, chains: flow.trail)
            }
        }
        return outcomes.values.sorted { ($1.probability, $0.disposition) < ($0.probability, $1.disposition) }
    }

    // MARK: - Hooks

    private struct Flow {
        var source: IPAddress
        var sourcePort: UInt16
        var destination: SocketAddress
        var transport: TransportProtocol
        var mark: UInt32
        var uid: UInt32?
        var gid: UInt32?
        var inputInterface: String?
        var outputInterface: String?
        var destinationNATed = false
        var redirectedPort: UInt16?
        var masqueraded = false
        var dynamic: [String: Set<[KeyPart]>]
        var trail: [String] = []

        init(packet: TracePacket, dynamic: [String: Set<[KeyPart]>]) {
            source = packet.source
            sourcePort = packet.sourcePort
            destination = packet.destination
            transport = packet.transport
            mark = packet.mark
            uid = packet.uid
            gid = packet.gid
            inputInterface = packet.inputInterface
            outputInterface = packet.outputInterface
            self.dynamic = dynamic
        }

        var family: IPFamily { destination.address.family }
    }

    private enum Stop {
        case accept, drop, returned, nat
        case reject(RejectKind)
    }

    private typealias Branch = (flow: Flow, probability: Probability, stop: Stop?)

    private func baseChains(for hook: Hook) -> [(table: Int, chain: Chain)] {
        var found: [(table: Int, chain: Chain, order: Int)] = []
        for (index, table) in tables.enumerated() {
            for (order, chain) in table.chains.enumerated() where chain.base?.hook == hook {
                found.append((index, chain, order))
            }
        }
        return found.sorted { ($0.chain.base!.priority, $0.table, $0.order) < ($1.chain.base!.priority, $1.table, $1.order) }
            .map { ($0.table, $0.chain) }
    }

    private func runHooks(_ hooks: ArraySlice<Hook>, flow: Flow, probability: Probability) -> [(Flow, Probability, Disposition)] {
        guard var hook = hooks.first else {
            let disposition: Disposition
            if let port = flow.redirectedPort {
                disposition = .redirected(port: port)
            } else if flow.destinationNATed {
                disposition = .delivered(flow.destination, masqueraded: flow.masqueraded)
            } else {
                disposition = .untouched
            }
            return [(flow, probability, disposition)]
        }
        // A packet redirected in PREROUTING is for this host: INPUT, not FORWARD.
        if hook == .forward && flow.redirectedPort != nil { hook = .input }
        return runChains(baseChains(for: hook)[...], natBound: false, flow: flow, probability: probability) { flow, probability in
            runHooks(hooks.dropFirst(), flow: flow, probability: probability)
        }
    }

    private func runChains(_ chains: ArraySlice<(table: Int, chain: Chain)>, natBound: Bool, flow: Flow, probability: Probability,
                           then next: (Flow, Probability) -> [(Flow, Probability, Disposition)]) -> [(Flow, Probability, Disposition)] {
        guard let (table, chain) = chains.first else { return next(flow, probability) }
        if chain.base?.type == .nat && natBound {
            return runChains(chains.dropFirst(), natBound: true, flow: flow, probability: probability, then: next)
        }
        var results: [(Flow, Probability, Disposition)] = []
        for (flow, probability, stop) in run(chain, table: table, flow: flow, probability: probability, depth: 0) {
            switch stop {
            case .drop:
                results.append((flow, probability, .dropped))
            case .reject(let kind):
                results.append((flow, probability, .rejected(kind)))
            case .nat:
                results += runChains(chains.dropFirst(), natBound: true, flow: flow, probability: probability, then: next)
            case .accept, .returned, nil:
                results += runChains(chains.dropFirst(), natBound: natBound, flow: flow, probability: probability, then: next)
            }
        }
        return results
    }

    // MARK: - Chains and rules

    /// Runs a chain to its end; every branch returned carries a stop (`.returned` when it fell through).
    private func run(_ chain: Chain, table: Int, flow: Flow, probability: Probability, depth: Int) -> [Branch] {
        precondition(depth < 64, "chain \(chain.name) recurses; the kernel would refuse this ruleset")
        var flow = flow
        // iptables has chains of one name in several tables (nat OUTPUT, filter OUTPUT): qualify them.
        flow.trail.append(tables.count > 1 ? "\(tables[table].name):\(chain.name)" : chain.name)
        var pending: [(flow: Flow, probability: Probability, rule: Int)] = [(flow, probability, 0)]
        var finished: [Branch] = []
        while let (flow, probability, index) = pending.popLast() {
            guard index < chain.rules.count else {
                finished.append((flow, probability, .returned))
                continue
            }
            for branch in run(chain.rules[index], table: table, flow: flow, probability: probability, depth: depth) {
                if let stop = branch.stop {
                    finished.append((branch.flow, branch.probability, stop))
                } else {
                    pending.append((branch.flow, branch.probability, index + 1))
                }
            }
        }
        return finished
    }

    /// Runs one rule; a branch without a stop continues with the next rule.
    private func run(_ rule: Rule, table: Int, flow: Flow, probability: Probability, depth: Int) -> [Branch] {
        var branches: [Branch] = []
        for (flow, probability, matched) in evaluate(rule.matches[...], table: table, flow: flow, probability: probability) {
            if matched {
                branches += execute(rule.statements[...], table: table, flow: flow, probability: probability, depth: depth)
            } else {
                branches.append((flow, probability, nil))
            }
        }
        return branches
    }

    private func evaluate(_ matches: ArraySlice<Match>, table: Int, flow: Flow, probability: Probability) -> [(Flow, Probability, Bool)] {
        guard let match = matches.first else { return [(flow, probability, true)] }
        var outcomes: [(Flow, Probability, Bool)] = []
        for (chance, holds) in evaluate(match, table: table, flow: flow) where chance > .zero {
            let p = probability * chance
            if holds {
                outcomes += evaluate(matches.dropFirst(), table: table, flow: flow, probability: p)
            } else {
                outcomes.append((flow, p, false))
            }
        }
        return outcomes
    }

    /// One match: the chances that it holds and that it does not (they sum to one).
    private func evaluate(_ match: Match, table: Int, flow: Flow) -> [(Probability, Bool)] {
        func certain(_ holds: Bool) -> [(Probability, Bool)] { [(.one, holds)] }
        switch match {
        case .family(let family):
            return certain(flow.family == family)
        case .transport(let set):
            return certain(set.contains(flow.transport))
        case .port(let direction, let port):
            return certain((direction == .source ? flow.sourcePort : flow.destination.port) == port)
        case .connectionState(let states):
            return certain(states.contains(.new)) // the tracer follows a connection's first packet
        case .destinationNATed:
            return certain(flow.destinationNATed)
        case .probability(let chance):
            return [(chance, true), (chance.complement, false)]
        case .markBits(let bits, let negated):
            return certain((flow.mark & bits == bits) != negated)
        case .socketUser(let ids, let negated):
            guard let uid = flow.uid else { return certain(false) }
            return certain(ids.contains(uid) != negated)
        case .socketGroup(let ids, let negated):
            guard let gid = flow.gid else { return certain(false) }
            return certain(ids.contains(gid) != negated)
        case .addresses(let direction, let prefixes, let negated):
            let value = direction == .source ? flow.source : flow.destination.address
            // The implicit family match fails for the other family, negated or not.
            guard value.family == prefixes.first?.family else { return certain(false) }
            return certain(prefixes.contains { $0.contains(value) } != negated)
        case .ports(let direction, let ranges, let negated):
            let port = direction == .source ? flow.sourcePort : flow.destination.port
            return certain(ranges.contains { $0.contains(port) } != negated)
        case .interface(let direction, let names, let negated):
            guard let name = direction == .input ? flow.inputInterface : flow.outputInterface else { return certain(false) }
            return certain(names.contains(name) != negated)
        case .lookup(let key, let setName, let negated):
            guard let values = keyValues(key, flow: flow) else { return certain(false) }
            guard let set = tables[table].set(named: setName) else { preconditionFailure("no set \(setName)") }
            let hits = lookup(values, in: set, flow: flow)
            let hit = hits.reduce(Probability.zero) { $0 + $1.probability }
            return [(hit, !negated), (hit.complement, negated)]
        }
    }

    private func execute(_ statements: ArraySlice<Statement>, table: Int, flow: Flow, probability: Probability, depth: Int) -> [Branch] {
        guard let statement = statements.first else { return [(flow, probability, nil)] }
        var flow = flow
        let rest = statements.dropFirst()
        switch statement {
        case .dnat(let target):
            flow.destination = target
            flow.destinationNATed = true
            return [(flow, probability, .nat)]
        case .dnatMap(let key, let mapName, _):
            guard let values = keyValues(key, flow: flow), let map = tables[table].set(named: mapName) else {
                return [(flow, probability, nil)]
            }
            var branches: [Branch] = []
            var hit = Probability.zero
            for (element, chance) in lookup(values, in: map, flow: flow) {
                guard case .socket(let target)? = element?.data else { continue }
                var rewritten = flow
                rewritten.destination = target
                rewritten.destinationNATed = true
                hit = hit + chance
                branches.append((rewritten, probability * chance, .nat))
            }
            // A miss breaks the rule: evaluation goes on with the next rule.
            return hit == .one ? branches : branches + [(flow, probability * hit.complement, nil)]
        case .redirect(let port):
            flow.redirectedPort = port
            flow.destinationNATed = true
            flow.destination = SocketAddress(address: flow.family == .ipv4 ? IPAddress("127.0.0.1")! : IPAddress("::1")!, port: port)
            return [(flow, probability, .nat)]
        case .masquerade:
            flow.masqueraded = true
            return [(flow, probability, .nat)]
        case .reject(let kind):
            return [(flow, probability, .reject(kind))]
        case .updateSet(let key, let setName):
            guard let values = keyValues(key, flow: flow) else { return [(flow, probability, nil)] }
            flow.dynamic[setName, default: []].insert(values.map(\.part))
            return execute(rest, table: table, flow: flow, probability: probability, depth: depth)
        case .orMark(let bits):
            flow.mark |= bits
            return execute(rest, table: table, flow: flow, probability: probability, depth: depth)
        case .xorMark(let bits):
            flow.mark ^= bits
            return execute(rest, table: table, flow: flow, probability: probability, depth: depth)
        case .verdictMap(let key, let reference):
            guard let values = keyValues(key, flow: flow) else { return [(flow, probability, nil)] }
            let map: NamedSet
            switch reference {
            case .named(let name):
                guard let named = tables[table].set(named: name) else { preconditionFailure("no map \(name)") }
                map = named
            case .inline(let elements):
                map = NamedSet(name: "(inline)", key: key, dataType: .verdict, isInterval: true, elements: elements)
            }
            var branches: [Branch] = []
            var hit = Probability.zero
            for (element, chance) in lookup(values, in: map, flow: flow) {
                guard case .verdict(let verdict)? = element?.data else { continue }
                hit = hit + chance
                branches += apply(verdict, table: table, flow: flow, probability: probability * chance, depth: depth)
            }
            return hit == .one ? branches : branches + [(flow, probability * hit.complement, nil)]
        case .verdict(let verdict):
            return apply(verdict, table: table, flow: flow, probability: probability, depth: depth)
        }
    }

    private func apply(_ verdict: Verdict, table: Int, flow: Flow, probability: Probability, depth: Int) -> [Branch] {
        switch verdict {
        case .accept: return [(flow, probability, .accept)]
        case .drop: return [(flow, probability, .drop)]
        case .return: return [(flow, probability, .returned)]
        case .jump(let name), .goto(let name):
            guard let target = chainsByName[table][name] else { preconditionFailure("no chain \(name)") }
            let isJump: Bool = if case .jump = verdict { true } else { false }
            return run(target, table: table, flow: flow, probability: probability, depth: depth + 1).map { branch in
                // A chain that returns hands control back after the jump; after a goto, the caller returns too.
                if case .returned = branch.stop, isJump { return (branch.flow, branch.probability, nil) }
                return branch
            }
        }
    }

    // MARK: - Keys and lookups

    private enum KeyValue {
        case fixed(KeyPart)
        case random(modulus: UInt32)

        var part: KeyPart {
            switch self {
            case .fixed(let part): part
            case .random: preconditionFailure("a random key component is never stored")
            }
        }
    }

    /// The key built from the packet, or nil when an expression does not apply (wrong family).
    private func keyValues(_ key: [KeyField], flow: Flow) -> [KeyValue]? {
        var values: [KeyValue] = []
        for field in key {
            switch field {
            case .address(let direction, let family):
                guard flow.family == family else { return nil }
                values.append(.fixed(.address(direction == .source ? flow.source : flow.destination.address)))
            case .transport:
                values.append(.fixed(.transport(flow.transport)))
            case .port(let direction):
                values.append(.fixed(.port(direction == .source ? flow.sourcePort : flow.destination.port)))
            case .random(let modulus):
                values.append(.random(modulus: modulus))
            }
        }
        return values
    }

    /// The elements a key hits, each with its chance; a random component splits by range width.
    private func lookup(_ values: [KeyValue], in set: NamedSet, flow: Flow) -> [(element: SetElement?, probability: Probability)] {
        if set.isDynamic {
            let present = flow.dynamic[set.name]?.contains(values.map(\.part)) ?? false
            return present ? [(nil, .one)] : []
        }
        var hits: [(SetElement?, Probability)] = []
        for element in set.elements where element.key.count == values.count {
            var chance = Probability.one
            for (part, value) in zip(element.key, values) {
                switch value {
                case .fixed(let fixed):
                    if !Self.contains(part, fixed) { chance = .zero }
                case .random(let modulus):
                    chance = chance * Self.share(of: part, modulus: modulus)
                }
                if chance == .zero { break }
            }
            if chance > .zero { hits.append((element, chance)) }
        }
        return hits
    }

    private static func contains(_ part: KeyPart, _ value: KeyPart) -> Bool {
        switch (part, value) {
        case (.integerRange(let low, let high), .integer(let v)): low <= v && v <= high
        default: part == value
        }
    }

    /// The share of `0..<modulus` an element's range covers.
    private static func share(of part: KeyPart, modulus: UInt32) -> Probability {
        let covered: ClosedRange<UInt32>
        switch part {
        case .integer(let value): covered = value...value
        case .integerRange(let low, let high): covered = low...high
        default: return .zero
        }
        let clamped = covered.clamped(to: 0...(modulus - 1))
        guard covered.overlaps(0...(modulus - 1)) else { return .zero }
        return Probability(UInt64(clamped.count), UInt64(modulus))
    }

}
