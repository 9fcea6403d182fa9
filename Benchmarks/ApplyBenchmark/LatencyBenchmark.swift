import Foundation
import TurnoutBenchmarkSupport
import TurnoutControl
import TurnoutModel
import TurnoutRules

/// One client configuration of the latency lab: a client namespace with its rules.
struct LatencyConfig {
    enum Backend: String {
        /// No rules at all; the client connects straight to an endpoint address.
        case none = "no NAT"
        case nft
        case iptables
    }

    let backend: Backend
    /// Services in the table, the target included (0 for `.none`).
    let services: Int
    /// Endpoints of every other service (the target always has its own 10).
    let endpointsPerOther: Int
    let table: ServiceTable?
    var namespace: Namespace?
    /// Its place in the lab: names its veth pair and its addresses (10.2.index.0/24).
    var index: Int?
    var installTime: Duration?
    var installMessages: Int?
    /// iptables: the target's rule position in TURNOUT-SERVICES and that chain's length.
    var walk: (position: Int, of: Int)?
    var runs: [ConnectSummary] = []
    var failure: String?

    var label: String {
        switch backend {
        case .none: "no NAT (direct to endpoint)"
        case .nft, .iptables: "\(backend.rawValue), \(Format.count(services)) svc × \(endpointsPerOther) ep"
        }
    }
}

