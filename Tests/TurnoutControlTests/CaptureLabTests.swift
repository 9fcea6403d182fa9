import Foundation
import Testing
import TurnoutModel
import TurnoutTestSupport

/// The capture lab itself, before any capture rules exist: the wiring, the servers, the
/// recording proxy, socket ownership and bound sources behave as the scenario tests assume.
@Suite("Capture lab", .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct CaptureLabTests {
    typealias Lab = CaptureLab

    /// A hand-written capture in the app: every TCP socket not owned by 1337 goes to the proxy's
    /// outbound port, and TCP arriving on eth0 to its inbound port.
    static let redirectRules = """
        table inet lab-check {
            chain output {
                type nat hook output priority -100;
                meta l4proto tcp meta skuid != 1337 redirect to :15001
            }
            chain prerouting {
                type nat hook prerouting priority -100;
                iifname "eth0" meta l4proto tcp redirect to :15006
            }
        }
        """

    @Test("no rules → app reaches the world by eth0 (v4, v6) and eth1, peer reaches the app, UDP answers, proxy records nothing")
    func noRules() throws {
        try withCaptureLab(prefix: "caplab-plain") { lab throws in
            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 80, uid: 1000) == .answered("peer 80 from 10.20.0.2"))
            #expect(try lab.connect(from: .app, to: Lab.worldIPv6, port: 80, uid: 1000) == .answered("peer 80 from fd00:20::2"))
            #expect(try lab.connect(from: .app, to: Lab.world2IPv4, port: 443, uid: 1000) == .answered("peer 443 from 10.20.0.2"))
            #expect(try lab.connect(from: .app, to: Lab.viaEth1IPv4, port: 80, uid: 1000) == .answered("peer 80 from 10.21.0.2"))
            #expect(try lab.connect(from: .app, to: Lab.viaEth1IPv6, port: 80, uid: 1000) == .answered("peer 80 from fd00:21::2"))
            #expect(try lab.connect(from: .peer, to: Lab.appIPv4, port: 8080) == .answered("app 8080 from 10.20.0.1"))
            #expect(try lab.connect(from: .peer, to: Lab.appIPv6, port: 9090) == .answered("app 9090 from fd00:20::1"))
            #expect(try lab.sendUDP(from: .app, to: Lab.worldIPv4, port: 53, uid: 1000) == "peer-udp 53 from 10.20.0.2")
            #expect(try lab.sendUDP(from: .app, to: Lab.worldIPv6, port: 53) == "peer-udp 53 from fd00:20::2")
            // Nothing listens on the peer's 81, nothing on UDP 54: both outcomes are reported, not thrown.
            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 81) == .refused)
            #expect(try lab.sendUDP(from: .app, to: Lab.worldIPv4, port: 54, timeout: .milliseconds(300)) == nil)
            #expect(lab.proxy.connections.isEmpty, "\(lab.proxy.connections)")

            // Straight to the proxy, no NAT: conntrack has no original destination to give.
            let direct = try lab.connect(from: .app, to: "127.0.0.1", port: 15006)
            #expect(direct.line?.hasPrefix("proxy 15006 orig=errno:\(ENOENT) from=127.0.0.1:") == true, "\(direct)")
            let direct6 = try lab.connect(from: .app, to: "::1", port: 15001)
            #expect(direct6.line?.hasPrefix("proxy 15001 orig=errno:\(ENOENT) from=[::1]:") == true, "\(direct6)")
            #expect(lab.proxy.connections.map(\.originalDestinationErrno) == [ENOENT, ENOENT])
        }
    }

    @Test("redirect to :15001 for skuid != 1337 (and eth0 inbound to :15006) → uid 1000 reaches the proxy with the original destination (v4, v6), 1337 bypasses it, the peer reaches 15006, a stopped proxy refuses")
    func handWrittenRedirect() throws {
        try withCaptureLab(prefix: "caplab-redirect") { lab throws in
            let installed = try lab.run(.app, "nft", ["-f", "-"], input: Self.redirectRules)
            try #require(installed.status == 0, "nft -f failed: \(installed.standardError)")

            let captured = try lab.connect(from: .app, to: Lab.worldIPv4, port: 80, uid: 1000)
            #expect(captured.line?.hasPrefix("proxy 15001 orig=10.30.0.5:80 from=10.20.0.2:") == true, "\(captured)")
            let record = try #require(lab.proxy.connections.first)
            #expect(lab.proxy.connections.count == 1)
            #expect(record.listenPort == 15001)
            #expect(record.originalDestination == SocketAddress("10.30.0.5:80"))
            #expect(record.client.address == IPAddress(Lab.appIPv4))
            #expect(record.local == SocketAddress("127.0.0.1:15001"), "redirect in the output hook goes to loopback")

            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 80, uid: Lab.proxyUID) == .answered("peer 80 from 10.20.0.2"))
            #expect(lab.proxy.connections.count == 1, "the proxy's own uid must not be captured")

            lab.proxy.reset()
            let captured6 = try lab.connect(from: .app, to: Lab.worldIPv6, port: 80, uid: 1000)
            #expect(captured6.line?.hasPrefix("proxy 15001 orig=[fd00:30::5]:80 from=[fd00:20::2]:") == true, "\(captured6)")
            #expect(lab.proxy.connections.map(\.originalDestination) == [SocketAddress("[fd00:30::5]:80")])
            #expect(try lab.connect(from: .app, to: Lab.worldIPv6, port: 80, uid: Lab.proxyUID) == .answered("peer 80 from fd00:20::2"))

            lab.proxy.reset()
            let inbound = try lab.connect(from: .peer, to: Lab.appIPv4, port: 8080)
            #expect(inbound.line?.hasPrefix("proxy 15006 orig=10.20.0.2:8080 from=10.20.0.1:") == true, "\(inbound)")
            let inbound6 = try lab.connect(from: .peer, to: Lab.appIPv6, port: 9090)
            #expect(inbound6.line?.hasPrefix("proxy 15006 orig=[fd00:20::2]:9090 from=[fd00:20::1]:") == true, "\(inbound6)")
            #expect(lab.proxy.connections.map(\.local) == [SocketAddress("10.20.0.2:15006"), SocketAddress("[fd00:20::2]:15006")],
                    "redirect in prerouting goes to the incoming interface's address")

            try lab.stopProxy()
            #expect(!lab.proxy.isRunning)
            // A reset, not a 2 s timeout: `.refused` is only ever a RST.
            let closed = try lab.connect(from: .app, to: Lab.worldIPv4, port: 80, uid: 1000)
            #expect(closed == .refused, "fail closed: nothing listens on 15001")

            try lab.startProxy()
            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 443, uid: 1000).line?.hasPrefix("proxy 15001 orig=10.30.0.5:443 ") == true)
        }
    }

    @Test("uid 1337 bound to 127.0.0.6 (and ::6) → the app's own address answers from the passthrough source")
    func passthroughSource() throws {
        try withCaptureLab(prefix: "caplab-source") { lab throws in
            #expect(try lab.connect(from: .app, to: Lab.appIPv4, port: 8080, uid: Lab.proxyUID, gid: Lab.proxyGID,
                                    source: Lab.inboundPassthroughIPv4) == .answered("app 8080 from 127.0.0.6"))
            #expect(try lab.connect(from: .app, to: Lab.appIPv6, port: 8080, uid: Lab.proxyUID, gid: Lab.proxyGID,
                                    source: Lab.inboundPassthroughIPv6) == .answered("app 8080 from ::6"))
        }
    }

    @Test("a socket made as uid/gid 1000 is owned by them as netfilter sees it (meta skuid/skgid), root's are not")
    func socketOwner() throws {
        try withCaptureLab(prefix: "caplab-owner") { lab throws in
            // Reject only what matches the owner, so each expectation names exactly one of uid and gid.
            let rules = """
                table inet lab-owner {
                    chain output {
                        type filter hook output priority 0;
                        ip daddr 10.30.0.5 tcp dport 9000 meta skuid 1000 reject with tcp reset
                        ip daddr 10.30.0.5 tcp dport 9001 meta skgid 1000 reject with tcp reset
                    }
                }
                """
            let installed = try lab.run(.app, "nft", ["-f", "-"], input: rules)
            try #require(installed.status == 0, "nft -f failed: \(installed.standardError)")
            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 9000, uid: 1000) == .refused)
            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 9000, gid: 1000) == .answered("peer 9000 from 10.20.0.2"))
            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 9001, gid: 1000) == .refused)
            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 9001, uid: 1000) == .answered("peer 9001 from 10.20.0.2"))
            #expect(try lab.connect(from: .app, to: Lab.worldIPv4, port: 9000) == .answered("peer 9000 from 10.20.0.2"))
        }
    }

    @Test("after withCaptureLab returns, both namespaces are gone")
    func teardown() throws {
        let names = try withCaptureLab(prefix: "caplab-teardown") { lab throws in
            let listed = try Self.listedNamespaces()
            #expect(listed.contains(lab.app.name) && listed.contains(lab.peer.name), "\(listed)")
            return [lab.app.name, lab.peer.name]
        }
        let listed = try Self.listedNamespaces()
        for name in names {
            #expect(!listed.contains(name), "\(name) is still listed: \(listed)")
        }
    }

    /// The names `ip netns list` prints, one a line before an optional ` (id: N)`.
    static func listedNamespaces() throws -> Set<String> {
        let output = try Subprocess.run("ip", ["netns", "list"], timeLimit: .seconds(10)).standardOutput
        return Set(output.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
    }
}
