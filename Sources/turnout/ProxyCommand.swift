import ArgumentParser
import Glibc
import TurnoutControl
import TurnoutModel
import TurnoutProxy

/// `turnout proxy`: the transparent proxy. Captured connections arrive on the outbound and
/// inbound ports; each is routed by its original destination and spliced to an endpoint.
struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run the transparent proxy: route captured connections by their original destination, splice them to endpoints.",
        discussion: """
        Examples:
          turnout proxy -f rules/canary.yaml                       # 15001 out, 15006 in, admin on 127.0.0.1:15000
          turnout proxy -f rules/ --workers 2 --balancer p2c-ewma  # a directory of tables, latency-aware balancing
          turnout proxy -f table.yaml --unknown reject             # only destinations the table knows
          curl -s 127.0.0.1:15000/metrics                          # Prometheus text; also /stats, /config, /ready

        Run it as the proxy's user (uid 1337 by default) in a namespace where `turnout init`
        installed capture, so its own connections are not captured again.

        Outbound: a connection whose original destination is a service VIP:port of the table
        goes to one of its endpoints (weights respected); if a connect is refused or times out,
        another endpoint is tried (nothing was sent yet). Any other destination is passed
        through as it was (--unknown passthrough, the default) or refused with a reset
        (--unknown reject). Inbound: delivered to its original destination from 127.0.0.6 / ::6.
        A connection whose original destination is the proxy itself is refused (loop guard).

        Health: every endpoint gets a TCP handshake every --health-interval seconds; after
        --unhealthy-threshold failures in a row it takes no new connection until
        --healthy-threshold checks pass. Independently, --eject-after connect failures in a row
        (real traffic, any worker) eject it from its service for --ejection-time seconds, longer
        each time, at most --max-ejected-percent of a service at once. When less than
        --panic-threshold percent of a service's endpoints are available, health is ignored and
        all of them are tried.

        The table is watched (inotify on its directory, and a check every 2 s) and re-read on
        SIGHUP; changes are applied 100 ms after the last one, at most 1 s after the first. An
        invalid table, or a source that cannot be read, changes nothing: the table in use stays,
        with a log line. Established connections keep their endpoint.

        SIGTERM or SIGINT drains: /ready answers 503, the listeners stay open (the capture rules
        still send the app's connections here) and open connections go on. The proxy exits once
        no connection has been open and none accepted for 1 s, or after --drain-time seconds,
        closing what is still open. SIGINT while draining exits at once; a second SIGTERM changes
        nothing (an orchestrator may send it twice: a preStop hook, then the kubelet).

        Replacing a running proxy (an upgrade) refuses no connection: start the new one with
        --replace PID, as the same user, in the same network namespace. It binds its listeners
        beside the old one's (SO_REUSEPORT), then sends the old one SIGUSR2, which frees its admin
        address, shuts its listeners down and drains its open connections as on SIGTERM. With
        net.ipv4.tcp_migrate_req=1 (set by the new proxy when it may, else logged) the kernel
        moves connections still waiting in the old listeners' queues to the new ones.
        """
    )

    @Option(name: .shortAndLong, help: "The table: a YAML/JSON file or a directory of them (the same as --source file:PATH).")
    var file: String?

    @Option(help: ArgumentHelp("Where the table lives and is watched: file:PATH, or etcd:http://HOST:PORT or etcd:https://HOST:PORT (several members: etcd:http://A:2379,http://B:2379).", valueName: "url"))
    var source: String?

    @OptionGroup var etcdTLS: EtcdTLSOptions

    @OptionGroup var etcdUser: EtcdCredentialOptions

    @Option(name: .customLong("last-good"), help: ArgumentHelp("A file that keeps the last table installed, read at start before the source answers (default: none).", valueName: "path"))
    var lastGood: String?

    @Option(help: ArgumentHelp("Outbound listen address (repeatable; default 0.0.0.0:15001 and [::]:15001).", valueName: "address"))
    var outbound: [String] = []

    @Option(help: ArgumentHelp("Inbound listen address (repeatable; default 0.0.0.0:15006 and [::]:15006; 'none' for no inbound).", valueName: "address"))
    var inbound: [String] = []

    @Option(help: ArgumentHelp("Admin address for /metrics, /stats, /config, /ready (default 127.0.0.1:15000; 'none' to disable).", valueName: "address"))
    var admin = "127.0.0.1:\(Self.defaultAdminPort)"

    /// The admin endpoint's port unless `--admin` says otherwise; `init` warns about it too,
    /// since it does not know the proxy's flags.
    static let defaultAdminPort: UInt16 = 15000

    @Option(help: "Worker threads (default: one per core).")
    var workers: Int?

    @Option(help: "passthrough (default) or reject: what happens to destinations the table does not know.")
    var unknown: String = ProxyConfiguration.UnknownDestination.passthrough.rawValue

    @Option(help: "weighted (smooth weighted round robin, the default) or p2c-ewma (power of two choices over connect latency × in-flight).")
    var balancer: String = ProxyConfiguration.Balancer.weighted.rawValue

    @Option(help: "auto (default: io_uring where allowed, else epoll), uring or epoll: how workers wait on their sockets.")
    var io: String = ProxyConfiguration.IOEngine.auto.rawValue

    @Option(name: .customLong("connect-timeout"), help: "Seconds per upstream connect attempt (default 5).")
    var connectTimeout: Double = 5

    @Option(name: .customLong("connect-attempts"), help: "Attempts per connection, each to another endpoint (default 3, at most 7).")
    var connectAttempts = 3

    @Option(name: .customLong("idle-timeout"), help: "Seconds without a byte either way before a connection is closed (default 3600).")
    var idleTimeout: Double = 3600

    @Option(name: .customLong("half-closed-timeout"), help: "Seconds a connection may stay half closed (default 300).")
    var halfClosedTimeout: Double = 300

    @Option(name: .customLong("max-connections-per-service"), help: "Open connections per service port before new ones are refused (default 1024).")
    var maxConnectionsPerService = 1024

    @Option(name: .customLong("pipe-size"), help: "Bytes of each splice pipe (default 1 MiB, or fs.pipe-max-size when lower; 0 = the kernel's 64 KiB).")
    var pipeSize: Int?

    @Option(name: .customLong("pipe-budget"), help: ArgumentHelp("Bytes of splice pipes held at once, over all workers, or 'unlimited' (default: 3/4 of the uid's fs.pipe-user-pages-soft; unlimited with CAP_SYS_RESOURCE). Past half, pipes are 64 KiB; once spent, bulk relays copy. 0 = never splice.", valueName: "bytes|unlimited"))
    var pipeBudget: String?

    @Option(name: .customLong("health-interval"), help: "Seconds between active TCP checks of every endpoint (default 5; 0 turns them off).")
    var healthInterval: Double = 5

    @Option(name: .customLong("health-timeout"), help: "Seconds a check's handshake may take (default 1, at most the interval).")
    var healthTimeout: Double = 1

    @Option(name: .customLong("healthy-threshold"), help: "Passed checks in a row that bring an unhealthy endpoint back (default 2).")
    var healthyThreshold = 2

    @Option(name: .customLong("unhealthy-threshold"), help: "Failed checks in a row that mark an endpoint unhealthy (default 3).")
    var unhealthyThreshold = 3

    @Option(name: .customLong("eject-after"), help: "Connect failures in a row that eject an endpoint from its service (default 5).")
    var ejectAfter = 5

    @Option(name: .customLong("ejection-time"), help: "Seconds of the first ejection; the k-th in a row lasts k times this (default 30).")
    var ejectionTime: Double = 30

    @Option(name: .customLong("max-ejection-time"), help: "Seconds an ejection lasts at most (default 300).")
    var maxEjectionTime: Double = 300

    @Option(name: .customLong("max-ejected-percent"), help: "Most endpoints of a service ejected at once, in percent (default 50).")
    var maxEjectedPercent = 50

    @Option(name: .customLong("panic-threshold"), help: "Percent of a service's endpoints that must be available for health to count; below it all are tried (default 50; 0 never).")
    var panicThreshold = 50

    @Option(name: .customLong("replace"), help: ArgumentHelp("A running turnout proxy to take over from (an upgrade): bind beside it, then send it SIGUSR2 (it stops listening and drains).", valueName: "pid"))
    var replace: Int32?

    @Option(name: .customLong("drain-time"), help: "Seconds a SIGTERM or SIGINT lets open connections finish (new ones still served) before the proxy exits (default 5; sooner once none has been open for 1 s; 0 = at once).")
    var drainTime: Double = 5

    func run() throws {
        let configuration = try proxyConfiguration()
        guard drainTime.isFinite, (0...3600).contains(drainTime) else {
            throw BadInput(message: "proxy: --drain-time \(drainTime): seconds from 0 to 3600")
        }
        guard (file == nil) != (source == nil) else { throw BadInput(message: "proxy: give the table with -f FILE or --source URL (one of them)") }
        let location = source ?? "file:\(file!)"
        let tls = try etcdTLS.configuration()
        let credentials = try etcdUser.credentials()
        let url: TableSourceURL
        let tableSource: any TableSource
        do {
            url = try TableSourceURL(location)
            tableSource = try url.open(tls: tls, credentials: credentials)
        } catch {
            throw BadInput(message: "proxy: --source \(error)")
        }
        // A file is read now, so a bad one exits 2 before anything binds. Another source starts
        // from the last-good file, or from no service, until it answers.
        let table: ServiceTable
        if case .file(let path) = url {
            table = try TableFile.load(path)
        } else {
            table = try lastGood.flatMap { path throws(TableError) in try LastGoodTable.read(path) } ?? ServiceTable(services: [])
        }
        let adminAddress: SocketAddress? = admin == "none" ? nil : try Self.address(admin, "--admin")
        let replaced = try replace.map { pid in
            do { return try ReplacedProxy(pid: pid) } catch { throw BadInput(message: "proxy: --replace \(pid): \(error)") }
        }

        // Signals are taken by sigtimedwait on this thread only: block them before any other
        // thread exists, so every thread inherits the mask and none is interrupted.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGHUP, SIGTERM, SIGINT, SIGUSR2] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let log: @Sendable (String) -> Void = { line in printError("turnout proxy: \(line)") }
        if let replaced, let problem = replaced.enableRequestMigration() { log(problem) }
        let proxy: TransparentProxy
        let reconciler: Reconciler
        var adminServer: ProxyAdmin? = nil
        do {
            proxy = try TransparentProxy(configuration: configuration, table: table, log: log)
            reconciler = try Reconciler(source: tableSource, targets: [ProxyReloadTarget(proxy)], lastGoodFile: lastGood,
                                        installed: table, log: log)
            // A replacing proxy binds its admin address once the old one frees it (below).
            if replaced == nil {
                adminServer = try adminAddress.map { address throws(SystemCallError) in
                    try ProxyAdmin(proxy: proxy, address: address, source: location) { reconciler.status }
                }
            }
            try reconciler.start()
        } catch {
            let listeners = configuration.outbound + configuration.inbound + (adminAddress.map { [$0] } ?? [])
            let sameUser = replaced != nil && error.errno == EADDRINUSE
                ? "\n  (--replace: run as the same user as PID \(replace!); an SO_REUSEPORT group takes one user's sockets only)" : ""
            throw RuntimeFailure(message: "turnout proxy: cannot start: \(error)" + busyPortHint(error, listeners: listeners) + sameUser)
        }
        if let replaced {
            // Listening beside it now: the old proxy may stop listening. From here on nothing
            // may end this one, or no proxy would be left: its admin address, which the old one
            // frees within milliseconds of the signal, is waited for and at worst done without.
            do throws(SystemCallError) {
                try replaced.handOver()
                log("replacing PID \(replaced.pid): listening beside it; sent SIGUSR2")
                adminServer = try adminAddress.map { address throws(SystemCallError) in
                    try ProxyAdmin.binding(waitingAtMost: .seconds(10)) { () throws(SystemCallError) in
                        try ProxyAdmin(proxy: proxy, address: address, source: location) { reconciler.status }
                    }
                }
            } catch {
                log("--replace \(replaced.pid): \(error); serving on without an admin endpoint")
            }
        }
        print("turnout proxy: \(configuration.workers) worker\(configuration.workers == 1 ? "" : "s") (\(proxy.io.rawValue)); outbound \(configuration.outbound.map { "\($0)" }.joined(separator: ", "))"
              + "; inbound \(configuration.inbound.isEmpty ? "none" : configuration.inbound.map { "\($0)" }.joined(separator: ", "))"
              + "; admin \(adminServer.map { "\($0.address)" } ?? "none"); table \(location): \(proxy.snapshot.routes.routes.count) routes (generation 1)")
        fflush(nil)  // all streams: a supervisor reading the pipe sees the start line now

        // SIGHUP, whether serving or draining.
        let reread = {
            log("SIGHUP: reading \(location) again")
            tableSource.refresh()
        }
        while true {
            let received = sigwaitinfo(&signals, nil)
            if received == SIGTERM || received == SIGINT || received == SIGUSR2 {
                if received == SIGUSR2 { handOver(proxy, admin: adminServer, log: log) } else { adminServer?.markNotReady() }
                drain(proxy, signal: received, admin: adminServer, waitingOn: &signals, reread: reread, log: log)
                reconciler.stop()
                proxy.stop()
                adminServer?.stop()
                return
            }
            if received == SIGHUP { reread() }
        }
    }

    /// A replacing proxy listens beside this one (SIGUSR2): free the admin address for it and
    /// stop listening, so every new connection goes to it; open ones go on here.
    private func handOver(_ proxy: TransparentProxy, admin: ProxyAdmin?, log: @Sendable (String) -> Void) {
        admin?.markNotReady()
        admin?.stop()
        let closed = proxy.closeListeners()
        log("signal SIGUSR2: handing over to a replacing proxy: admin address freed, listeners shut down"
            + (closed ? "" : " (a worker did not confirm within 2 s)"))
    }

    /// Serves on until ``ProxyDrain`` says the proxy may stop, or SIGINT comes; SIGHUP still
    /// re-reads the table meanwhile. A second SIGTERM is logged and changes nothing: Kubernetes
    /// sends one after a preStop hook that may have sent its own, and either must not cut the
    /// drain short. Observes every 50 ms.
    private func drain(_ proxy: TransparentProxy, signal first: Int32, admin: ProxyAdmin?, waitingOn signals: inout sigset_t,
                       reread: () -> Void, log: @Sendable (String) -> Void) {
        // A replacing proxy may come while this one drains for SIGTERM: it then stops listening too.
        var handedOver = first == SIGUSR2
        var drain = ProxyDrain(started: .now, limit: .seconds(drainTime), accepted: proxy.acceptedConnections)
        log("signal \(Self.name(first)): draining \(Self.connections(proxy.openConnections)) for at most \(drainTime == drainTime.rounded() ? "\(Int(drainTime))" : "\(drainTime)") s"
            + " (sooner once none has been open for 1 s; SIGINT stops at once)")
        var interval = timespec(tv_sec: 0, tv_nsec: 50_000_000)
        while true {
            switch drain.observe(at: .now, open: proxy.openConnections, accepted: proxy.acceptedConnections) {
            case .wait:
                break
            case .drained:
                log("drained: no connection open; stopping")
                return
            case .timeUp(let open):
                log("drain time over: stopping, closing \(Self.connections(open))")
                return
            }
            let received = sigtimedwait(&signals, nil, &interval)
            if received == SIGINT {
                log("signal SIGINT while draining: stopping now, closing \(Self.connections(proxy.openConnections))")
                return
            }
            if received == SIGTERM {
                log("signal SIGTERM again: draining on (SIGINT stops at once)")
            }
            if received == SIGUSR2 && !handedOver {
                handOver(proxy, admin: admin, log: log)
                handedOver = true
            }
            if received == SIGHUP { reread() }
        }
    }

    /// "1 open connection", "3 open connections".
    private static func connections(_ count: Int) -> String {
        "\(count) open connection\(count == 1 ? "" : "s")"
    }

    private static func name(_ signal: Int32) -> String {
        signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : signal == SIGUSR2 ? "SIGUSR2" : "signal \(signal)"
    }

    private func proxyConfiguration() throws -> ProxyConfiguration {
        let outboundAddresses = try (outbound.isEmpty ? ["0.0.0.0:15001"] + (Self.hasIPv6 ? ["[::]:15001"] : []) : outbound)
            .map { try Self.address($0, "--outbound") }
        let inboundAddresses = try (inbound.isEmpty ? ["0.0.0.0:15006"] + (Self.hasIPv6 ? ["[::]:15006"] : []) : inbound)
            .filter { $0 != "none" }.map { try Self.address($0, "--inbound") }
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        var configuration = ProxyConfiguration(outbound: outboundAddresses, inbound: inboundAddresses, workers: workers ?? max(1, cores))
        guard (1...256).contains(configuration.workers) else { throw BadInput(message: "proxy: --workers \(configuration.workers): between 1 and 256") }
        guard let unknownDestination = ProxyConfiguration.UnknownDestination(rawValue: unknown) else {
            throw BadInput(message: "proxy: --unknown \(unknown): passthrough or reject")
        }
        guard let balancerKind = ProxyConfiguration.Balancer(rawValue: balancer) else {
            throw BadInput(message: "proxy: --balancer \(balancer): weighted or p2c-ewma")
        }
        configuration.unknown = unknownDestination
        configuration.balancer = balancerKind
        guard let engine = ProxyConfiguration.IOEngine(rawValue: io) else {
            throw BadInput(message: "proxy: --io \(io): auto, uring or epoll")
        }
        configuration.io = engine
        configuration.connectTimeout = try Self.seconds(connectTimeout, "--connect-timeout")
        configuration.idleTimeout = try Self.seconds(idleTimeout, "--idle-timeout")
        configuration.halfClosedTimeout = try Self.seconds(halfClosedTimeout, "--half-closed-timeout")
        guard (1...7).contains(connectAttempts) else { throw BadInput(message: "proxy: --connect-attempts \(connectAttempts): between 1 and 7") }
        configuration.connectAttempts = connectAttempts
        guard maxConnectionsPerService > 0 else { throw BadInput(message: "proxy: --max-connections-per-service must be above 0") }
        configuration.maxConnectionsPerService = maxConnectionsPerService
        configuration.pipeSize = try Self.pipeSize(pipeSize, default: configuration.pipeSize)
        configuration.pipeBudget = try Self.pipeBudget(pipeBudget)
        for (value, flag) in [(healthyThreshold, "--healthy-threshold"), (unhealthyThreshold, "--unhealthy-threshold"), (ejectAfter, "--eject-after")]
        where value < 1 {
            throw BadInput(message: "proxy: \(flag) \(value): must be 1 or more")
        }
        for (value, flag) in [(maxEjectedPercent, "--max-ejected-percent"), (panicThreshold, "--panic-threshold")] where !(0...100).contains(value) {
            throw BadInput(message: "proxy: \(flag) \(value): a percentage, 0 to 100")
        }
        if healthInterval != 0 && healthTimeout > healthInterval {
            throw BadInput(message: "proxy: --health-timeout \(healthTimeout): must not exceed --health-interval \(healthInterval)")
        }
        if maxEjectionTime < ejectionTime {
            throw BadInput(message: "proxy: --max-ejection-time \(maxEjectionTime): must not be below --ejection-time \(ejectionTime)")
        }
        do {
            configuration.healthCheck = healthInterval == 0 ? nil
                : try HealthCheckPolicy(interval: Self.seconds(healthInterval, "--health-interval"),
                                        timeout: Self.seconds(healthTimeout, "--health-timeout"),
                                        healthyThreshold: healthyThreshold, unhealthyThreshold: unhealthyThreshold)
            configuration.outlier = try OutlierPolicy(consecutiveFailures: ejectAfter,
                                                      baseEjectionTime: Self.seconds(ejectionTime, "--ejection-time"),
                                                      maxEjectionTime: Self.seconds(maxEjectionTime, "--max-ejection-time"),
                                                      maxEjectedPercent: maxEjectedPercent)
            configuration.panicThreshold = try PanicThreshold(percent: panicThreshold)
        } catch let error as ValueError {
            throw BadInput(message: "proxy: \(error)")
        }
        return configuration
    }

    /// The pipe size to ask for: the default is lowered to what the kernel allows an
    /// unprivileged process (`fs.pipe-max-size`); an explicit size above it is refused unless
    /// the proxy runs as root, which the kernel lets exceed it.
    private static func pipeSize(_ requested: Int?, default standard: Int32) throws -> Int32 {
        let maximum = ProxyConfiguration.kernelPipeMaxSize()
        guard let requested else { return maximum.map { min($0, standard) } ?? standard }
        guard requested == 0 || (4096...(1 << 30)).contains(requested) else {
            throw BadInput(message: "proxy: --pipe-size \(requested): 0 (the kernel's default) or bytes from 4096 to 1 GiB")
        }
        if let maximum, requested > maximum, geteuid() != 0 {
            throw BadInput(message: "proxy: --pipe-size \(requested): above fs.pipe-max-size (\(maximum)), which only root may exceed")
        }
        return Int32(requested)
    }

    private static func pipeBudget(_ text: String?) throws -> PipeBudget {
        guard let text else { return .automatic }
        if text == "unlimited" { return .unlimited }
        guard let bytes = Int(text), bytes >= 0 else {
            throw BadInput(message: "proxy: --pipe-budget \(text): bytes (0 = never splice) or 'unlimited'")
        }
        return .bytes(bytes)
    }

    private static var hasIPv6: Bool { access("/proc/net/if_inet6", F_OK) == 0 }

    private static func address(_ text: String, _ flag: String) throws -> SocketAddress {
        guard let address = SocketAddress(text) else { throw BadInput(message: "proxy: \(flag) \(text): not ADDR:PORT or [ADDR6]:PORT") }
        return address
    }

    private static func seconds(_ value: Double, _ flag: String) throws -> Duration {
        guard value.isFinite, value > 0, value <= 86_400 * 7 else { throw BadInput(message: "proxy: \(flag) \(value): seconds above 0, at most a week") }
        return .seconds(value)
    }
}
