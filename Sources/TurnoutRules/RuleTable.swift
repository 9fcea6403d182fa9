/// The address family of a netfilter table, as nft names it (`iptables` tables are `ip`/`ip6`).
public enum TableFamily: String, Hashable, Sendable {
    case inet
    case ip
    case ip6
}

/// One netfilter table of the rule IR: its sets and maps, then its chains.
///
/// Both dialects use the same IR: an nftables table (`inet turnout`) or one iptables table
/// (`nat`, `filter`) of one family. The compilers produce it, the renderers print it, the tracer
/// walks it, and later the netlink encoder sends it; all of them read the same immutable value.
public struct RuleTable: Hashable, Sendable {
    public var name: String
    public var family: TableFamily
    public var sets: [NamedSet]
    public var chains: [Chain]

    public init(name: String, family: TableFamily, sets: [NamedSet] = [], chains: [Chain] = []) {
        self.name = name
        self.family = family
        self.sets = sets
        self.chains = chains
    }

    public func chain(named name: String) -> Chain? { chains.first { $0.name == name } }
    public func set(named name: String) -> NamedSet? { sets.first { $0.name == name } }
}
