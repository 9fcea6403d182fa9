import Testing
import TurnoutModel
import TurnoutRules

/// `turnout init`'s rule order, traced packet by packet through the rules both dialects get:
/// the nft table (both families in one) and the iptables `nat` table of each family.
@Suite("Capture rules: where each connection goes")
struct CaptureTraceTests {
    enum Dialect: String, CaseIterable, CustomStringConvertible {
        case nft, iptables
        var description: String { rawValue }
    }

    static let app = IPAddress("10.20.0.2")!
    static let app6 = IPAddress("fd00:20::2")!

    /// Options the scenarios share: a few of every list.
    static var options: CaptureOptions {
        var options = CaptureOptions()
        options.excludeOutboundPorts = [PortRange(5432)!, PortRange(9000, 9100)!]
        options.excludeOutboundCIDRs = [try! IPPrefix(parsing: "10.31.0.0/16"), try! IPPrefix(parsing: "fd00:31::/64")]
        options.captureOutboundPorts = [PortRange(443)!]
        options.excludeInboundPorts = [PortRange(15020)!, PortRange(15021)!]
        options.excludeInterfaces = ["eth1"]
        return options
    }

    static func dispositions(_ packet: TracePacket, _ dialect: Dialect, options: CaptureOptions = options) -> [Disposition] {
        let tables: [RuleTable] = switch dialect {
        case .nft: [CaptureCompiler.nftables(options)]
        case .iptables: CaptureCompiler.iptables(options, family: packet.destination.address.family).map { [$0] } ?? []
        }
        return PacketTracer(tables: tables).trace(packet).map(\.disposition)
    }

    static func outbound(to destination: String, uid: UInt32 = 1000, gid: UInt32? = nil, from source: IPAddress = app,
                         transport: TransportProtocol = .tcp, interface: String? = nil) -> TracePacket {
        TracePacket(source: source, destination: SocketAddress(destination)!, transport: transport, origin: .local,
                    uid: uid, gid: gid ?? uid, outputInterface: interface)
    }

    static func inbound(to destination: String, interface: String = "eth0") -> TracePacket {
        TracePacket(source: IPAddress("10.20.0.1")!, destination: SocketAddress(destination)!, origin: .forwarded, inputInterface: interface)
    }

    static let scenarios: [(String, TracePacket, Disposition)] = [
        ("app → outside: to the proxy", outbound(to: "10.30.0.5:80"), .redirected(port: 15001)),
        ("app → outside over IPv6: to the proxy", outbound(to: "[fd00:30::5]:80"), .redirected(port: 15001)),
        ("proxy uid → outside: untouched (no loop)", outbound(to: "10.30.0.5:80", uid: 1337, gid: 1000), .untouched),
        ("proxy gid → outside: untouched", outbound(to: "10.30.0.5:80", uid: 1000, gid: 1337), .untouched),
        ("app → 127.0.0.1: untouched", outbound(to: "127.0.0.1:8080"), .untouched),
        ("app → ::1: untouched", outbound(to: "[::1]:8080"), .untouched),
        ("app → its own address (over lo): untouched", outbound(to: "10.20.0.2:8080", interface: "lo"), .untouched),
        ("proxy → the app's own address (over lo): to the inbound port", outbound(to: "10.20.0.2:8080", uid: 1337, interface: "lo"), .redirected(port: 15006)),
        ("proxy → the app's own IPv6 address: to the inbound port", outbound(to: "[fd00:20::2]:8080", uid: 1337, interface: "lo"), .redirected(port: 15006)),
        ("proxy → 127.0.0.2: untouched (all of 127/8 is localhost)", outbound(to: "127.0.0.2:8080", uid: 1337), .untouched),
        ("proxy from 127.0.0.6 → the app: untouched (passthrough)",
         outbound(to: "10.20.0.2:8080", uid: 1337, from: IPAddress("127.0.0.6")!, interface: "lo"), .untouched),
        ("proxy from ::6 → the app: untouched", outbound(to: "[fd00:20::2]:8080", uid: 1337, from: IPAddress("::6")!, interface: "lo"), .untouched),
        ("excluded port 5432: untouched", outbound(to: "10.30.0.5:5432"), .untouched),
        ("excluded range 9000-9100 (9050): untouched", outbound(to: "10.30.0.5:9050"), .untouched),
        ("excluded CIDR 10.31/16: untouched", outbound(to: "10.31.0.5:80"), .untouched),
        ("excluded CIDR fd00:31::/64: untouched", outbound(to: "[fd00:31::5]:80"), .untouched),
        ("always-captured port 443 beats the excluded CIDR", outbound(to: "10.31.0.5:443"), .redirected(port: 15001)),
        ("UDP (DNS): untouched", outbound(to: "10.30.0.5:53", transport: .udp), .untouched),
        ("excluded interface eth1: untouched", outbound(to: "10.40.0.5:80", interface: "eth1"), .untouched),
        ("inbound → the app: to the inbound port", inbound(to: "10.20.0.2:8080"), .redirected(port: 15006)),
        ("inbound → excluded port 15020: untouched", inbound(to: "10.20.0.2:15020"), .untouched),
        ("inbound on excluded interface eth1: untouched", inbound(to: "10.21.0.2:8080", interface: "eth1"), .untouched),
    ]

