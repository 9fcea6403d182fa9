import ArgumentParser
import FoundationEssentials
import Glibc
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules

/// `turnout apply`: makes the kernel's rules those of the table, in one atomic transaction;
/// with `--watch`, keeps them so while the table's source changes.
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
          sudo turnout apply --watch --source file:/etc/turnout/table.yaml   # a daemon: follow the file

        Applying the same table again sends nothing. A changed table sends only the changed map
        elements and chains; if the installed rules are not what Turnout last wrote (edited by
        hand, or no record of the last apply), the whole table is replaced in one transaction.
        Invalid tables exit 2 and change nothing.

        With --watch, apply runs until SIGTERM: the source is watched, bursts of changes are
        applied 100 ms after the last one (at most 1 s after the first), and a source that
        cannot be read or holds an invalid table changes nothing (logged; `turnout status`
        shows it). Every table applied is kept in --last-good, which is applied first at the
        next start. Stopping leaves the rules installed.
        """
    )

    @Option(name: [.customShort("f"), .customLong("file")], help: "The table: a YAML/JSON file or a directory of them.")
    var file: String?

    @OptionGroup var dispatch: DispatchOptions

    @Option(help: "nft (netlink, the default) or iptables (iptables-restore).")
    var backend: Backend = .nft

    @Option(help: "text or json.")
    var format: ReportFormat = .text

    @Flag(help: "Keep running: apply every change of the source until SIGTERM.")
    var watch = false

    @Option(help: ArgumentHelp("With --watch, where the table lives: file:PATH (the default with -f), or etcd:http://HOST:PORT or etcd:https://HOST:PORT (several members: etcd:http://A:2379,http://B:2379).", valueName: "url"))
    var source: String?

    @OptionGroup var etcdTLS: EtcdTLSOptions

    @OptionGroup var etcdUser: EtcdCredentialOptions

    @Option(name: .customLong("last-good"), help: ArgumentHelp("With --watch, the file that keeps the last table applied ('none': no file; default \(WatchDaemonFiles.lastGoodPath), named for the network namespace outside the host's).", valueName: "path"))
    var lastGood: String?

    @Option(name: .customLong("status-file"), help: ArgumentHelp("With --watch, where the daemon's state is written for `turnout status` (default \(WatchDaemonFiles.statusPath), named for the network namespace outside the host's).", valueName: "path"))
    var statusFile: String?

    func validate() throws {
        if watch {
            guard (file == nil) != (source == nil) else { throw ValidationError("apply --watch needs -f FILE or --source URL (one of them)") }
        } else {
            guard file != nil else { throw ValidationError("apply needs -f FILE (or --watch --source URL)") }
            guard source == nil else { throw ValidationError("--source needs --watch") }
            guard !etcdTLS.isGiven else { throw ValidationError("--etcd-cacert, --etcd-cert and --etcd-key need --watch --source etcd:https://…") }
            guard !etcdUser.isGiven else { throw ValidationError("--etcd-user and --etcd-password-file need --watch --source etcd:…") }
            guard lastGood == nil, statusFile == nil else { throw ValidationError("--last-good and --status-file need --watch") }
        }
    }

    func run() throws {
        if watch { return try runWatching() }
        let path = file!
        let table = try TableFile.load(path)
        try KernelAccess.require(for: "apply")
        let clock = ContinuousClock()
        let start = clock.now
        let report = try KernelCommandFailed.wrapping("apply") {
            switch backend {
            case .nft: try NftablesBackend().apply(table, options: dispatch.compilerOptions)
            case .iptables: try IptablesBackend().apply(table, options: dispatch.compilerOptions)
            }
        }
        print(report.printed(format, elapsed: clock.now - start, source: path), terminator: "")
    }

    private func runWatching() throws {
        let location = source ?? "file:\(file!)"
        let tls = try etcdTLS.configuration()
        let credentials = try etcdUser.credentials()
        let tableSource: any TableSource
        do {
            tableSource = try TableSourceURL.open(location, tls: tls, credentials: credentials)
        } catch {
            throw BadInput(message: "apply: --source \(error)")
        }
        try KernelAccess.require(for: "apply --watch")
        let namespace: NetworkNamespaceKey
        do { namespace = try NetworkNamespaceKey.current() } catch {
            throw RuntimeFailure(message: "turnout apply: cannot tell which network namespace this is: \(error)")
        }
        let files = WatchDaemonFiles(namespace: namespace)
        let lastGoodPath = lastGood == "none" ? nil : (lastGood ?? files.lastGood)
        let statusFile = statusFile ?? files.status
        if let lastGoodPath { Self.makeParentDirectory(of: lastGoodPath) }
        Self.makeParentDirectory(of: statusFile)
        Self.makeParentDirectory(of: files.lock)
        // Held until this process exits: the kernel drops it however the daemon ends.
        let lock: DaemonLock
        do { lock = try DaemonLock(path: files.lock) } catch {
            switch error {
            case .held(_, let pid):
                throw RuntimeFailure(message: "turnout apply: another apply --watch\(pid.map { " (PID \($0))" } ?? "") already keeps \(namespace)'s rules (lock \(files.lock)); stop it first")
            case .system(let failure):
                throw RuntimeFailure(message: "turnout apply: cannot take the lock of \(namespace): \(failure)")
            }
        }

        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGHUP, SIGTERM, SIGINT] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let log: @Sendable (String) -> Void = { line in printError("turnout apply: \(line)") }
        let target = KernelRulesTarget(backend: backend == .nft ? .nft : .iptables, options: dispatch.compilerOptions)
        let reconciler: Reconciler
        do {
            reconciler = try Reconciler(source: tableSource, targets: [target], lastGoodFile: lastGoodPath, log: log)
            try reconciler.start()
        } catch {
            throw RuntimeFailure(message: "turnout apply: cannot start watching \(location): \(error)")
        }
        print("turnout apply: watching \(location) (mode \(dispatch.mode.rawValue), \(backend.rawValue)) in \(namespace); last good table in \(lastGoodPath ?? "no file"), status in \(statusFile)")
        fflush(nil)

        // The status file follows the reconciler: rewritten when its state moved, checked every 250 ms.
        var written: Reconciler.Status?
        var timeout = timespec(tv_sec: 0, tv_nsec: 250_000_000)
        while true {
            let received = sigtimedwait(&signals, nil, &timeout)
            let status = reconciler.status
            if status != written {
                do {
                    try ReconcilerStatusFile.write(status, to: statusFile)
                    written = status
                } catch {
                    log("status file \(statusFile) not written: \(error)")
                    written = status
                }
            }
            if received == SIGTERM || received == SIGINT {
                log("signal \(received == SIGTERM ? "SIGTERM" : "SIGINT"): stopping; the rules stay installed")
                reconciler.stop()
                if let notice = target.settle() { log("before stopping: \(notice)") }
                try? ReconcilerStatusFile.write(reconciler.status, to: statusFile)
                _ = consume lock
                return
            }
            if received == SIGHUP {
                log("SIGHUP: reading \(location) again")
                tableSource.refresh()
            }
        }
    }

    private static func makeParentDirectory(of path: String) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        try? FileManager.default.createDirectory(atPath: String(path[..<slash]), withIntermediateDirectories: true)
    }
}
