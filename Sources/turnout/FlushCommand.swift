import ArgumentParser
import TurnoutControl
import TurnoutNetlink

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
