import TurnoutModel

/// Prints iptables-dialect rule tables as `iptables-restore` (or `ip6tables-restore`) input.
///
/// Every `TURNOUT-` chain is declared (`:NAME - [0:0]`), which makes `iptables-restore --noflush`
/// flush and refill exactly Turnout's chains while leaving every other chain and rule alone.
/// Built-in chains are never declared (that would reset their policy); they only get the
/// `-A` jump rules. Probabilities print with ten decimals, as kube-proxy prints them.
public enum IptablesRenderer {
    public static func render(_ tables: [RuleTable], header: String? = nil) -> String {
        var out = ""
        if let header { out += header.split(separator: "\n", omittingEmptySubsequences: false).map { "# \($0)\n" }.joined() }
        for table in tables {
            precondition(table.family != .inet, "iptables tables are per family")
            out += "*\(table.name)\n"
            for chain in table.chains where !chain.isBuiltin { out += ":\(chain.name) - [0:0]\n" }
            for chain in table.chains {
                for rule in chain.rules { out += "-A \(chain.name) \(renderRule(rule, in: table))\n" }
            }
            out += "COMMIT\n"
        }
        return out
    }

    static func renderRule(_ rule: Rule, in table: RuleTable) -> String {
        var parts: [String] = []
        var transport: TransportProtocol?
        for match in rule.matches {
            switch match {
            case .transport(let set):
                precondition(set.count == 1, "iptables matches one protocol per rule")
                transport = set.first
                parts.append("-p \(set.first!.rawValue)")
            case .port(let direction, let port):
                guard let transport else { preconditionFailure("a port match needs a protocol match before it") }
                parts.append("-m \(transport.rawValue) \(direction == .source ? "--sport" : "--dport") \(port)")
            case .connectionState(let states):
                parts.append("-m conntrack --ctstate \(states.sorted().map { $0.rawValue.uppercased() }.joined(separator: ","))")
            case .destinationNATed:
                parts.append("-m conntrack --ctstate DNAT")
            case .probability(let probability):
                parts.append("-m statistic --mode random --probability \(decimal(probability))")
            case .markBits(let bits, let negated):
                parts.append("-m mark \(negated ? "! " : "")--mark \(hex(bits))/\(hex(bits))")
            case .lookup(let key, let setName, let negated):
                precondition(!negated && key.count == 1, "iptables expresses only positive client-address lookups (recent)")
                guard let set = table.set(named: setName), let timeout = set.timeoutSeconds else {
                    preconditionFailure("iptables can only look up timed client lists (-m recent)")
                }
                parts.append("-m recent --name \(setName) --rcheck --seconds \(timeout) --reap")
            case .socketUser(let ids, let negated), .socketGroup(let ids, let negated):
                precondition(ids.count == 1, "iptables' owner match takes one id per rule")
                let option: String = if case .socketUser = match { "--uid-owner" } else { "--gid-owner" }
                parts.append("-m owner \(negated ? "! " : "")\(option) \(ids.first!)")
            case .addresses(let direction, let prefixes, let negated):
                precondition(prefixes.count == 1, "iptables matches one address block per rule")
                parts.append("\(negated ? "! " : "")\(direction == .source ? "-s" : "-d") \(prefixes[0])")
            case .ports(let direction, let ranges, let negated):
                precondition(transport != nil, "a port match needs a protocol match before it")
                precondition(ranges.reduce(0) { $0 + $1.multiportSlots } <= 15, "multiport takes at most 15 ports per rule")
                let list = ranges.map { $0.isSinglePort ? "\($0.lower)" : "\($0.lower):\($0.upper)" }.joined(separator: ",")
                parts.append("-m multiport \(negated ? "! " : "")\(direction == .source ? "--sports" : "--dports") \(list)")
            case .interface(let direction, let names, let negated):
                precondition(names.count == 1, "iptables matches one interface per rule")
                parts.append("\(negated ? "! " : "")\(direction == .input ? "-i" : "-o") \(names[0])")
            case .family:
                preconditionFailure("iptables tables are per family; no family match is needed")
            }
        }
        if let comment = rule.comment { parts.append("-m comment --comment \"\(comment)\"") }
        for statement in rule.statements {
            parts.append(self.statement(statement, family: table.family))
        }
        return parts.joined(separator: " ")
    }

    static func statement(_ statement: Statement, family: TableFamily) -> String {
        switch statement {
        case .updateSet(_, let set):
            return "-m recent --name \(set) --set"
        case .dnat(let socket):
            return "-j DNAT --to-destination \(socket)"
        case .redirect(let port):
            return "-j REDIRECT --to-ports \(port)"
        case .masquerade:
            return "-j MASQUERADE"
        case .reject(.tcpReset):
            return "-j REJECT --reject-with tcp-reset"
        case .reject(.portUnreachable):
            return "-j REJECT --reject-with \(family == .ip6 ? "icmp6-port-unreachable" : "icmp-port-unreachable")"
        case .orMark(let bits):
            return "-j MARK --or-mark \(hex(bits))"
        case .xorMark(let bits):
            return "-j MARK --xor-mark \(hex(bits))"
        case .verdict(.jump(let chain)):
            return "-j \(chain)"
        case .verdict(.goto(let chain)):
            return "-g \(chain)"
        case .verdict(.return):
            return "-j RETURN"
        case .verdict(.accept):
            return "-j ACCEPT"
        case .verdict(.drop):
            return "-j DROP"
        case .dnatMap, .verdictMap:
            preconditionFailure("maps are an nftables construct; the iptables compiler uses rule lists")
        }
    }

    /// `0.9000000000`: the probability rounded to ten decimals, computed exactly from the fraction.
    static func decimal(_ probability: Probability) -> String {
        let scale: UInt64 = 10_000_000_000
        let product = probability.numerator.multipliedFullWidth(by: scale)
        let (quotient, remainder) = probability.denominator.dividingFullWidth(product)
        let rounded = quotient + (remainder * 2 >= probability.denominator ? 1 : 0)
        if rounded >= scale { return "1.0000000000" }
        return "0." + String(rounded).leftPadded(to: 10)
    }

    static func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
}