/// A running helper process (the lab's server), stopped by PID.
final class Helper {
    let process: Process
    init(_ process: Process) { self.process = process }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        for _ in 0..<50 where process.isRunning { Thread.sleep(forTimeInterval: 0.1) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Part 3: connect latency to one VIP with a small and a large table installed, nft and
/// iptables, in a namespace lab.
///
/// Lab: one endpoint namespace (10.1.0.1–10.1.0.10 on its loopback, one server accepting on
/// :8080) and one client namespace per configuration, each joined to the endpoint namespace by a
/// veth pair of its own. Client `i` owns 10.2.i.0/24 on its loopback (any address of it can be
/// bound) and uses a fresh source address every round, so no round can meet a conntrack entry
/// left by an earlier one. Rules are installed once per client namespace. A round is one run of
/// the `connect-mix` helper, which connects from every client namespace in turn, a block of
/// connects at a time (A B C, C B A, …), so drift of the shared VM lands on every configuration
/// alike at a grain of milliseconds. Ratios pair the configurations' percentiles of one round.
struct LatencyBenchmark {
    let options: ApplyOptions
    let namespaces: Namespaces
    let executable: String

    func run() throws -> (configs: [LatencyConfig], tables: LatencyTables) {
        let tables = LatencyTables(largeOthers: options.latencyLarge - 1, targetEndpoints: 10)
        var configs: [LatencyConfig] = [LatencyConfig(backend: .none, services: 0, endpointsPerOther: 0, table: nil)]
        var shapes: [(LatencyConfig.Backend, Int, Int)] = [
            (.nft, options.latencySmall, options.endpointsPerService),
            (.nft, options.latencyLarge, options.endpointsPerService),
        ]
        if options.iptablesEndpoints != options.endpointsPerService {
            shapes.append((.nft, options.latencyLarge, options.iptablesEndpoints))
        }
        shapes += [(.iptables, options.latencySmall, options.endpointsPerService), (.iptables, options.latencyLarge, options.iptablesEndpoints)]
        for (backend, services, endpoints) in shapes {
            progress("latency: building the \(backend.rawValue) table of \(Format.count(services)) services")
            let table = tables.table(others: services - 1, endpoints: endpoints)
            var config = LatencyConfig(backend: backend, services: services, endpointsPerOther: endpoints, table: table)
            if backend == .iptables { config.walk = tables.iptablesPosition(in: table) }
            configs.append(config)
        }

        let endpointSpace = try namespaces.create()
        try namespaces.run(["-n", endpointSpace.name, "link", "set", "lo", "up"])
        for index in 0..<tables.targetEndpoints {
            try namespaces.run(["-n", endpointSpace.name, "addr", "add", "\(LatencyTables.endpointAddress(index))/32", "dev", "lo"])
        }
        let server = try startServer(in: endpointSpace)
        defer { server.stop() }

        let tag = String(getpid() % 100_000)
        for index in configs.indices {
            let client = try namespaces.create()
            configs[index].namespace = client
            configs[index].index = index
            let subnet = Self.clientSubnet(index)
            let clientSide = "tb\(tag)c\(index)", endpointSide = "tb\(tag)e\(index)"
            try namespaces.run(["-n", client.name, "link", "set", "lo", "up"])
            try namespaces.run(["-n", client.name, "addr", "add", "\(subnet).0/24", "dev", "lo"])
            try namespaces.run(["link", "add", clientSide, "netns", client.name, "type", "veth", "peer", "name", endpointSide, "netns", endpointSpace.name])
            try namespaces.run(["-n", client.name, "link", "set", clientSide, "up"])
            try namespaces.run(["-n", endpointSpace.name, "link", "set", endpointSide, "up"])
            try namespaces.run(["-n", endpointSpace.name, "route", "add", "\(subnet).0/24", "dev", endpointSide])
            try namespaces.run(["-n", client.name, "route", "add", "10.1.0.0/24", "dev", clientSide, "src", "\(subnet).1"])
            // The VIP needs a route for the first lookup; DNAT then re-routes to the endpoint.
            try namespaces.run(["-n", client.name, "route", "add", "\(LatencyTables.targetVIP)/32", "dev", "lo", "src", "\(subnet).1"])
            try install(&configs[index], in: client)
            if configs[index].failure == nil, let problem = check(configs[index]) {
                configs[index].failure = problem
            }
        }

        for round in 0..<options.rounds {
            let measured = configs.indices.filter { configs[$0].failure == nil && configs[$0].namespace != nil }
            guard !measured.isEmpty else { break }
            progress("latency: round \(round + 1)/\(options.rounds): \(options.connects) connects from each of \(measured.count) clients, blocks of \(options.block)")
            // .1 is the check's address; round r uses .(r + 2).
            let targets = measured.map { target(configs[$0], from: "\(Self.clientSubnet($0)).\(round + 2)") }
            switch connectMix(targets, count: options.connects, warmup: options.warmupConnects) {
            case .success(let summaries):
                for (index, summary) in zip(measured, summaries) {
                    configs[index].runs.append(summary)
                    progress("latency:   \(configs[index].label): p50 \(Format.number(summary.p50)) µs, p99 \(Format.number(summary.p99)) µs, \(summary.failures) failures")
                }
            case .failure(let error):
                for index in measured { configs[index].failure = error.description }
            }
        }
        return (configs, tables)
    }

    /// Installs the configuration's table in its client namespace, timed (informational).
    private func install(_ config: inout LatencyConfig, in client: Namespace) throws {
        guard let table = config.table else { return }
        progress("latency: installing \(config.label) in \(client.name)")
        switch config.backend {
        case .none:
            return
        case .nft:
            let backend = try NftablesBackend(namespacePath: client.path, recordDirectory: namespaces.recordDirectory)
            let (report, time) = try timed { try backend.apply(table, options: ServiceCompilerOptions()) }
            config.installTime = time
            config.installMessages = report.messages
        case .iptables:
            let runner = ToolRunner(prefix: [namespaces.ip, "netns", "exec", client.name], timeLimit: .seconds(options.childTimeoutSeconds))
            do {
                let (report, time) = try timed { try IptablesBackend(runner: runner).apply(table, options: ServiceCompilerOptions()) }
                config.installTime = time
                config.installMessages = report.messages
            } catch {
                config.failure = "iptables apply failed: \(error)"
            }
        }
    }

    /// A few connects that must all succeed: proves the rules send the VIP to the endpoints.
    private func check(_ config: LatencyConfig) -> String? {
        guard let index = config.index else { return "no index" }
        switch connectMix([target(config, from: "\(Self.clientSubnet(index)).1")], count: 100, warmup: 0) {
        case .success(let summaries) where summaries.first.map({ $0.failures == 0 && $0.connects == 100 }) == true:
            return nil
        case .success(let summaries):
            return "check: \(summaries.first?.failures ?? 100) of 100 connects failed (\(summaries.first?.error ?? "no summary"))"
        case .failure(let error):
            return "check: \(error)"
        }
    }

    /// Client `index`'s addresses: 10.2.index.0/24.
    static func clientSubnet(_ index: Int) -> String { "10.2.\(index)" }

    /// `NSPATH,SOURCE,ADDRESS,PORT` for `connect-mix`: the VIP, or an endpoint when there is no NAT.
    private func target(_ config: LatencyConfig, from source: String) -> String {
        let (address, port) = config.backend == .none
            ? (LatencyTables.endpointAddress(0), LatencyTables.endpointPort)
            : (LatencyTables.targetVIP, LatencyTables.targetPort)
        return "\(config.namespace!.path),\(source),\(address),\(port)"
    }

    /// Runs the `connect-mix` helper (in this namespace; it moves between the targets' own).
    private func connectMix(_ targets: [String], count: Int, warmup: Int, deadline: Int = 300) -> Result<[ConnectSummary], BenchError> {
        let command = [executable, "connect-mix", String(count), String(warmup), String(options.block), String(deadline)] + targets
        let (outcome, output) = ChildProcess.run(command, timeoutSeconds: deadline + 30)
        switch outcome {
        case .finished:
            let summaries = output.map(ConnectSummary.all(parsing:)) ?? []
            guard summaries.count == targets.count else {
                return .failure(BenchError("the connect helper printed \(summaries.count) summaries for \(targets.count) clients: \(output?.prefix(200) ?? "")"))
            }
            return .success(summaries)
        case .timedOut:
            return .failure(BenchError("the connect helper timed out"))
        case .failed(let status, let message):
            return .failure(BenchError("the connect helper exited \(status): \(message)"))
        }
    }

    /// Starts `serve` in the endpoint namespace; its PID goes to --pid-file for the script.
    private func startServer(in namespace: Namespace) throws -> Helper {
        let process = Process()
        let command = namespaces.exec(in: namespace, [executable, "serve", String(LatencyTables.endpointPort), String(options.serverLifetimeSeconds)])
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        if let pidFile = options.pidFile, let handle = FileHandle(forWritingAtPath: pidFile) ?? createFile(pidFile) {
            handle.seekToEndOfFile()
            handle.write(Data("\(process.processIdentifier)\n".utf8))
            try? handle.close()
        }
        let helper = Helper(process)
        // Wait (bounded) until it listens: a connect to it succeeds.
        for _ in 0..<50 {
            let probe = "\(namespace.path),0.0.0.0,\(LatencyTables.endpointAddress(0)),\(LatencyTables.endpointPort)"
            if case .success(let summaries) = connectMix([probe], count: 1, warmup: 0, deadline: 5), summaries.first?.failures == 0 {
                return helper
            }
            guard process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        helper.stop()
        throw BenchError("the lab server did not start in \(namespace.name)")
    }

    private func createFile(_ path: String) -> FileHandle? {
        FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forWritingAtPath: path) : nil
    }
}
