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

/// `turnout flush`: removes Turnout's rules and nothing else.
struct FlushCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flush",
        abstract: "Remove Turnout's rules only (needs CAP_NET_ADMIN); flushing twice is harmless.",
        discussion: """
        Examples:
          sudo turnout flush                      # deletes the nftables tables inet turnout and inet turnout-capture
          sudo turnout flush --backend iptables   # deletes the TURNOUT- chains and the jumps to them

        Foreign tables, chains and rules stay byte-identical; established connections keep
        working (conntrack keeps their translation).
        """
    )

    @Option(help: "nft or iptables.")
    var backend: Backend = .nft

    @Option(help: "text or json.")
    var format: ReportFormat = .text

    func run() throws {
        try KernelAccess.require(for: "flush")
        let clock = ContinuousClock()
        let start = clock.now
        let report = try KernelCommandFailed.wrapping("flush") {
            switch backend {
            case .nft: try NftablesBackend().flush()
            case .iptables: try IptablesBackend().flush()
            }
        }
        print(report.printed(format, elapsed: clock.now - start, source: nil), terminator: "")
    }
}

/// `turnout status`: what is installed, and how it differs from a table.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show Turnout's installed rules and their drift from a table (needs CAP_NET_ADMIN).",
        discussion: """
        Examples:
          sudo turnout status
          sudo turnout status -f rules/canary.yaml     # '-' installed only, '+' missing
          sudo turnout status -f rules/canary.yaml --backend iptables
        """
    )

    @Option(name: [.customShort("f"), .customLong("file")], help: "A table to compare the installed rules with.")
    var file: String?

    @Option(help: "The mode the table would be applied in.")
    var mode: DispatchMode = .direct

    @Option(help: "The proxy port of proxy mode.")
    var proxyPort: UInt16 = ServiceCompilerOptions.defaultProxyPort

    @Option(help: "nft or iptables.")
    var backend: Backend = .nft

    func run() throws {
        let table = try file.map(TableFile.load)
        try KernelAccess.require(for: "status")
        let options = ServiceCompilerOptions(mode: mode, proxyPort: proxyPort)
        let status: InstalledStatus
        do {
            switch backend {
            case .nft: status = try NftablesBackend().status(comparingWith: table, options: options)
            case .iptables: status = try IptablesBackend().status(comparingWith: table, options: options)
            }
        } catch let error as NetlinkError where error.isPermissionDenied {
            throw KernelAccessDenied(command: "status")
        } catch let error as NetlinkError {
            throw KernelCommandFailed(command: "status", detail: error.description)
        } catch let error as ToolError {
            throw KernelCommandFailed(command: "status", detail: error.description)
        }
        for line in status.summary { print(line) }
        if let drift = status.drift, let file {
            if drift.isEmpty {
                print("in sync with \(file)")
            } else {
                print("DRIFT from \(file) (\(drift.count) lines; '-' installed only, '+' missing):")
                for line in drift { print("  \(line)") }
            }
        }
    }
}
