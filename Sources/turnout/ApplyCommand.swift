import ArgumentParser
import TurnoutControl
import TurnoutNetlink
import TurnoutRules

/// `turnout apply`: makes the kernel's rules those of the table, in one atomic transaction.
struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Install a table's rules: one atomic transaction, only the difference when possible (needs CAP_NET_ADMIN).",
        discussion: """
        Examples:
          sudo turnout apply -f rules/canary.yaml                # nftables over netlink
          sudo turnout apply -f rules/canary.yaml --mode proxy   # TCP to the local proxy on :15001
          sudo turnout apply -f rules/canary.yaml --backend iptables
          sudo turnout apply -f rules/canary.yaml --format json  # the report as one JSON object

        Applying the same table again sends nothing. A changed table sends only the changed map
        elements and chains; if the installed rules are not what Turnout last wrote (edited by
        hand, or no record of the last apply), the whole table is replaced in one transaction.
        Invalid tables exit 2 and change nothing.
        """
    )

    @OptionGroup var rules: RuleOptions

    @Option(help: "nft (netlink, the default) or iptables (iptables-restore).")
    var backend: Backend = .nft

    @Option(help: "text or json.")
    var format: ReportFormat = .text

    func run() throws {
        let table = try TableFile.load(rules.file)
        try KernelAccess.require(for: "apply")
        let clock = ContinuousClock()
        let start = clock.now
        let report = try KernelCommandFailed.wrapping("apply") {
            switch backend {
            case .nft: try NftablesBackend().apply(table, options: rules.compilerOptions)
            case .iptables: try IptablesBackend().apply(table, options: rules.compilerOptions)
            }
        }
        print(report.printed(format, elapsed: clock.now - start, source: rules.file), terminator: "")
    }
}
