import ArgumentParser
import TurnoutModel
import TurnoutRules

/// Which rule language a command prints or traces.
enum RuleFormat: String, ExpressibleByArgument, CaseIterable {
    /// `nft -f` input: one `inet` table for both families.
    case nft
    /// `iptables-restore` input: the IPv4 rules.
    case iptables
    /// `ip6tables-restore` input: the IPv6 rules.
    case ip6tables

    func tables(for table: ServiceTable, options: ServiceCompilerOptions) -> [RuleTable] {
        switch self {
        case .nft: [NftablesServiceCompiler.compile(table, options: options)]
        case .iptables: IptablesServiceCompiler.compile(table, family: .ipv4, options: options)
        case .ip6tables: IptablesServiceCompiler.compile(table, family: .ipv6, options: options)
        }
    }

    func render(_ tables: [RuleTable], header: String) -> String {
        switch self {
        case .nft: NftablesRenderer.render(tables, header: header)
        case .iptables, .ip6tables: IptablesRenderer.render(tables, header: header)
        }
    }
}
