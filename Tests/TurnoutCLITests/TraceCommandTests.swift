import Testing
import TurnoutTestSupport

@Suite("turnout trace prints every outcome with its probability")
struct TraceCommandTests {
    @Test("canary, nft and iptables rules → 9/10 and 1/10", arguments: ["nft", "iptables"])
    func canary(_ format: String) throws {
        let result = try turnout("trace", "-f", "rules/canary.yaml", "--to", "10.96.0.20:80", "--format", format)
        #expect(result.status == 0, "\(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
        #expect(lines.contains("9/10 90.00% dnat to 10.1.0.5:8080"))
        #expect(lines.contains("1/10 10.00% dnat to 10.1.0.6:8081"))
    }

    @Test("1:2:3 → 1/6, 1/3 (2/6), 1/2 (3/6)")
    func oneTwoThree() throws {
        let result = try turnout("trace", "-f", "rules/weights-1-2-3.yaml", "--to", "10.96.0.50:80", "--format", "iptables")
        #expect(result.standardOutput.contains("1/6 ") && result.standardOutput.contains("1/3 ") && result.standardOutput.contains("1/2 "))
        #expect(result.standardOutput.contains("16.67%") && result.standardOutput.contains("33.33%") && result.standardOutput.contains("50.00%"))
    }

    @Test("no endpoints → reject with tcp reset; proxy mode → redirect to the proxy port")
    func rejectAndRedirect() throws {
        #expect(try turnout("trace", "-f", "rules/no-endpoints.yaml", "--to", "10.96.0.30:80").standardOutput.contains("reject with tcp reset"))
        let proxied = try turnout("trace", "-f", "rules/canary.yaml", "--to", "10.96.0.20:80", "--mode", "proxy")
        #expect(proxied.standardOutput.contains("redirect to local port 15001"))
    }

    @Test("IPv6 destination, UDP, forwarded")
    func ipv6() throws {
        let result = try turnout("trace", "-f", "rules/dual-stack.yaml", "--to", "[fd00:96::40]:53", "--protocol", "udp", "--origin", "forwarded")
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("dnat to [fd00:1::21]:53"))
        #expect(result.standardOutput.contains("nat-prerouting"))
    }
}
