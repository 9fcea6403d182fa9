import Foundation
import Testing
import TurnoutModel
import TurnoutTestSupport

/// `turnout init` in a pod-like namespace with real traffic, on both backends: the app (uid
/// 1000) and the proxy (uid 1337) make real connections; a recording stand-in for the proxy on
/// 15001/15006 answers with the original destination it read (SO_ORIGINAL_DST).
@Suite("turnout init: capture with real traffic",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct InitScenarioTests {
    enum Backend: String, CaseIterable, CustomStringConvertible {
        case nft, iptables
        var description: String { rawValue }
    }

    static let app: UInt32 = 1000
    static let proxy = CaptureLab.proxyUID

    static func initialize(_ lab: CaptureLab, _ backend: Backend, _ arguments: [String] = []) throws -> ProcessResult {
        try lab.run(.app, Repository.turnoutBinary, ["init", "--backend", backend.rawValue] + arguments)
    }

    static func proxied(_ original: String, port: UInt16 = 15001) -> String { "proxy \(port) orig=\(original)" }

    @Test("default options: app → proxy with its original destination (v4, v6); proxy uid and gid pass; localhost, own address, UDP untouched; inbound captured with source and destination",
          arguments: Backend.allCases)
    func defaults(backend: Backend) throws {
        try withCaptureLab(prefix: "init-\(backend)") { lab in
            let result = try Self.initialize(lab, backend)
            try #require(result.status == 0, "\(result.standardError)")

            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line?.hasPrefix(Self.proxied("10.30.0.5:80")) == true)
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv6, port: 80, uid: Self.app).line?.hasPrefix(Self.proxied("[fd00:30::5]:80")) == true)
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.proxy).line == "peer 80 from 10.20.0.2")
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app, gid: CaptureLab.proxyGID).line == "peer 80 from 10.20.0.2")
            #expect(try lab.connect(from: .app, to: "127.0.0.1", port: 8080, uid: Self.app).line == "app 8080 from 127.0.0.1")
            #expect(try lab.connect(from: .app, to: "::1", port: 8080, uid: Self.app).line == "app 8080 from ::1")
            #expect(try lab.connect(from: .app, to: CaptureLab.appIPv4, port: 8080, uid: Self.app).line == "app 8080 from 10.20.0.2")
            // The proxy calling the pod's own address goes to the inbound port…
            #expect(try lab.connect(from: .app, to: CaptureLab.appIPv4, port: 8080, uid: Self.proxy).line?.hasPrefix(Self.proxied("10.20.0.2:8080", port: 15006)) == true)
            // …unless it comes from the passthrough source, as its inbound deliveries do.
            #expect(try lab.connect(from: .app, to: CaptureLab.appIPv4, port: 8080, uid: Self.proxy, source: "127.0.0.6").line == "app 8080 from 127.0.0.6")
            #expect(try lab.connect(from: .app, to: CaptureLab.appIPv6, port: 8080, uid: Self.proxy, source: "::6").line == "app 8080 from ::6")
            #expect(try lab.sendUDP(from: .app, to: CaptureLab.worldIPv4, port: 53, uid: Self.app)?.hasPrefix("peer-udp 53") == true)
            // Inbound: the peer's connection reaches the inbound port with both ends intact.
            lab.proxy.reset()
            #expect(try lab.connect(from: .peer, to: CaptureLab.appIPv4, port: 8080).line?.hasPrefix(Self.proxied("10.20.0.2:8080", port: 15006)) == true)
            #expect(lab.proxy.connections.last?.client.address == IPAddress(CaptureLab.peerIPv4))
        }
    }

    @Test("exclusions: ports (a list of 20 and a range), CIDRs, interfaces; an always-captured port beats a CIDR exclusion; excluded inbound port",
          arguments: Backend.allCases)
    func exclusions(backend: Backend) throws {
        try withCaptureLab(prefix: "init-\(backend)") { lab in
            let ports = (1...19).map { "\(20_000 + $0)" }.joined(separator: ",") + ",5432,9000-9100"
            let result = try Self.initialize(lab, backend, ["-o", ports, "-x", "10.31.0.0/16", "-q", "443", "-c", "eth1", "-d", "9090"])
            try #require(result.status == 0, "\(result.standardError)")
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 5432, uid: Self.app).line == "peer 5432 from 10.20.0.2")
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 9001, uid: Self.app).line == "peer 9001 from 10.20.0.2")
            #expect(try lab.connect(from: .app, to: CaptureLab.world2IPv4, port: 80, uid: Self.app).line == "peer 80 from 10.20.0.2")
            #expect(try lab.connect(from: .app, to: CaptureLab.world2IPv4, port: 443, uid: Self.app).line?.hasPrefix(Self.proxied("10.31.0.5:443")) == true)
            #expect(try lab.connect(from: .app, to: CaptureLab.viaEth1IPv4, port: 80, uid: Self.app).line == "peer 80 from 10.21.0.2")
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line?.hasPrefix(Self.proxied("10.30.0.5:80")) == true)
            #expect(try lab.connect(from: .peer, to: CaptureLab.appIPv4, port: 9090).line == "app 9090 from 10.20.0.1")
        }
    }

    @Test("fail closed: with nothing on the proxy port a captured connect is refused at once, never sent direct", arguments: Backend.allCases)
    func failClosed(backend: Backend) throws {
        try withCaptureLab(prefix: "init-\(backend)") { lab in
            try #require(try Self.initialize(lab, backend).status == 0)
            try lab.stopProxy()
            // `.refused` is a reset; a black hole or a bypass would be `.timedOut` or an answer.
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app) == .refused)
        }
    }

    @Test("re-run: same options send nothing; changed options converge; a deleted jump is repaired; cleanup removes only capture",
          arguments: Backend.allCases)
    func convergence(backend: Backend) throws {
        try withCaptureLab(prefix: "init-\(backend)") { lab in
            try #require(try Self.initialize(lab, backend).status == 0)
            let again = try Self.initialize(lab, backend, ["--format", "json"])
            #expect(again.standardOutput.contains("\"outcome\":\"unchanged\""), "\(again.standardOutput)")

            let changed = try Self.initialize(lab, backend, ["-o", "80"])
            #expect(changed.status == 0)
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line == "peer 80 from 10.20.0.2")
            let back = try Self.initialize(lab, backend)
            #expect(back.status == 0)
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line?.hasPrefix(Self.proxied("10.30.0.5:80")) == true)

            // Drift: the outbound jump deleted by hand → the next run puts it back.
            switch backend {
            case .nft:
                _ = try lab.run(.app, "nft", ["flush", "chain", "inet", "turnout-capture", "nat-output"])
            case .iptables:
                _ = try lab.run(.app, "iptables", ["-t", "nat", "-D", "OUTPUT", "-p", "tcp", "-m", "comment", "--comment", "turnout-capture",
                                                   "-j", "TURNOUT-CAPTURE-OUTBOUND"])
            }
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line == "peer 80 from 10.20.0.2")
            #expect(try Self.initialize(lab, backend).status == 0)
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line?.hasPrefix(Self.proxied("10.30.0.5:80")) == true)

            // Cleanup leaves a foreign table and the proxy's own live connection alone.
            #expect(try lab.run(.app, "nft", ["-f", "-"], input: "table inet foreign {\n chain c { type filter hook output priority 0; }\n}\n").status == 0)
            let direct = try lab.hold(from: .app, to: CaptureLab.worldIPv4, port: 443, uid: Self.proxy)
            defer { lab.release(direct) }
            #expect(direct.firstLine == "peer 443 from 10.20.0.2")
            let cleanup = try Self.initialize(lab, backend, ["--cleanup"])
            #expect(cleanup.status == 0, "\(cleanup.standardError)")
            #expect(cleanup.standardOutput.contains("drain: no captured connection was open"), "\(cleanup.standardOutput)")
            #expect(lab.isAlive(direct), "the proxy's own connection died with the cleanup")
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line == "peer 80 from 10.20.0.2")
            #expect(try lab.run(.app, "nft", ["list", "table", "inet", "foreign"]).status == 0)
            #expect(try Self.captureObjects(lab).isEmpty)
            let second = try Self.initialize(lab, backend, ["--cleanup", "--format", "json"])
            #expect(second.standardOutput.contains("\"outcome\":\"absent\""), "\(second.standardOutput)")
        }
    }

    /// A connection the proxy holds for the app when `--cleanup` runs: the kernel keeps its NAT
    /// only while a nat chain and a conntrack user exist, so cleanup stops capturing first,
    /// waits for it to close, then deletes the rest. With and without a foreign conntrack user
    /// (a CNI firewall), since without one the capture rules are the namespace's only one.
    @Test("--cleanup drains: a captured connection keeps working until it closes, new ones are not captured meanwhile, then the rules go",
          arguments: Backend.allCases, [false, true])
    func cleanupDrains(backend: Backend, foreignConntrackUser: Bool) throws {
        try withCaptureLab(prefix: "init-\(backend)") { lab in
            try #require(try Self.initialize(lab, backend).status == 0)
            if foreignConntrackUser {
                let firewall = "table inet foreign {\n chain out { type filter hook output priority 0; ct state established,related accept; }\n}\n"
                #expect(try lab.run(.app, "nft", ["-f", "-"], input: firewall).status == 0)
            }
            let captured = try lab.hold(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app)
            try #require(captured.firstLine.hasPrefix(Self.proxied("10.30.0.5:80")))

            let cleanup = BackgroundCall { try Self.initialize(lab, backend, ["--cleanup", "--drain-timeout", "20"]) }
            // Poll until the drain form is installed (the inbound and outbound chains gone, cleanup
            // still waiting).
            let drainInstalled = ContinuousClock.now + .seconds(5)
            while try Self.captureObjects(lab).contains(where: { $0.lowercased().contains("bound") }) && ContinuousClock.now < drainInstalled {
                usleep(20_000)
            }
            #expect(!cleanup.isFinished, "cleanup did not wait for the captured connection")
            #expect(lab.isAlive(captured), "the captured connection died while draining")
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line == "peer 80 from 10.20.0.2",
                    "a new connection was still captured while draining")
            lab.release(captured)

            let result = try cleanup.result(within: .seconds(10))
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardOutput.contains("drain: 1 captured connection closed within"), "\(result.standardOutput)")
            #expect(try Self.captureObjects(lab).isEmpty)
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line == "peer 80 from 10.20.0.2")
        }
    }

    @Test("--cleanup --drain-timeout: a connection still open at the timeout is reported, and the rules are deleted anyway",
          arguments: Backend.allCases)
    func cleanupDrainTimeout(backend: Backend) throws {
        try withCaptureLab(prefix: "init-\(backend)") { lab in
            try #require(try Self.initialize(lab, backend).status == 0)
            let captured = try lab.hold(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app)
            defer { lab.release(captured) }
            let result = try Self.initialize(lab, backend, ["--cleanup", "--drain-timeout", "0.3", "--format", "json"])
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardOutput.contains("\"openAtStart\":1"), "\(result.standardOutput)")
            #expect(result.standardOutput.contains("\"stillOpen\":1"), "\(result.standardOutput)")
            #expect(try Self.captureObjects(lab).isEmpty)
            #expect(try Self.initialize(lab, backend, ["--drain-timeout", "1"]).status == 2, "--drain-timeout without --cleanup")
            #expect(try Self.initialize(lab, backend, ["--cleanup", "--drain-timeout", "-1"]).status == 2)
        }
    }

    /// Turnout's capture objects in the app namespace: the nft table's chains, or the iptables
    /// `TURNOUT-CAPTURE-` chains of both families.
    static func captureObjects(_ lab: CaptureLab) throws -> [String] {
        let nft = try lab.run(.app, "nft", ["list", "table", "inet", "turnout-capture"])
        var objects = nft.status == 0 ? nft.standardOutput.split(separator: "\n").filter { $0.contains("chain ") }.map(String.init) : []
        for tool in ["iptables-save", "ip6tables-save"] {
            objects += try lab.run(.app, tool, ["-t", "nat"]).standardOutput.split(separator: "\n")
                .filter { $0.hasPrefix(":TURNOUT-CAPTURE-") }.map(String.init)
        }
        return objects
    }

    @Test("--dry-run prints the rules and changes nothing; bad options exit 2 and change nothing; TPROXY is refused", arguments: Backend.allCases)
    func dryRunAndBadInput(backend: Backend) throws {
        try withCaptureLab(prefix: "init-\(backend)") { lab in
            let before = try lab.run(.app, "nft", ["list", "ruleset"]).standardOutput
            let dry = try Self.initialize(lab, backend, ["--dry-run"])
            #expect(dry.status == 0)
            #expect(dry.standardOutput.contains(backend == .nft ? "redirect to :15001" : "-j REDIRECT --to-ports 15001"))
            // iptables: the input a fresh install sends, capture's jumps inserted first.
            #expect(backend == .nft || dry.standardOutput.contains("-I OUTPUT 1 -p tcp"), "\(dry.standardOutput)")
            for bad in [["-o", "70000"], ["-x", "10.0.0.1/8"], ["-m", "TPROXY"], ["-p", "15006"]] {
                let result = try Self.initialize(lab, backend, bad)
                #expect(result.status == 2, "\(bad): \(result.standardError)")
                #expect(result.standardOutput.isEmpty)
            }
            #expect(try lab.run(.app, "nft", ["list", "ruleset"]).standardOutput == before)
        }
    }

    @Test("--validate: a real probe arrives at the proxy port with its original destination (v4, v6); it fails, explained, when the proxy port is taken or another NAT rule takes the probe first",
          arguments: Backend.allCases)
    func validate(backend: Backend) throws {
        try withCaptureLab(prefix: "init-\(backend)") { lab in
            // The proxy of a real pod starts after init: the port is busy only in the failure case.
            let busy = try Self.initialize(lab, backend, ["--validate"])
            #expect(busy.status == 1)
            #expect(busy.standardOutput.contains("validation must run before the proxy starts"), "\(busy.standardOutput)")

            try lab.stopProxy()
            let result = try Self.initialize(lab, backend, ["--validate"])
            #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
            #expect(result.standardOutput.contains("ok 192.0.2.1:80: connected as uid 65534 gid 65534, arrived at proxy port 15001 with original destination 192.0.2.1:80"),
                    "\(result.standardOutput)")
            #expect(result.standardOutput.contains("original destination [2001:db8::1]:80"), "\(result.standardOutput)")

            // A probe target the options exclude is reported, not passed.
            let excluded = try Self.initialize(lab, backend, ["--validate", "--validate-target", "10.30.0.5:80", "-x", "10.30.0.0/16"])
            #expect(excluded.status == 1)
            #expect(excluded.standardOutput.contains("FAILED 10.30.0.5:80: connected as uid 65534 gid 65534, but no connection reached the proxy port"),
                    "\(excluded.standardOutput)")

            // A foreign NAT chain that runs first (priority -110) takes the probe's connection to
            // the world: capture is not in effect for it, and --validate says so.
            let foreign = """
                table ip foreign {
                    chain out { type nat hook output priority -110; ip daddr 192.0.2.1 tcp dport 80 dnat to 10.30.0.5:80; }
                }
                """
            #expect(try lab.run(.app, "nft", ["-f", "-"], input: foreign).status == 0)
            let taken = try Self.initialize(lab, backend, ["--validate"])
            #expect(taken.status == 1)
            #expect(taken.standardOutput.contains("FAILED 192.0.2.1:80"), "\(taken.standardOutput)")
            #expect(taken.standardOutput.contains("ok [2001:db8::1]:80"), "\(taken.standardOutput)")
            #expect(taken.standardError.contains("capture does not work for 192.0.2.1:80"), "\(taken.standardError)")
        }
    }

    @Test("IPv6 passthrough: init puts ::6/128 on lo when it is missing, once; the proxy's passthrough from ::6 then reaches the app",
          arguments: Backend.allCases)
    func passthroughAddress(backend: Backend) throws {
        try withCaptureLab(prefix: "init-\(backend)", addsPassthroughIPv6: false) { lab in
            let first = try Self.initialize(lab, backend)
            #expect(first.status == 0, "\(first.standardError)")
            #expect(first.standardOutput.contains("lo: + ::6/128"), "\(first.standardOutput)")
            #expect(try lab.run(.app, "ip", ["-6", "addr", "show", "dev", "lo"]).standardOutput.contains("::6/128"))
            #expect(try lab.connect(from: .app, to: CaptureLab.appIPv6, port: 8080, uid: Self.proxy, source: "::6").line == "app 8080 from ::6")
            let again = try Self.initialize(lab, backend)
            #expect(again.status == 0 && !again.standardOutput.contains("lo: +"), "\(again.standardOutput)")
            // With IPv6 off nothing is added.
            _ = try lab.run(.app, "ip", ["-6", "addr", "del", "::6/128", "dev", "lo"])
            #expect(try Self.initialize(lab, backend, ["--ipv6", "off"]).status == 0)
            #expect(try !lab.run(.app, "ip", ["-6", "addr", "show", "dev", "lo"]).standardOutput.contains("::6/128"))
        }
    }

    @Test("a fresh namespace whose lo is still down: init finishes (no tool or run loop waits on loopback)", arguments: Backend.allCases)
    func loopbackDown(backend: Backend) throws {
        try withNetworkNamespace(prefix: "init-lo-\(backend)") { namespace in
            #expect(try namespace.run("ip", ["link", "set", "lo", "down"]).status == 0)
            let result = try namespace.run(Repository.turnoutBinary, ["init", "--backend", backend.rawValue], timeLimit: .seconds(20))
            #expect(result.status == 0, "\(result.standardError)")
            let listed = backend == .nft ? try namespace.run("nft", ["list", "table", "inet", "turnout-capture"])
                                         : try namespace.run("iptables-save", ["-t", "nat"])
            #expect(listed.standardOutput.contains(backend == .nft ? "redirect to :15001" : "--to-ports 15001"))
        }
    }

    @Test("iptables: when the IPv6 half fails, the IPv4 half is rolled back and init exits 1: never a half-captured dual stack")
    func iptablesDualStackAllOrNothing() throws {
        try withNetworkNamespace(prefix: "init-v6fail") { namespace in
            // Fault injection: an ip6tables-restore that refuses every input, found first on PATH.
            // It first records how many IPv4 capture rules are installed at that moment, so the
            // test proves IPv4 went in and was rolled back, not that it was never tried.
            let bin = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-v6fail-\(getpid())").path
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: bin) }
            let fake = "\(bin)/ip6tables-restore"
            let marker = "\(bin)/ipv4-at-failure"
            try """
                #!/bin/sh
                cat >/dev/null
                iptables-save -t nat | grep -c TURNOUT-CAPTURE > \(marker)
                echo 'ip6tables-restore: line 2 failed (injected)' >&2
                exit 1

                """.write(toFile: fake, atomically: true, encoding: .utf8)
            chmod(fake, 0o755)
            let path = "\(bin):" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
            let result = try namespace.run("env", ["PATH=\(path)", Repository.turnoutBinary, "init", "--backend", "iptables", "--ipv6", "on"])
            #expect(result.status == 1)
            #expect(result.standardError.contains("injected"), "\(result.standardError)")
            let atFailure = Int((try? String(contentsOfFile: marker, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
            #expect(atFailure > 0, "IPv4 capture was not installed when IPv6 failed: nothing was rolled back")
            let v4 = try namespace.run("iptables-save", ["-t", "nat"]).standardOutput
            #expect(!v4.contains("TURNOUT-CAPTURE"), "IPv4 capture left behind:\n\(v4)")
            // With IPv6 off the same tools install IPv4 alone.
            let v4only = try namespace.run("env", ["PATH=\(path)", Repository.turnoutBinary, "init", "--backend", "iptables", "--ipv6", "off"])
            #expect(v4only.status == 0, "\(v4only.standardError)")
        }
    }
}

