import Foundation
import Glibc
import Testing
import TurnoutProxy
import TurnoutTestSupport

/// `turnout proxy` as a process in a lab namespace (`ip netns exec NS turnout proxy …`), with the
/// lab's capture rules and upstreams (see `ProxyLab`): readiness, traffic and `/metrics` read
/// with a strict Prometheus parser, reloads by SIGHUP (refused and accepted), SIGTERM and its
/// drain.
@Suite("turnout proxy: the CLI with real traffic", .serialized,
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct ProxyCommandTests {
    static let adminPort: UInt16 = 15000
    /// What `--io auto` (the default) comes to on this machine.
    static var autoEngine: String { TransparentProxy.uringUnavailability() == nil ? "uring" : "epoll" }
    static let vip = "10.96.0.10"
    static let label = "demo/web:http"

    /// `demo/web` on 10.96.0.10:80 → 127.0.0.1 on each of `ports`, equal weights.
    static func table(_ ports: [UInt16]) -> String {
        "services:\n  - name: demo/web\n    addresses: [\(vip)]\n    ports:\n      - {name: http, port: 80}\n    endpoints:\n"
            + ports.map { "      - {address: 127.0.0.1, port: \($0)}\n" }.joined()
    }

    /// Replaces the file at once (rename), as an editor or `kubectl cp` would.
    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Starts `turnout proxy` in the lab. No drain unless `flags` set one (`--drain-time 0`):
    /// a test's teardown stops it at once, with connections open or not.
    static func start(in lab: ProxyLab, table path: String, _ flags: [String] = []) throws -> LabProcess {
        let drain = flags.contains("--drain-time") ? [] : ["--drain-time", "0"]
        return try LabProcess(try Subprocess.locate("ip"), [
            "netns", "exec", lab.namespace.name, Repository.turnoutBinary, "proxy", "-f", path,
            "--outbound", "0.0.0.0:\(ProxyLab.outboundPort)", "--outbound", "[::]:\(ProxyLab.outboundPort)",
            "--inbound", "none", "--admin", "127.0.0.1:\(adminPort)", "--workers", "2",
        ] + drain + flags)
    }

    /// A proxy (`flags` added) on a table of `ports` written to the lab's state directory,
    /// started and answering /ready. The caller stops it.
    static func startReady(in lab: ProxyLab, ports: [UInt16], _ flags: [String] = []) throws -> LabProcess {
        let file = lab.stateDirectory + "/table.yaml"
        try write(table(ports), to: file)
        let proxy = try start(in: lab, table: file, flags)
        do {
            try requireReady(proxy, in: lab)
        } catch {
            proxy.stop()
            throw error
        }
        return proxy
    }

    /// Waits (15 s at most) for the proxy's /ready to answer 200; a failed requirement, with
    /// its stderr, otherwise.
    static func requireReady(_ proxy: LabProcess, in lab: ProxyLab) throws {
        let ready = ProxyLab.eventually(within: .seconds(15)) { (try? lab.httpGet(port: adminPort, path: "/ready"))?.status == 200 }
        try #require(ready, "not ready; stderr: \(proxy.standardError)")
    }

    /// The drain tests' start: a ready proxy (`flags` added) on a one-endpoint table
    /// (127.0.0.1:8081) and one connection held through it, both ended after `body`.
    static func withHeldConnection(_ flags: [String], _ body: (ProxyLab, LabProcess, ProxyLab.Connection) throws -> Void) throws {
        try withProxyLab(upstreams: [ProxyLab.Upstream(port: 8081)]) { lab in
            let proxy = try startReady(in: lab, ports: [8081], flags)
            defer { proxy.stop() }
            let held = try lab.hold(to: vip, port: 80)
            defer { held.close() }
            try body(lab, proxy, held)
        }
    }

    static func metrics(_ lab: ProxyLab) throws -> PrometheusDocument {
        let answer = try lab.httpGet(port: adminPort, path: "/metrics")
        try #require(answer.status == 200)
        return try PrometheusDocument(parsing: answer.body)
    }

    static func connections(_ document: PrometheusDocument, _ port: UInt16) -> Double? {
        document.value("turnout_upstream_connections_total", ["service": label, "endpoint": "127.0.0.1:\(port)"])
    }

    @Test("ready → traffic counted per endpoint in /metrics; an invalid edit keeps the old table (counted); a valid one (atomic rename) moves traffic and logs what changed; an in-place rewrite too; SIGHUP re-reads; SIGTERM exits 0")
    func lifecycle() throws {
        try withProxyLab(upstreams: [8081, 8082, 8083].map { ProxyLab.Upstream(port: $0) }) { lab in
            let file = lab.stateDirectory + "/table.yaml"
            try Self.write(Self.table([8081, 8082]), to: file)
            let proxy = try Self.start(in: lab, table: file)
            defer { proxy.stop() }
            let source = ["source": "file:\(file)"]

            try Self.requireReady(proxy, in: lab)
            #expect(proxy.standardOutput.contains("2 workers (\(Self.autoEngine))"), "\(proxy.standardOutput)")

            // Traffic, then /metrics: exactly what the clients got, per endpoint.
            let sent = try lab.connections(40, to: Self.vip, port: 80)
            #expect(sent.keys.allSatisfy { !$0.hasPrefix("error") }, "\(sent)")
            var metrics = try Self.metrics(lab)
            for port: UInt16 in [8081, 8082] {
                #expect(Self.connections(metrics, port) == Double(sent["port \(port)", default: 0]), "127.0.0.1:\(port): \(sent)")
            }
            #expect(metrics.value("turnout_accepted_connections_total") == 40)
            #expect(metrics.value("turnout_workers") == 2)
            #expect(metrics.value("turnout_table_generation") == 1, "the source's first read equals the table started with")
            #expect(metrics.value("turnout_table_reloads_refused_total", source) == 0)
            #expect(ProxyLab.eventually(within: .seconds(5)) { (try? Self.metrics(lab).value("turnout_source_up", source)) == 1 })
            #expect(try Self.metrics(lab).value("turnout_table_generation") == 1, "the source's first read equals the table started with")

            // An invalid edit, noticed without a signal: refused with a log line, the old table stays.
            try Self.write("services: [oops\n", to: file)
            #expect(proxy.waitForOutput("is not a valid table; keeping", inStandardError: true, within: .seconds(10)),
                    "stderr: \(proxy.standardError)")
            let afterRefusal = try lab.connections(10, to: Self.vip, port: 80)
            #expect(Set(afterRefusal.keys).isSubset(of: ["port 8081", "port 8082"]), "\(afterRefusal)")
            metrics = try Self.metrics(lab)
            #expect(metrics.value("turnout_table_reloads_refused_total", source) == 1)
            #expect(metrics.value("turnout_source_up", source) == 0)
            #expect(metrics.value("turnout_table_generation") == 1)

            // A valid new table (written by rename, as editors do): generation 2, new connections go to its endpoint.
            try Self.write(Self.table([8083]), to: file)
            #expect(proxy.waitForOutput("generation 2", inStandardError: true, within: .seconds(10)), "stderr: \(proxy.standardError)")
            #expect(proxy.waitForOutput("changes demo/web: +127.0.0.1:8083, -127.0.0.1:8081, -127.0.0.1:8082", inStandardError: true,
                                        within: .seconds(10)), "stderr: \(proxy.standardError)")
            #expect(try lab.connections(10, to: Self.vip, port: 80) == ["port 8083": 10])
            metrics = try Self.metrics(lab)
            #expect(metrics.value("turnout_table_generation") == 2)
            #expect(metrics.value("turnout_table_reloads_refused_total", source) == 1)
            #expect(metrics.value("turnout_source_up", source) == 1)
            #expect(Self.connections(metrics, 8083) == 10)
            #expect(metrics.value("turnout_accepted_connections_total") == 60)

            // Rewritten in place (truncate and write, same inode): noticed when the writer closes it.
            let handle = try #require(FileHandle(forWritingAtPath: file))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(Self.table([8081]).utf8))
            try handle.close()
            #expect(proxy.waitForOutput("1 routes, generation 3", inStandardError: true, within: .seconds(10)),
                    "stderr: \(proxy.standardError)")
            #expect(try lab.connections(5, to: Self.vip, port: 80) == ["port 8081": 5])

            // SIGHUP re-reads: the same table installs nothing new.
            proxy.signal(SIGHUP)
            #expect(proxy.waitForOutput("SIGHUP: reading file:\(file) again", inStandardError: true, within: .seconds(10)))
            Thread.sleep(forTimeInterval: 0.5)
            #expect(try Self.metrics(lab).value("turnout_table_generation") == 3)

            proxy.signal(SIGTERM)
            #expect(proxy.waitForExit(within: .seconds(10)) == 0, "stderr: \(proxy.standardError)")
            #expect(try lab.connect(to: Self.vip, port: 80, timeout: .seconds(1)) == .refused, "a captured connect after exit")
        }
    }

    @Test("SIGTERM with a connection open → /ready 503, that connection and new ones still served; closed → exits 0 once a second passed with nothing open")
    func drainUntilClosed() throws {
        try Self.withHeldConnection(["--drain-time", "30"]) { (lab, proxy, held) throws in
            proxy.signal(SIGTERM)
            #expect(proxy.waitForOutput("SIGTERM: draining 1 open connection for at most 30 s", inStandardError: true, within: .seconds(5)),
                    "stderr: \(proxy.standardError)")
            #expect(try lab.httpGet(port: Self.adminPort, path: "/ready").status == 503)
            #expect(held.exchange() == .answered(held.firstLine), "the open connection goes on")
            #expect(try lab.connections(5, to: Self.vip, port: 80) == ["port 8081": 5], "new connections are still served")
            Thread.sleep(forTimeInterval: 1.5)
            #expect(proxy.isRunning, "exited with a connection open: \(proxy.standardError)")
            held.close()
            let closed = ContinuousClock.now
            #expect(proxy.waitForExit(within: .seconds(10)) == 0, "stderr: \(proxy.standardError)")
            // A lower bound, which load can only lengthen: the quiet second after the close.
            #expect(ContinuousClock.now - closed >= .milliseconds(900), "exited without the quiet second")
            #expect(proxy.standardError.contains("drained: no connection open; stopping"), "\(proxy.standardError)")
        }
    }

    @Test("SIGTERM, a connection still open at the drain time → it is closed and the proxy exits 0")
    func drainTimeOver() throws {
        try Self.withHeldConnection(["--drain-time", "1.5"]) { (lab, proxy, held) throws in
            let signalled = ContinuousClock.now
            proxy.signal(SIGTERM)
            #expect(proxy.waitForExit(within: .seconds(10)) == 0, "stderr: \(proxy.standardError)")
            #expect(ContinuousClock.now - signalled >= .seconds(1.5), "left before the drain time with a connection open")
            #expect(proxy.standardError.contains("drain time over: stopping, closing 1 open connection"), "\(proxy.standardError)")
            let end = held.end(within: .seconds(2))
            #expect(end == .closed || end == .reset, "the held connection: \(end)")
        }
    }

    @Test("while draining: a second SIGTERM changes nothing (a preStop hook, then the kubelet); SIGHUP still re-reads; SIGINT exits at once")
    func secondSignal() throws {
        try Self.withHeldConnection(["--drain-time", "600"]) { (lab, proxy, held) throws in
            proxy.signal(SIGTERM)
            #expect(proxy.waitForOutput("draining 1 open connection", inStandardError: true, within: .seconds(5)))
            proxy.signal(SIGTERM)
            #expect(proxy.waitForOutput("SIGTERM again: draining on", inStandardError: true, within: .seconds(5)))
            proxy.signal(SIGHUP)
            #expect(proxy.waitForOutput("SIGHUP: reading", inStandardError: true, within: .seconds(5)), "SIGHUP still re-reads while draining")
            #expect(held.exchange() == .answered(held.firstLine), "the open connection goes on")
            #expect(proxy.isRunning, "\(proxy.standardError)")
            proxy.signal(SIGINT)
            #expect(proxy.waitForExit(within: .seconds(5)) == 0, "stderr: \(proxy.standardError)")
            #expect(proxy.standardError.contains("SIGINT while draining: stopping now, closing 1 open connection"), "\(proxy.standardError)")
        }
    }

    @Test("--drain-time 0 → SIGTERM exits at once, closing what is open")
    func noDrain() throws {
        try Self.withHeldConnection(["--drain-time", "0"]) { (lab, proxy, held) throws in
            proxy.signal(SIGTERM)
            #expect(proxy.waitForExit(within: .seconds(5)) == 0, "stderr: \(proxy.standardError)")
            #expect(proxy.standardError.contains("drain time over: stopping, closing 1 open connection"), "\(proxy.standardError)")
        }
    }

    @Test("--replace PID while an app connects without pause → not one connection refused or reset: the new proxy binds beside the old, which on SIGUSR2 frees the admin address, stops listening and serves its held connection to the end, then exits 0; the new one answers /ready and takes every later connection",
          arguments: ["uring", "epoll"])
    func replaceWithoutRefusing(_ io: String) throws {
        try withProxyLab(upstreams: [ProxyLab.Upstream(port: 8081)]) { lab in
            let old = try Self.startReady(in: lab, ports: [8081], ["--drain-time", "30", "--io", io])
            defer { old.stop() }
            let held = try lab.hold(to: Self.vip, port: 80)
            defer { held.close() }
            let load = BackgroundCall { try lab.connections(for: .seconds(4), to: Self.vip, port: 80) }
            Thread.sleep(forTimeInterval: 1)

            let new = try Self.start(in: lab, table: lab.stateDirectory + "/table.yaml", ["--replace", "\(old.pid)", "--io", io])
            defer { new.stop() }
            #expect(new.waitForOutput("replacing PID \(old.pid): listening beside it; sent SIGUSR2", inStandardError: true, within: .seconds(10)),
                    "stderr: \(new.standardError)")
            #expect(old.waitForOutput("signal SIGUSR2: handing over to a replacing proxy: admin address freed, listeners shut down",
                                      inStandardError: true, within: .seconds(5)), "stderr: \(old.standardError)")
            try Self.requireReady(new, in: lab)
            #expect(!new.standardError.contains("tcp_migrate_req"), "root sets it: \(new.standardError)")

            let tally = try load.result(within: .seconds(30))
            #expect(tally.keys.allSatisfy { $0 == "port 8081" }, "connections refused or reset during the hand-over: \(tally)")
            #expect((tally["port 8081"] ?? 0) > 50, "\(tally)")
            #expect(held.exchange() == .answered(held.firstLine), "the held connection goes on through the old proxy")
            #expect(old.isRunning, "the old proxy left with a connection open: \(old.standardError)")

            // Later connections: all the new proxy's (its own counter), none the old one's.
            let before = try Self.stats(lab)["accepted"] as? Int ?? -1
            #expect(try lab.connections(20, to: Self.vip, port: 80) == ["port 8081": 20])
            #expect(try Self.stats(lab)["accepted"] as? Int == before + 20)
            held.close()
            #expect(old.waitForExit(within: .seconds(10)) == 0, "stderr: \(old.standardError)")
            #expect(old.standardError.contains("drained: no connection open; stopping"), "\(old.standardError)")
            #expect(new.isRunning)
        }
    }

    @Test("/stats and /config → JSON of the counters and the routes in use; an unknown path → 404")
    func adminEndpoints() throws {
        try withProxyLab(upstreams: [ProxyLab.Upstream(port: 8081)]) { lab in
            let proxy = try Self.startReady(in: lab, ports: [8081])
            defer { proxy.stop() }
            #expect(try lab.connections(3, to: Self.vip, port: 80) == ["port 8081": 3])

            let stats = try lab.httpGet(port: Self.adminPort, path: "/stats")
            #expect(stats.status == 200)
            let statsObject = try JSONSerialization.jsonObject(with: Data(stats.body.utf8)) as? [String: Any]
            #expect(statsObject?["accepted"] as? Int == 3)
            let upstreams = statsObject?["upstreams"] as? [[String: Any]] ?? []
            #expect(upstreams.contains { $0["endpoint"] as? String == "127.0.0.1:8081" && $0["connections"] as? Int == 3 }, "\(stats.body)")

            let config = try lab.httpGet(port: Self.adminPort, path: "/config")
            #expect(config.status == 200)
            let configObject = try JSONSerialization.jsonObject(with: Data(config.body.utf8)) as? [String: Any]
            #expect(configObject?["generation"] as? Int == 1)
            #expect(config.body.contains("127.0.0.1:8081"), "\(config.body)")

            #expect(try lab.httpGet(port: Self.adminPort, path: "/nowhere").status == 404)
        }
    }

    @Test("a proxy with a table file → its memory maps hold no OpenSSL (loaded only for an https source) and no full Foundation or ICU")
    func mapsNoOpenSSL() throws {
        try withProxyLab { lab in
            let proxy = try Self.startReady(in: lab, ports: [8081])
            defer { proxy.stop() }
            // `ip netns exec` execs turnout in its own process: the pid is the proxy's.
            let maps = try String(contentsOfFile: "/proc/\(proxy.pid)/maps", encoding: .utf8)
            try #require(maps.contains("turnout"), "not the proxy's maps: \(maps.prefix(500))")
            let libraries = Set(maps.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
                .filter { $0.hasPrefix("/") }.map { $0.split(separator: "/").last.map(String.init) ?? $0 })
            #expect(!libraries.contains { $0.hasPrefix("libssl") || $0.hasPrefix("libcrypto") }, "\(libraries.sorted())")
            #expect(!libraries.contains { $0.hasPrefix("libFoundation.") || $0.hasPrefix("libicu") || $0.hasPrefix("lib_FoundationICU") },
                    "\(libraries.sorted())")
        }
    }

    @Test("status → the proxy's readiness, generation and one row per endpoint (12 connections to 8081, 0 to the dead 8089 with its refusals; the unused passthrough and inbound rows left out); no proxy on --admin → a line, exit 0; a port named by --admin that is not a proxy's → exit 1 naming it")
    func statusReadsTheProxy() throws {
        try withProxyLab(upstreams: [ProxyLab.Upstream(port: 8081)]) { lab in
            let file = lab.stateDirectory + "/table.yaml"
            try Self.write(Self.table([8081, 8089]), to: file)
            let proxy = try Self.start(in: lab, table: file, ["--health-interval", "0"])
            defer { proxy.stop() }
            try Self.requireReady(proxy, in: lab)
            let answers = try lab.connections(12, to: Self.vip, port: 80)
            #expect(answers == ["port 8081": 12], "a refused connect is retried on the live endpoint")

            let status = try lab.run(Repository.turnoutBinary, ["status", "--admin", "127.0.0.1:\(Self.adminPort)"])
            #expect(status.status == 0, "\(status.standardError)")
            let lines = status.standardOutput.split(separator: "\n").map(String.init)
            #expect(lines.contains("proxy at 127.0.0.1:\(Self.adminPort): ready; 2 workers (\(Self.autoEngine)); table generation 1 from file:\(file)"),
                    "\(status.standardOutput)")
            #expect(lines.contains("  connections: 12 accepted, 0 open; refused: 0 loops, 0 unknown destinations; accept pauses (fd limit): 0"),
                    "\(status.standardOutput)")
            let live = try #require(lines.first { $0.contains("127.0.0.1:8081") }, "\(status.standardOutput)")
            #expect(live.split(separator: " ", omittingEmptySubsequences: true) == [Substring(Self.label), "127.0.0.1:8081", "12", "0", "0", "healthy"])
            let dead = try #require(lines.first { $0.contains("127.0.0.1:8089") }, "\(status.standardOutput)")
            #expect(dead.contains(" 0  ") && dead.contains("refused)"), "\(dead)")
            #expect(!lines.contains { $0.contains("passthrough") || $0.contains("inbound") }, "unused, so left out: \(status.standardOutput)")

            let nobody = try lab.run(Repository.turnoutBinary, ["status", "--admin", "127.0.0.1:15999"])
            #expect(nobody.status == 0)
            #expect(nobody.standardOutput.hasSuffix("proxy at 127.0.0.1:15999: none answering\n"), "\(nobody.standardOutput)")

            let notAProxy = try lab.run(Repository.turnoutBinary, ["status", "--admin", "127.0.0.1:8081"])
            #expect(notAProxy.status == 1)
            #expect(notAProxy.standardError.contains("cannot read a turnout proxy's admin endpoint at 127.0.0.1:8081: GET http://127.0.0.1:8081/ready"),
                    "\(notAProxy.standardError)")
        }
    }

    @Test("proxy --source etcd: the published table serves; etcd stopped → traffic goes on, /metrics says the source is down; etcd back and a new table published → traffic follows",
          .enabled(if: EtcdLab.isEnabled, Comment(rawValue: EtcdLab.skipReason)))
    func etcdSourceOutage() throws {
        try withProxyLab(upstreams: [8081, 8082].map { ProxyLab.Upstream(port: $0) }) { lab in
            let etcd = try EtcdLab.start(in: lab.namespace)
            defer { etcd.destroy() }
            let file = lab.stateDirectory + "/table.yaml"
            let source = ["source": "etcd:\(etcd.url)"]
            func publish(_ ports: [UInt16]) throws {
                try Self.write(Self.table(ports), to: file)
                let published = try lab.run(Repository.turnoutBinary, ["publish", "-f", file, "--etcd", etcd.url])
                try #require(published.status == 0, "publish: \(published.standardError)")
            }
            try publish([8081])
            let proxy = try LabProcess(try Subprocess.locate("ip"), [
                "netns", "exec", lab.namespace.name, Repository.turnoutBinary, "proxy", "--source", "etcd:\(etcd.url)",
                "--outbound", "0.0.0.0:\(ProxyLab.outboundPort)", "--inbound", "none", "--admin", "127.0.0.1:\(Self.adminPort)", "--workers", "1",
                "--drain-time", "0", "--io", "epoll",
            ])
            defer { proxy.stop() }
            #expect(ProxyLab.eventually(within: .seconds(15)) { (try? lab.connections(2, to: Self.vip, port: 80)) == ["port 8081": 2] },
                    "stderr: \(proxy.standardError)")
            #expect(proxy.standardOutput.contains("1 worker (epoll)"), "\(proxy.standardOutput)")

            etcd.stop()
            #expect(ProxyLab.eventually(within: .seconds(15)) { (try? Self.metrics(lab).value("turnout_source_up", source)) == 0 },
                    "stderr: \(proxy.standardError)")
            #expect(try lab.connections(10, to: Self.vip, port: 80) == ["port 8081": 10], "the table in use stays while etcd is down")

            try etcd.restart()
            try publish([8082])
            #expect(ProxyLab.eventually(within: .seconds(15)) { (try? lab.connections(2, to: Self.vip, port: 80)) == ["port 8082": 2] },
                    "stderr: \(proxy.standardError)")
            #expect(try Self.metrics(lab).value("turnout_source_up", source) == 1)
            #expect(try Self.metrics(lab).value("turnout_source_outages_total", source) == 1)
        }
    }

    @Test("an upstream that resets while a 4 MB upload is spliced to it → that client is reset; the proxy lives on and serves the next connection")
    func upstreamResetDuringSplice() throws {
        try withProxyLab(upstreams: [ProxyLab.Upstream(port: 8081, kind: .abort), ProxyLab.Upstream(port: 8082)]) { lab in
            let file = lab.stateDirectory + "/table.yaml"
            try Self.write(Self.table([8081]), to: file)
            let proxy = try Self.start(in: lab, table: file)
            defer { proxy.stop() }
            try Self.requireReady(proxy, in: lab)

            // Newlines: the upstream resets at the first one, while megabytes are still coming.
            for _ in 0..<3 {
                _ = try lab.upload([UInt8](repeating: UInt8(ascii: "\n"), count: 4 << 20), to: Self.vip, port: 80, timeout: .seconds(20))
            }
            Thread.sleep(forTimeInterval: 0.3)
            #expect(proxy.isRunning, "the proxy died: stderr \(proxy.standardError)")

            try Self.write(Self.table([8082]), to: file)
            #expect(proxy.waitForOutput("generation 2", inStandardError: true, within: .seconds(10)), "stderr: \(proxy.standardError)")
            #expect(try lab.connections(3, to: Self.vip, port: 80) == ["port 8082": 3])
        }
    }

    /// A uid no other test runs as: the kernel's pipe allowance is per uid, machine-wide.
    static let pipeTestUID = 4711

    /// Spends `pipeTestUID`'s pipe allowance, all of it or all but `argv[1]` pages: 1 MiB pipes
    /// while they fit, then pipes of the kernel's default 16 pages. With -1 it goes on until the
    /// kernel makes a pipe smaller than its default (the allowance is spent: that uid's new
    /// pipes are 8 KiB from then on). Prints "ready PIPES PAGES" and waits to be stopped.
    static let pipeHogScript = """
        import fcntl, os, signal, sys
        free = int(sys.argv[1])
        soft = int(open("/proc/sys/fs/pipe-user-pages-soft").read())
        page = os.sysconf("SC_PAGE_SIZE")
        big = (1 << 20) // page
        pipes, used = [], 0
        while len(pipes) < 4000:
            if free >= 0 and used + 16 > soft - free:
                break
            r, w = os.pipe()
            pipes.append((r, w))
            if fcntl.fcntl(w, 1032) < 16 * page:
                break
            used += 16
            if free < 0 or used - 16 + big <= soft - free:
                try:
                    fcntl.fcntl(w, 1031, 1 << 20)
                    used += big - 16
                except OSError:
                    pass
        print("ready", len(pipes), used, flush=True)
        signal.pause()
        """

    static func stats(_ lab: ProxyLab) throws -> [String: Any] {
        let answer = try lab.httpGet(port: adminPort, path: "/stats")
        try #require(answer.status == 200)
        return try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])
    }

    struct Allowance: Sendable, CustomTestStringConvertible {
        /// Pages of the uid's allowance the hog leaves; -1: none.
        let freePages: Int
        var testDescription: String { freePages < 0 ? "spent" : "\(freePages) pages left: room for a 64 KiB pipe, not a 1 MiB one" }
    }

    @Test("the proxy as an unprivileged uid whose pipe allowance another of its processes spent → its budget is 3/4 of the allowance; 4 MB uploads arrive whole: spent, copied (the 8 KiB pipe closed, counted as undersized), then spliced once the allowance is free; nearly spent, spliced through the 64 KiB pipe the kernel still made (counted, kept)",
          arguments: [Allowance(freePages: -1), Allowance(freePages: 128)])
    func pipeAllowanceSpent(_ allowance: Allowance) throws {
        let softPages = try #require(Int((try String(contentsOfFile: "/proc/sys/fs/pipe-user-pages-soft", encoding: .utf8))
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        try #require(softPages > 0, "fs.pipe-user-pages-soft is 0: the kernel sets no pipe allowance to spend")
        let upstream = ProxyLab.Upstream(port: 8081, kind: .digest)
        try withProxyLab(upstreams: [upstream]) { lab in
            let file = lab.stateDirectory + "/table.yaml"
            try Self.write(Self.table([8081]), to: file)
            let uid = "\(Self.pipeTestUID)"
            let setpriv = try Subprocess.locate("setpriv")
            let dropTo = [setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--inh-caps=-all"]
            let hog = try LabProcess(try Subprocess.locate("ip"), ["netns", "exec", lab.namespace.name] + dropTo
                                     + ["/usr/bin/python3", "-c", Self.pipeHogScript, "\(allowance.freePages)"])
            defer { hog.stop() }
            try #require(hog.waitForOutput("ready", within: .seconds(10)), "pipe hog: \(hog.standardError)")
            let proxy = try LabProcess(try Subprocess.locate("ip"), ["netns", "exec", lab.namespace.name] + dropTo + [
                Repository.turnoutBinary, "proxy", "-f", file, "--outbound", "0.0.0.0:\(ProxyLab.outboundPort)",
                "--inbound", "none", "--admin", "127.0.0.1:\(Self.adminPort)", "--workers", "1", "--health-interval", "0",
                "--drain-time", "0",
            ])
            defer { proxy.stop() }
            try Self.requireReady(proxy, in: lab)
            #expect(try Self.stats(lab)["pipeBudget"] as? Int == softPages * Int(sysconf(Int32(_SC_PAGESIZE))) / 4 * 3)

            let bytes = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 13) }
            let digest = SHA256Digest.hex(of: bytes)
            for _ in 0..<2 {
                #expect(try lab.upload(bytes, to: Self.vip, port: 80, timeout: .seconds(30)) == .answered(digest))
            }
            let starved = try Self.stats(lab)
            let undersized = try #require(starved["undersizedPipes"] as? Int)
            let fallbacks = try #require(starved["copyFallbacks"] as? Int)
            #expect(undersized >= 1, "\(starved)")
            #expect(proxy.standardError.contains("pipe allowance"), "stderr: \(proxy.standardError)")
            guard allowance.freePages < 0 else {
                // The 64 KiB pipe was kept and serves both uploads: nothing was copied.
                #expect(fallbacks == 0, "\(starved)")
                #expect(starved["pipeBytesPeak"] as? Int == 65_536, "\(starved)")
                return
            }
            #expect(fallbacks >= 2)

            hog.stop()
            // The proxy holds off new pipes for 5 s after the kernel refused one.
            Thread.sleep(forTimeInterval: 5.5)
            #expect(try lab.upload(bytes, to: Self.vip, port: 80, timeout: .seconds(30)) == .answered(digest))
            let freed = try Self.stats(lab)
            #expect(freed["undersizedPipes"] as? Int == undersized)
            #expect(freed["copyFallbacks"] as? Int == fallbacks, "\(freed)")
            #expect((freed["pipeBytesPeak"] as? Int ?? 0) >= 1 << 20, "\(freed)")
        }
    }

    /// A connection takes two descriptors, so with an even or an odd number free the last one
    /// goes to `accept4` or to the upstream's `socket(2)`: both limits are run, and either way
    /// accepting must pause (before, the `socket(2)` case reset every new client, unpaused).
    @Test("descriptor limit 48 or 49 (prlimit), 40 connections held → those past the limit are not answered (accepting paused, counted, logged once) while /stats still answers; once the held ones close, new connections are answered again",
          arguments: ProxyLab.engines, [48, 49])
    func descriptorLimitPause(_ io: ProxyConfiguration.IOEngine, _ limit: Int) throws {
        try withProxyLab(upstreams: [ProxyLab.Upstream(port: 8081)]) { lab in
            let file = lab.stateDirectory + "/table.yaml"
            try Self.write(Self.table([8081]), to: file)
            let proxy = try LabProcess(try Subprocess.locate("ip"), [
                "netns", "exec", lab.namespace.name, try Subprocess.locate("prlimit"), "--nofile=\(limit):\(limit)",
                Repository.turnoutBinary, "proxy", "-f", file, "--outbound", "0.0.0.0:\(ProxyLab.outboundPort)",
                "--inbound", "none", "--admin", "127.0.0.1:\(Self.adminPort)", "--workers", "1", "--drain-time", "0",
                "--health-interval", "0", "--io", io.rawValue,
            ])
            defer { proxy.stop() }
            try Self.requireReady(proxy, in: lab)
            let (held, failures) = try lab.hold(40, to: Self.vip, port: 80, timeout: .milliseconds(500))
            #expect(!held.isEmpty && failures.values.reduce(0, +) > 0, "\(held.count) held, \(failures)")
            // The admin server's reserve descriptor lets /stats answer at the limit.
            #expect((try Self.stats(lab)["acceptPauses"] as? Int ?? 0) > 0)
            for connection in held { connection.close() }
            #expect(ProxyLab.eventually(within: .seconds(10)) { (try? lab.connections(5, to: Self.vip, port: 80)) == ["port 8081": 5] },
                    "stderr: \(proxy.standardError)")
            #expect(proxy.standardError.components(separatedBy: "pausing accepts").count == 2, "\(proxy.standardError)")
        }
    }
}

