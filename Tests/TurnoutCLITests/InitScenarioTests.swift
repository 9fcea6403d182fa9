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
            let start = ContinuousClock.now
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app) == .refused)
            #expect(ContinuousClock.now - start < .milliseconds(500))
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

            // Cleanup leaves a foreign rule and a live connection alone.
            _ = try lab.run(.app, "nft", ["add", "table", "inet", "foreign"])
            let cleanup = try Self.initialize(lab, backend, ["--cleanup"])
            #expect(cleanup.status == 0, "\(cleanup.standardError)")
            #expect(try lab.connect(from: .app, to: CaptureLab.worldIPv4, port: 80, uid: Self.app).line == "peer 80 from 10.20.0.2")
            #expect(try lab.run(.app, "nft", ["list", "table", "inet", "foreign"]).status == 0)
            let second = try Self.initialize(lab, backend, ["--cleanup", "--format", "json"])
            #expect(second.standardOutput.contains("\"outcome\":\"absent\""), "\(second.standardOutput)")
        }
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
}
