import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// `turnout init --dry-run` prints what `turnout init` installs: for each set of capture options,
/// the objects nft creates from the dry run's text and the objects Turnout's own netlink batch
/// creates are read back from the kernel and compared, expression for expression, element for
/// element (the capture twin of `EncoderEquivalenceTests`).
@Suite("Netlink encoder installs exactly what init --dry-run's nft text installs",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct CaptureEquivalenceTests {
    /// Capture options as `turnout init` flags (the same text `CaptureSetting.apply` parses).
    struct Case: Sendable, CustomTestStringConvertible {
        var settings: [(CaptureSetting, String)]
        var expectation: String
        var testDescription: String {
            let input = settings.isEmpty ? "defaults" : settings.map { "\($0.0.flag) '\($0.1)'" }.joined(separator: " ")
            return "\(input) → \(expectation)"
        }

        init(_ settings: [(CaptureSetting, String)], _ expectation: String) {
            self.settings = settings
            self.expectation = expectation
        }

        func options() throws -> CaptureOptions {
            var options = CaptureOptions()
            for (setting, text) in settings { try setting.apply(text, to: &options) }
            return options
        }
    }

    /// Single values (compared) and lists (anonymous sets: plain, interval, abutting blocks
    /// joined), in both families, for every option.
    static let cases: [Case] = [
        Case([], "both families, everything captured"),
        Case([(.ipv6, "off")], "IPv4 only, meta nfproto in the base chains"),
        Case([(.excludeOutboundPorts, "5432")], "one port compared"),
        Case([(.excludeOutboundPorts, "9000-9100")], "one range as >= and <="),
        Case([(.excludeOutboundCIDRs, "10.0.0.0/8,fd00::/8")], "one byte-aligned block per family, only its bytes loaded"),
        Case([(.excludeOutboundCIDRs, "10.1.16.0/20,2001:db8::/33")], "one block per family ending past the second byte, loaded whole and masked"),
        Case([(.excludeOutboundCIDRs, "169.254.169.254/32,fd00::a9fe/128")], "one host per family compared"),
        Case([(.captureOutbound, "10.0.0.0/8,fd00::/8")], "include-only, one byte-aligned block per family"),
        Case([(.captureOutbound, "")], "outbound capture off (only the loop guards)"),
        Case([(.captureOutboundPorts, "443")], "one port to the proxy whatever the address"),
        Case([(.captureInboundPorts, "8000-8999")], "only this inbound range captured"),
        Case([(.captureInboundPorts, "")], "inbound off: no prerouting chain"),
        Case([(.excludeInboundPorts, "15020")], "one inbound port left alone"),
        Case([(.excludeInterfaces, "eth1")], "one interface compared both ways"),
        Case([(.proxyUID, "1337"), (.proxyGID, "")], "uid only, no gid rules"),
        Case([(.proxyUID, "1338"), (.proxyGID, "2000")], "one uid and one gid compared"),
        Case([(.proxyPort, "15101"), (.inboundPort, "15106"), (.excludeOutboundPorts, "22"),
              (.excludeOutboundCIDRs, "10.1.16.0/20,2001:db8::/33"), (.captureOutbound, "10.0.0.0/8,fd00::/8"),
              (.captureOutboundPorts, "443"), (.captureInboundPorts, "8080-8443"), (.excludeInboundPorts, "8443"),
              (.excludeInterfaces, "eth1"), (.proxyUID, "1337"), (.proxyGID, "1339")], "single-valued options at once"),
        Case([(.excludeOutboundPorts, "22,80,443,3306,5432,6379,8080,8081,8082,9000-9100,9050,9101,9200-9300,9250-9400,10000,11211,15020,15021,15090,27017,65535")],
             "one interval set, adjacent and overlapping ranges joined"),
        Case([(.excludeOutboundPorts, "15020,15090,15021")], "interval set of 15020-15021 and 15090"),
        Case([(.excludeOutboundPorts, "22,5432")], "plain port set"),
        // 2001:db8::/33 and 2001:db8:8000::/48 abut: nft joins them into one interval.
        Case([(.excludeOutboundCIDRs, "10.64.0.0/10,172.16.0.0/12,192.168.0.0/16,169.254.169.254/32,100.64.0.0/10,2001:db8::/33,fd00::/8,fe80::/10,2001:db8:8000::/48")],
             "one interval set per family, non-byte-aligned blocks"),
        Case([(.excludeOutboundCIDRs, "10.64.0.0/10,2001:db8:1230::/45")], "one non-byte-aligned block per family, masked"),
        Case([(.excludeOutboundCIDRs, "172.16.0.0/12,fe80::/10")], "one block ending in the second byte per family, masked"),
        Case([(.excludeOutboundCIDRs, "169.254.169.254/32,169.254.169.253/32,fd00::1/128,fd00::2/128")], "plain address set per family"),
        Case([(.captureOutbound, "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,10.64.0.0/10,fd00::/8,2001:db8::/33")],
             "include-only: only these blocks to the proxy"),
        Case([(.captureOutbound, "10.96.0.0/12")], "include-only, IPv4 block only"),
        Case([(.captureOutboundPorts, "80,443,8080-8090,9000")], "these ports to the proxy whatever the address"),
        Case([(.captureInboundPorts, "8080,9090-9099,15000")], "only these inbound ports captured"),
        Case([(.excludeInboundPorts, "15020,15021,15090,15000-15010")], "these inbound ports left alone"),
        Case([(.excludeInterfaces, "eth1,veth-mesh0")], "interface set in both directions"),
        Case([(.proxyUID, "1337,1338,0,4294967294"), (.proxyGID, "1337,2000,3000")], "uid and gid sets"),
        Case([(.proxyPort, "15101"), (.inboundPort, "15106"), (.excludeOutboundPorts, "22,9000-9100"),
              (.excludeOutboundCIDRs, "10.64.0.0/10,169.254.169.254/32,2001:db8::/33"),
              (.captureOutbound, "10.0.0.0/8,fd00::/8"), (.captureOutboundPorts, "443"),
              (.captureInboundPorts, "8080,8443"), (.excludeInboundPorts, "8443"), (.excludeInterfaces, "eth1,eth2"),
              (.proxyUID, "1337,1338"), (.proxyGID, "1337,1339")], "everything at once"),
    ]

    @Test("init option X: nft -f (init --dry-run text) and Turnout's batch read back identical", arguments: cases)
    func batchMatchesNftText(_ example: Case) throws {
        let ruleTable = CaptureCompiler.nftables(try example.options())

        try NftEquivalence.check(ruleTable, namespacePrefix: "capeq")
    }
}

extension CaptureEquivalenceTests {
    @Test("the drain form `init --cleanup` installs: nft -f of its text and Turnout's batch read back identical")
    func drainMatchesNftText() throws {
        try NftEquivalence.check(CaptureCompiler.nftablesDrain(), namespacePrefix: "capeq")
    }
}
