import ArgumentParser
import TurnoutControl
import TurnoutModel
import TurnoutRules
import TurnoutSocketCapture

/// `turnout status`: what is installed, how it differs from a table, and what the proxy on the
/// admin address reports.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show Turnout's installed rules or socket capture, their drift from a table, and the proxy's counters (needs CAP_NET_ADMIN).",
        discussion: """
        Examples:
          sudo turnout status
          sudo turnout status -f rules/canary.yaml     # '-' installed only, '+' missing
          sudo turnout status -f rules/canary.yaml --backend iptables
          sudo turnout status --admin none             # rules only

        With a socket capture (`init --backend bpf`) in this network namespace, also its programs,
        inbound listener and counters, read from its pins (run with `nsenter --net`: `ip netns exec`
        hides /sys/fs/bpf). With a `turnout apply --watch` in this network namespace, also whether
        it still runs, its source, the revision installed and when.
        With a `turnout proxy` answering on --admin, also its readiness, table generation,
        connections per endpoint with their health, and what its services refused. No proxy
        there is a line, not an error. Something else answering on the default 127.0.0.1:15000
        (Envoy's admin port too) is a line as well; on an --admin given, it exits 1.
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

    @Option(name: .customLong("status-file"), help: ArgumentHelp("Where `apply --watch` leaves its state (default: this network namespace's, as apply --watch picks it).", valueName: "path"))
    var statusFile: String?

    @Option(help: ArgumentHelp("The proxy's admin address to read /ready and /stats from (default 127.0.0.1:15000; 'none' to skip).",
                               valueName: "address"))
    var admin: String?

    func run() throws {
        let adminAddress: SocketAddress?
        switch admin {
        case "none": adminAddress = nil
        case nil: adminAddress = SocketAddress(address: IPAddress("127.0.0.1")!, port: ProxyCommand.defaultAdminPort)
        case let text?:
            guard let address = SocketAddress(text) else {
                throw BadInput(message: "status: --admin \(text): not ADDR:PORT, [ADDR6]:PORT or none")
            }
            adminAddress = address
        }
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
        for capture in try KernelCommandFailed.wrapping("status", { try SocketCaptureStatus.installed() }) {
            for line in capture.summary { print(line) }
        }
        if let namespace = try? NetworkNamespaceKey.current() {
            let files = WatchDaemonFiles(namespace: namespace)
            if let watching = try? ReconcilerStatusFile.read(statusFile ?? files.status) {
                // The file outlives its daemon (a stop writes its last state; a crash leaves the
                // one before): the namespace's lock says whether anyone still keeps it.
                if let pid = DaemonLock.holder(of: files.lock) {
                    print("apply --watch running" + (pid > 0 ? " (PID \(pid))" : ""))
                } else {
                    print("apply --watch not running; its last state:")
                }
                for line in ReconcilerStatusFile.summary(watching, now: WallClock.now()) { print(line) }
            }
        }
        if let drift = status.drift, let file {
            if drift.isEmpty {
                print("in sync with \(file)")
            } else {
                print("DRIFT from \(file) (\(drift.count) lines; '-' installed only, '+' missing):")
                for line in drift { print("  \(line)") }
            }
        }
        if let adminAddress { try printProxy(at: adminAddress) }
    }

    /// The proxy's lines. Nothing listening there is a line too, since a host in `direct` mode
    /// runs no proxy; so is another program on the default port (Envoy's admin port is 15000
    /// as well), which only an address the user named makes an error.
    private func printProxy(at address: SocketAddress) throws {
        let report: ProxyStatusReport
        do {
            report = try ProxyStatusReport.fetch(from: address)
        } catch let error as HTTPError where error.connectionRefused {
            print("proxy at \(address): none answering")
            return
        } catch {
            let problem = "cannot read a turnout proxy's admin endpoint at \(address): \(error)"
            guard admin == nil else { throw RuntimeFailure(message: "turnout status: \(problem)") }
            print("proxy at \(address): \(problem)")
            return
        }
        for line in report.summary(at: address, now: WallClock.now()) { print(line) }
    }
}