/// Bad flags are refused before anything binds: no namespace needed.
@Suite("turnout proxy: bad flags")
struct ProxyCommandFlagTests {
    @Test("a bad flag → exit 2, stderr names it, nothing on stdout", arguments: [
        (["--workers", "0"], "--workers"),
        (["--workers", "300"], "--workers"),
        (["--workers", "two"], "--workers"),
        (["--unknown", "maybe"], "--unknown"),
        (["--balancer", "random"], "--balancer"),
        (["--io", "kqueue"], "--io"),
        (["--outbound", "nonsense"], "--outbound"),
        (["--inbound", "10.0.0.1"], "--inbound"),
        (["--admin", "localhost"], "--admin"),
        (["--idle-timeout", "0"], "--idle-timeout"),
        (["--connect-timeout", "nan"], "--connect-timeout"),
        (["--half-closed-timeout", "1e9"], "--half-closed-timeout"),
        (["--connect-attempts", "8"], "--connect-attempts"),
        (["--max-connections-per-service", "0"], "--max-connections-per-service"),
        (["--health-interval", "-1"], "--health-interval"),
        (["--health-timeout", "6"], "--health-timeout"),
        (["--unhealthy-threshold", "0"], "--unhealthy-threshold"),
        (["--eject-after", "0"], "--eject-after"),
        (["--max-ejection-time", "10"], "--max-ejection-time"),
        (["--max-ejected-percent", "101"], "--max-ejected-percent"),
        (["--panic-threshold", "-5"], "--panic-threshold"),
        (["--pipe-size", "100"], "--pipe-size"),
        (["--pipe-size", "2147483647"], "--pipe-size"),
        (["--pipe-budget", "lots"], "--pipe-budget"),
        (["--pipe-budget", "-1"], "--pipe-budget"),
        (["--drain-time", "-1"], "--drain-time"),
        (["--drain-time", "3601"], "--drain-time"),
        (["--drain-time", "inf"], "--drain-time"),
        (["--replace", "1"], "--replace 1: not another process's PID"),
        (["--replace", "\(getpid())"], "not a turnout proxy"),            // this test process
        (["--replace", "999999999"], "no process with this PID"),
        (["--no-such-flag"], "--no-such-flag"),
    ])
    func badFlag(_ flags: [String], _ named: String) throws {
        // A flag accepted by mistake would start a proxy: on a harmless port, ended by the time limit.
        let result = try Subprocess.run(Repository.turnoutBinary,
                                        ["proxy", "-f", "rules/canary.yaml", "--outbound", "127.0.0.1:39999", "--inbound", "none", "--admin", "none"] + flags,
                                        workingDirectory: Repository.root.path, timeLimit: .seconds(20))
        #expect(result.status == 2, "\(flags): \(result.standardError)")
        #expect(result.standardError.contains(named), "\(result.standardError)")
        #expect(result.standardOutput.isEmpty)
    }