/// `turnout init` where outgoing connections may take the proxy's ports (a widened ephemeral
/// range): installed all the same, with a warning that says how to reserve them.
@Suite("turnout init: the proxy's ports inside the ephemeral range", .serialized,
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct InitExposedPortsTests {
    @Test("ephemeral range, reserved ports, flags → exit 0 and the warning for the capture ports and the proxy's default admin port (or none)", arguments: [
        ("32768 60999", "", [], nil),
        ("1024 65535", "", [], "ports 15000, 15001, 15006 are inside this network namespace's ephemeral range (net.ipv4.ip_local_port_range 1024-65535)"),
        ("1024 65535", "15000,15001,15006", [], nil),
        ("1024 65535", "15000,15001,15006", ["-p", "15002"], "Reserve it: sysctl -w net.ipv4.ip_local_reserved_ports=15000-15002,15006"),
    ] as [(String, String, [String], String?)])
    func warning(_ range: String, _ reserved: String, _ flags: [String], _ expected: String?) throws {
        try withNetworkNamespace(prefix: "init-ports") { namespace in
            let up = try namespace.run("ip", ["link", "set", "lo", "up"])
            try #require(up.status == 0, "\(up.standardError)")
            try namespace.sysctl("net.ipv4.ip_local_port_range=\(range)")
            if !reserved.isEmpty { try namespace.sysctl("net.ipv4.ip_local_reserved_ports=\(reserved)") }
            let result = try namespace.run(Repository.turnoutBinary, ["init", "--backend", "nft"] + flags)
            #expect(result.status == 0, "\(result.standardError)")
            if let expected {
                #expect(result.standardError.contains("turnout init: warning: "), "\(result.standardError)")
                #expect(result.standardError.contains(expected), "\(result.standardError)")
            } else {
                #expect(!result.standardError.contains("ip_local_port_range"), "\(result.standardError)")
            }
        }
    }
}
