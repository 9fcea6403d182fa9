import ArgumentParser
import Glibc
import TurnoutControl
import TurnoutRules

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

        With a `turnout apply --watch` running, also its source, the revision installed and when.
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

    @Option(name: .customLong("status-file"), help: ArgumentHelp("Where a running `apply --watch` leaves its state.", valueName: "path"))
    var statusFile = ReconcilerStatusFile.defaultPath

    func run() throws {
        let table = try file.map(TableFile.load)
        try KernelAccess.require(for: "status")
        let options = ServiceCompilerOptions(mode: mode, proxyPort: proxyPort)
        let status = try KernelCommandFailed.wrapping("status") {
            switch backend {
            case .nft: try NftablesBackend().status(comparingWith: table, options: options)
            case .iptables: try IptablesBackend().status(comparingWith: table, options: options)
            }
        }
        for line in status.summary { print(line) }
        if let watching = try? ReconcilerStatusFile.read(statusFile) {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            for line in ReconcilerStatusFile.summary(watching, now: Double(now.tv_sec) + Double(now.tv_nsec) / 1e9) { print(line) }
        }
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
