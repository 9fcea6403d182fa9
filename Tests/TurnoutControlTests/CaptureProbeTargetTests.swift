import Testing
import TurnoutControl
import TurnoutModel
import TurnoutProxy

/// `turnout init --validate` chooses what to probe from the options by tracing candidates
/// through the compiled capture rules: options → the target and the user it connects as.
@Suite("Capture probe: target and user chosen from the options")
struct CaptureProbeTargetTests {
    /// Options built from istio-iptables-style settings, e.g. `[.excludeOutboundCIDRs: "192.0.2.0/24"]`.
    static func options(_ settings: [CaptureSetting: String]) throws -> CaptureOptions {
        var options = CaptureOptions()
        for (setting, value) in settings { try setting.apply(value, to: &options) }
        return options
    }

    static let cases: [(String, [CaptureSetting: String], IPFamily, String?)] = [
        ("defaults, IPv4", [:], .ipv4, "192.0.2.1:80"),
        ("defaults, IPv6", [:], .ipv6, "[2001:db8::1]:80"),
        ("192.0.2.0/24 excluded → the next documentation block", [.excludeOutboundCIDRs: "192.0.2.0/24"], .ipv4, "198.51.100.1:80"),
        ("include-only 10.0.0.0/8 → its first host", [.captureOutbound: "10.0.0.0/8"], .ipv4, "10.0.0.1:80"),
        ("include-only one host → that host", [.captureOutbound: "10.1.2.3/32"], .ipv4, "10.1.2.3:80"),
        ("include-only an IPv4 block, IPv6 → nothing captured", [.captureOutbound: "10.0.0.0/8"], .ipv6, nil),
        ("ports 80 and 443 excluded → 8080", [.excludeOutboundPorts: "80,443"], .ipv4, "192.0.2.1:8080"),
        ("capture off but port 5432 always captured → 5432", [.captureOutbound: "", .captureOutboundPorts: "5432"], .ipv4, "192.0.2.1:5432"),
        ("capture off → nothing to probe", [.captureOutbound: ""], .ipv4, nil),
        ("eth0 excluded → still probed, assuming another interface", [.excludeInterfaces: "eth0"], .ipv4, "192.0.2.1:80"),
    ]

    @Test("options → probe target", arguments: cases)
    func target(_ name: String, settings: [CaptureSetting: String], family: IPFamily, expected: String?) throws {
        let probe = CaptureProbe(options: try Self.options(settings))
        #expect(probe.target(for: family) == expected.map { SocketAddress($0)! }, "\(name)")
    }

    @Test("proxy uid/gid → the probe connects as the first id from 65534 down that is neither")
    func credentials() throws {
        #expect(CaptureProbe(options: CaptureOptions()).credentials == SocketCredentials(uid: 65534, gid: 65534))
        let crowded = try Self.options([.proxyUID: "1337,65534", .proxyGID: "65534,65533"])
        #expect(CaptureProbe(options: crowded).credentials == SocketCredentials(uid: 65533, gid: 65532))
    }

    @Test("capture off → run reports each family skipped and passed, probing nothing")
    func skipped() throws {
        let results = CaptureProbe(options: try Self.options([.captureOutbound: ""])).run()
        #expect(results.map(\.family) == [.ipv4, .ipv6])
        #expect(results.allSatisfy { $0.passed && $0.target == nil && $0.explanation == "skipped: outbound capture is off" })
    }
}
