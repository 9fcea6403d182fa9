import TurnoutModel
import TurnoutRules

/// One rule of Turnout's in an iptables table: the chain it is in, its text, and that text in
/// iptables-save's form.
struct IptablesRuleLine: Hashable, Sendable {
    var chain: String
    /// As it will be written to iptables-restore: Turnout's rendering for a wanted rule,
    /// iptables-save's text for an installed one (which `-D` needs to find it). Both restore.
    var spec: String
    /// What comparisons use (`IptablesRuleText.canonical`).
    var canonical: String

    init(chain: String, spec: String, family: IPFamily) {
        self.chain = chain
        self.spec = spec
        self.canonical = IptablesRuleText.canonical(spec, family: family)
    }

    /// The line as iptables-save would print it, for people.
    var savedLine: String { "-A \(chain) \(canonical)" }
}

/// A `TURNOUT-` chain and its rules, in order.
struct IptablesOwnedChain: Equatable, Sendable {
    var name: String
    var rules: [IptablesRuleLine]
}

/// Turnout's part of one iptables table (`nat` or `filter`) of one family: every `TURNOUT-`
/// chain with its rules, and the rules of built-in chains that jump or go to a `TURNOUT-` chain.
///
/// Everything else in the table (foreign chains, foreign rules, policies) is not read into it,
/// so nothing computed from it can touch them.
struct IptablesOwnedTable: Equatable, Sendable {
    var name: String
    private(set) var chains: [IptablesOwnedChain] = []
    var jumps: [IptablesRuleLine] = []
    /// Chain name → position in `chains`: a big table has tens of thousands of chains.
    private var chainIndex: [String: Int] = [:]

    static let builtinChainNames: Set<String> = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]

    init(name: String, chains: [IptablesOwnedChain] = [], jumps: [IptablesRuleLine] = []) {
        self.name = name
        self.jumps = jumps
        setChains(chains)
    }

    private mutating func setChains(_ chains: [IptablesOwnedChain]) {
        self.chains = chains
        chainIndex = Dictionary(chains.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Reads the `*name` section of iptables-save output or of iptables-restore input.
    ///
    /// A chain is built-in when it is declared with a policy (`:INPUT ACCEPT [0:0]`), or, in
    /// restore input, which never declares built-in chains, when it has a built-in chain's name.
    init(parsing text: String, table: String, family: IPFamily, ownership: IptablesOwnership = .services) {
        self.init(name: table)
        var inTable = false
        var builtin: Set<String> = [], userChains: Set<String> = []
        var rules: [String: [IptablesRuleLine]] = [:], order: [String] = []
        func own(_ chain: String) {
            if rules[chain] == nil { rules[chain] = []; order.append(chain) }
        }
        for rawLine in text.utf8.split(separator: UInt8(ascii: "\n")) {
            let line = Substring(rawLine).trimmingTrailingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("*") { inTable = line.dropFirst() == table; continue }
            guard inTable else { continue }
            if line == "COMMIT" { inTable = false; continue }
            if line.hasPrefix(":") {
                let fields = line.dropFirst().split(separator: " ")
                guard let chain = fields.first.map(String.init) else { continue }
                if fields.count > 1 && fields[1] != "-" {
                    builtin.insert(chain)
                } else {
                    userChains.insert(chain)
                    if ownership.owns(chain) { own(chain) }
                }
            } else if line.hasPrefix("-A ") {
                let rest = line.dropFirst(3)
                let chain = String(rest.prefix { $0 != " " })
                let spec = String(rest.dropFirst(chain.count).drop { $0 == " " })
                let rule = IptablesRuleLine(chain: chain, spec: spec, family: family)
                if ownership.owns(chain) {
                    own(chain)
                    rules[chain]!.append(rule)
                } else if builtin.contains(chain) || (!userChains.contains(chain) && Self.builtinChainNames.contains(chain)),
                          let target = IptablesRuleText.target(of: spec), ownership.owns(target) {
                    jumps.append(rule)
                }
            }
        }
        setChains(order.map { IptablesOwnedChain(name: $0, rules: rules[$0]!) })
    }

    var isEmpty: Bool { chains.isEmpty && jumps.isEmpty }

    var ruleCount: Int { chains.reduce(0) { $0 + $1.rules.count } + jumps.count }

    func chain(named name: String) -> IptablesOwnedChain? {
        chainIndex[name].map { chains[$0] }
    }
}

/// The iptables tool names and labels of one IP family.
extension IPFamily {
    var iptablesLabel: String { self == .ipv4 ? "iptables" : "ip6tables" }
    var iptablesSave: String { "\(iptablesLabel)-save" }
    var iptablesRestore: String { "\(iptablesLabel)-restore" }
}

extension Substring {
    fileprivate func trimmingTrailingWhitespace() -> Substring {
        var end = endIndex
        while end > startIndex, [" ", "\t", "\r"].contains(self[index(before: end)]) { end = index(before: end) }
        return self[startIndex..<end]
    }
}
