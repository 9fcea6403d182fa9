import TurnoutModel

/// Prints rule tables as an `nft -f` file that replaces each table atomically.
///
/// The file opens with `table …; delete table …; table … { … }`, so applying it is one
/// transaction that works whether or not the table existed, and leaves every other table alone.
/// Output is deterministic: the same IR gives the same bytes.
///
/// A set of more than ``elementsPerStatement`` elements is declared empty and filled by
/// `add element` statements of that many after the table block: nft 1.0.6 fails on one statement
/// of about 2,000 concatenated-range elements (a spurious `File exists`, then `No buffer space
/// available`; measured here), while the same elements in chunks load. The file stays one
/// transaction either way.
public enum NftablesRenderer {
    public static let elementsPerStatement = 500

    public static func render(_ tables: [RuleTable], header: String? = nil) -> String {
        var out = ""
        if let header { out += header.split(separator: "\n", omittingEmptySubsequences: false).map { "# \($0)\n" }.joined() }
        for table in tables {
            let id = "\(table.family.rawValue) \(table.name)"
            out += "table \(id)\ndelete table \(id)\ntable \(id) {\n"
            var blocks: [String] = table.sets.map(renderSet)
            blocks += table.chains.map(renderChain)
            out += blocks.joined(separator: "\n")
            out += "}\n"
            for set in table.sets where set.elements.count > elementsPerStatement {
                var start = 0
                while start < set.elements.count {
                    let chunk = set.elements[start..<min(start + elementsPerStatement, set.elements.count)]
                    out += "add element \(id) \(set.name) {\n"
                    out += chunk.map { "\t" + element($0) }.joined(separator: ",\n")
                    out += "\n}\n"
                    start += elementsPerStatement
                }
            }
        }
        return out
    }

    static func renderSet(_ set: NamedSet) -> String {
        var out = "\t\(set.dataType == nil ? "set" : "map") \(set.name) {\n"
        if set.key.contains(where: { if case .random = $0 { true } else { false } }) {
            out += "\t\ttypeof \(expression(set.key))"
            switch set.dataType {
            case .verdict: out += " : verdict"
            case .socket(let family): out += " : \(expression([.address(.destination, family), .port(.destination)]))"
            case nil: break
            }
        } else {
            out += "\t\ttype \(set.key.map(typeName).joined(separator: " . "))"
            switch set.dataType {
            case .verdict: out += " : verdict"
            case .socket(let family): out += " : \(typeName(.address(.destination, family))) . inet_service"
            case nil: break
            }
        }
        out += "\n"
        var flags: [String] = []
        if set.isInterval { flags.append("interval") }
        if set.isDynamic { flags += ["dynamic", "timeout"] }
        if !flags.isEmpty { out += "\t\tflags \(flags.joined(separator: ","))\n" }
        if let timeout = set.timeoutSeconds { out += "\t\ttimeout \(timeout)s\n" }
        if let capacity = set.capacity { out += "\t\tsize \(capacity)\n" }
        if !set.elements.isEmpty && set.elements.count <= elementsPerStatement {
            let elements = set.elements.map { "\t\t\t" + element($0) }
            out += "\t\telements = {\n" + elements.joined(separator: ",\n") + "\n\t\t}\n"
        }
        return out + "\t}\n"
    }

    static func renderChain(_ chain: Chain) -> String {
        var out = "\tchain \(chain.name) {\n"
        if let base = chain.base {
            out += "\t\ttype \(base.type.rawValue) hook \(base.hook.rawValue) priority \(base.priority); policy accept;\n"
        }
        for rule in chain.rules { out += "\t\t\(renderRule(rule))\n" }
        return out + "\t}\n"
    }

    public static func renderRule(_ rule: Rule) -> String {
        var parts = rule.matches.map(match) + rule.statements.map(statement)
        if let comment = rule.comment { parts.append("comment \"\(comment)\"") }
        return parts.joined(separator: " ")
    }

    static func expression(_ key: [KeyField]) -> String {
        key.map { field in
            switch field {
            case .address(let direction, let family):
                "\(family == .ipv4 ? "ip" : "ip6") \(direction == .source ? "saddr" : "daddr")"
            case .transport: "meta l4proto"
            case .port(let direction): "th \(direction == .source ? "sport" : "dport")"
            case .random(let modulus): "numgen random mod \(modulus)"
            }
        }.joined(separator: " . ")
    }

    static func typeName(_ field: KeyField) -> String {
        switch field {
        case .address(_, let family): family == .ipv4 ? "ipv4_addr" : "ipv6_addr"
        case .transport: "inet_proto"
        case .port: "inet_service"
        case .random: "integer"
        }
    }

    static func element(_ element: SetElement) -> String {
        var text = element.key.map(keyPart).joined(separator: " . ")
        switch element.data {
        case .verdict(let verdict): text += " : \(self.verdict(verdict))"
        case .socket(let socket): text += " : \(socket.address) . \(socket.port)"
        case nil: break
        }
        return text
    }