    @Test("scenario → disposition, in both dialects", arguments: Dialect.allCases, scenarios.indices)
    func scenario(dialect: Dialect, index: Int) {
        let (what, packet, expected) = Self.scenarios[index]
        #expect(Self.dispositions(packet, dialect) == [expected], "\(what)")
    }

    @Test("exclusion beats inclusion: a port both captured and excluded → untouched", arguments: Dialect.allCases)
    func exclusionWins(dialect: Dialect) {
        var options = Self.options
        options.captureOutboundPorts = [PortRange(5432)!]
        #expect(Self.dispositions(Self.outbound(to: "10.30.0.5:5432"), dialect, options: options) == [.untouched])
    }

    @Test("include-only outbound CIDRs: inside → proxy, outside → untouched", arguments: Dialect.allCases)
    func includeOnly(dialect: Dialect) {
        var options = CaptureOptions()
        options.captureOutbound = .only([try! IPPrefix(parsing: "10.30.0.0/24")])
        #expect(Self.dispositions(Self.outbound(to: "10.30.0.5:80"), dialect, options: options) == [.redirected(port: 15001)])
        #expect(Self.dispositions(Self.outbound(to: "10.32.0.5:80"), dialect, options: options) == [.untouched])
        // No IPv6 block listed: IPv6 outbound is not captured.
        #expect(Self.dispositions(Self.outbound(to: "[fd00:30::5]:80"), dialect, options: options) == [.untouched])
    }

    @Test("inbound: only the listed ports; an empty list captures no inbound at all", arguments: Dialect.allCases)
    func inboundPorts(dialect: Dialect) {
        var options = CaptureOptions()
        options.captureInboundPorts = .only([PortRange(8080)!])
        #expect(Self.dispositions(Self.inbound(to: "10.20.0.2:8080"), dialect, options: options) == [.redirected(port: 15006)])
        #expect(Self.dispositions(Self.inbound(to: "10.20.0.2:9090"), dialect, options: options) == [.untouched])
        options.captureInboundPorts = .only([])
        #expect(Self.dispositions(Self.inbound(to: "10.20.0.2:8080"), dialect, options: options) == [.untouched])
    }

    @Test("more than 15 excluded ports: every one stays excluded (iptables splits multiport)", arguments: Dialect.allCases)
    func longPortList(dialect: Dialect) {
        var options = CaptureOptions()
        options.excludeOutboundPorts = stride(from: 1001, through: 1061, by: 2).map { PortRange($0)! } + [PortRange(2000, 2100)!]
        for port: UInt16 in [1001, 1031, 1061, 2000, 2050, 2100] {
            #expect(Self.dispositions(Self.outbound(to: "10.30.0.5:\(port)"), dialect, options: options) == [.untouched], "port \(port)")
        }
        for port: UInt16 in [1002, 1063, 2101] {
            #expect(Self.dispositions(Self.outbound(to: "10.30.0.5:\(port)"), dialect, options: options) == [.redirected(port: 15001)], "port \(port)")
        }
        if dialect == .iptables {
            let rules = CaptureCompiler.iptables(options, family: .ipv4)!.chains.first { $0.name == CaptureCompiler.iptablesOutboundChain }!.rules
            #expect(rules.filter { $0.statements == [.verdict(.return)] && $0.matches.contains { if case .ports = $0 { true } else { false } } }.count == 3)
        }
    }

    @Test("--ipv6 off: IPv6 is not captured; the iptables IPv6 table is empty", arguments: Dialect.allCases)
    func ipv6Off(dialect: Dialect) {
        var options = CaptureOptions()
        options.ipv6 = false
        #expect(Self.dispositions(Self.outbound(to: "10.30.0.5:80"), dialect, options: options) == [.redirected(port: 15001)])
        #expect(Self.dispositions(Self.outbound(to: "[fd00:30::5]:80"), dialect, options: options) == [.untouched])
        #expect(CaptureCompiler.iptables(options, family: .ipv6) == nil)
    }
}