    @Test("a table file that does not exist → exit 2 before anything starts")
    func missingTable() throws {
        let result = try Subprocess.run(Repository.turnoutBinary,
                                        ["proxy", "-f", "rules/does-not-exist.yaml", "--outbound", "127.0.0.1:39999", "--inbound", "none", "--admin", "none"],
                                        workingDirectory: Repository.root.path, timeLimit: .seconds(20))
        #expect(result.status == 2, "\(result.standardError)")
        #expect(result.standardError.contains("does-not-exist.yaml"), "\(result.standardError)")
    }
}

/// A listener port that an outgoing connection took as its source port, as any may once the
/// namespace's ephemeral range covers the proxy's ports: the start fails, and says which sysctl
/// allowed it and how to reserve the ports.
@Suite("turnout proxy: a listener port held by an outgoing connection", .serialized,
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct ProxyBusyPortTests {
    static let port: UInt16 = 15006

    @Test("ephemeral range 1024–65535, 127.0.0.1:15006 the source of a connection → exit 1, EADDRINUSE and the sysctl -w that reserves 15000, 15001 and 15006; with 15006 reserved → the same error and no hint")
    func heldPort() throws {
        try withNetworkNamespace(prefix: "busyport") { namespace in
            let up = try namespace.run("ip", ["link", "set", "lo", "up"])
            try #require(up.status == 0, "\(up.standardError)")
            try namespace.sysctl("net.ipv4.ip_local_port_range=1024 65535")
            let descriptors = try namespace.holdSourcePort(Self.port)
            defer { for fd in descriptors { close(fd) } }
            let arguments = ["proxy", "-f", Repository.root.path + "/rules/canary.yaml", "--outbound", "127.0.0.1:15001",
                             "--inbound", "0.0.0.0:\(Self.port)", "--admin", "127.0.0.1:15000", "--drain-time", "0"]

            let exposed = try namespace.run(Repository.turnoutBinary, arguments, timeLimit: .seconds(20))
            #expect(exposed.status == 1, "\(exposed.standardError)")
            #expect(exposed.standardError.contains("bind(0.0.0.0:\(Self.port)): Address already in use"), "\(exposed.standardError)")
            #expect(exposed.standardError.contains("net.ipv4.ip_local_port_range 1024-65535"), "\(exposed.standardError)")
            #expect(exposed.standardError.contains("sysctl -w net.ipv4.ip_local_reserved_ports=15000-15001,15006"), "\(exposed.standardError)")

            try namespace.sysctl("net.ipv4.ip_local_reserved_ports=\(Self.port)")
            let reserved = try namespace.run(Repository.turnoutBinary, arguments, timeLimit: .seconds(20))
            #expect(reserved.status == 1, "\(reserved.standardError)")
            #expect(reserved.standardError.contains("Address already in use"), "\(reserved.standardError)")
            #expect(!reserved.standardError.contains("ip_local_reserved_ports"), "\(reserved.standardError)")
        }
    }
}