    static func keyPart(_ part: KeyPart) -> String {
        switch part {
        case .address(let address): "\(address)"
        case .transport(let transport): transport.rawValue
        case .port(let port): "\(port)"
        case .integer(let value): "\(value)"
        case .integerRange(let low, let high): "\(low)-\(high)"
        }
    }

    static func match(_ match: Match) -> String {
        switch match {
        case .family(let family):
            return "meta nfproto \(family)"
        case .transport(let set):
            let names = set.sorted().map(\.rawValue)
            return names.count == 1 ? "meta l4proto \(names[0])" : "meta l4proto { \(names.joined(separator: ", ")) }"
        case .port(let direction, let port):
            return "\(expression([.port(direction)])) \(port)"
        case .lookup(let key, let set, let negated):
            return "\(expression(key)) \(negated ? "!= " : "")@\(set)"
        case .connectionState(let states):
            let names = states.sorted().map(\.rawValue)
            return names.count == 1 ? "ct state \(names[0])" : "ct state { \(names.joined(separator: ", ")) }"
        case .destinationNATed:
            return "ct status dnat"
        case .markBits(let bits, let negated):
            return "meta mark & \(hex(bits)) \(negated ? "!=" : "==") \(hex(bits))"
        case .socketUser(let ids, let negated):
            return "meta skuid \(negated ? "!= " : "")\(idList(ids))"
        case .socketGroup(let ids, let negated):
            return "meta skgid \(negated ? "!= " : "")\(idList(ids))"
        case .addresses(let direction, let prefixes, let negated):
            precondition(!prefixes.isEmpty, "an address match needs at least one block")
            let values = prefixes.map { $0.length == $0.family.bitCount ? "\($0.address)" : "\($0)" }
            return "\(expression([.address(direction, prefixes[0].family)])) \(negated ? "!= " : "")\(list(values))"
        case .ports(let direction, let ranges, let negated):
            precondition(!ranges.isEmpty, "a port match needs at least one range")
            // A lone range is two comparisons: nft turns a bare `9000-9100`, and even a one-range
            // set, into a range expression, which Turnout does not encode.
            if ranges.count == 1 && !ranges[0].isSinglePort && !negated {
                let port = expression([.port(direction)])
                return "\(port) >= \(ranges[0].lower) \(port) <= \(ranges[0].upper)"
            }
            let values = ranges.count == 1 && !ranges[0].isSinglePort ? "{ \(ranges[0]) }" : list(ranges.map(\.description))
            return "\(expression([.port(direction)])) \(negated ? "!= " : "")\(values)"
        case .interface(let direction, let names, let negated):
            precondition(!names.isEmpty, "an interface match needs at least one name")
            return "\(direction == .input ? "iifname" : "oifname") \(negated ? "!= " : "")\(list(names.map { "\"\($0)\"" }))"
        case .probability:
            preconditionFailure("statistic probabilities are an iptables construct; the nftables compiler uses numgen")
        }
    }

    /// One value as itself, several as an anonymous set.
    private static func list(_ values: [String]) -> String {
        values.count == 1 ? values[0] : "{ \(values.joined(separator: ", ")) }"
    }

    static func statement(_ statement: Statement) -> String {
        switch statement {
        case .dnat(let socket):
            return "dnat \(socket.address.family == .ipv4 ? "ip" : "ip6") to \(socket)"
        case .dnatMap(let key, let map, let family):
            return "dnat \(family == .ipv4 ? "ip" : "ip6") to \(expression(key)) map @\(map)"
        case .redirect(let port):
            return "redirect to :\(port)"
        case .masquerade:
            return "masquerade"
        case .reject(.tcpReset):
            return "reject with tcp reset"
        case .reject(.portUnreachable):
            return "reject"
        case .updateSet(let key, let set):
            return "update @\(set) { \(expression(key)) }"
        case .orMark(let bits):
            return "meta mark set meta mark | \(hex(bits))"
        case .xorMark(let bits):
            return "meta mark set meta mark ^ \(hex(bits))"
        case .verdictMap(let key, .named(let map)):
            return "\(expression(key)) vmap @\(map)"
        case .verdictMap(let key, .inline(let elements)):
            return "\(expression(key)) vmap { \(elements.map(element).joined(separator: ", ")) }"
        case .verdict(let verdict):
            return self.verdict(verdict)
        }
    }

    static func verdict(_ verdict: Verdict) -> String {
        switch verdict {
        case .accept: "accept"
        case .drop: "drop"
        case .return: "return"
        case .jump(let chain): "jump \(chain)"
        case .goto(let chain): "goto \(chain)"
        }
    }

    static func idList(_ ids: Set<UInt32>) -> String {
        let sorted = ids.sorted().map(String.init)
        return sorted.count == 1 ? sorted[0] : "{ \(sorted.joined(separator: ", ")) }"
    }

    static func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16, uppercase: false).leftPadded(to: 8) }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
