import Testing
import TurnoutModel
import TurnoutRules
import TurnoutTestSupport

/// Packets traced through the compiled rules of the examples, in both dialects.
@Suite("Tracing service traffic through the compiled rules")
struct ServiceTraceTests {
    @Test("90/10 canary → exactly 9/10 and 1/10", arguments: Dialect.allCases, TraceOrigin.allCases)
    func canary(_ dialect: Dialect, _ origin: TraceOrigin) throws {
        let outcomes = trace(try example("canary"), dialect, to: "10.96.0.20:80", origin: origin)
        #expect(outcomes == [delivered("10.1.0.5:8080"): Probability(9, 10), delivered("10.1.0.6:8081"): Probability(1, 10)])
    }

    @Test("weights 1:2:3 → 1/6, 2/6, 3/6; the weight-0 endpoint gets nothing", arguments: Dialect.allCases)
    func oneTwoThree(_ dialect: Dialect) throws {
        let outcomes = trace(try example("weights-1-2-3"), dialect, to: "10.96.0.50:80")
        #expect(outcomes == [
            delivered("10.1.0.11:9200"): Probability(1, 6),
            delivered("10.1.0.12:9200"): Probability(2, 6),
            delivered("10.1.0.13:9200"): Probability(3, 6),
        ])
    }

    @Test("two equal endpoints → one half each", arguments: Dialect.allCases)
    func twoEndpoints(_ dialect: Dialect) throws {
        let outcomes = trace(try example("two-endpoints"), dialect, to: "10.96.0.10:80")
        #expect(outcomes == [delivered("10.1.0.5:8080"): Probability(1, 2), delivered("10.1.0.6:8080"): Probability(1, 2)])
    }

    @Test("no endpoints or only drained ones → refused at once (TCP reset, ICMP for UDP)", arguments: Dialect.allCases, TraceOrigin.allCases)
    func noEndpoints(_ dialect: Dialect, _ origin: TraceOrigin) throws {
        let rules = try example("no-endpoints")
        #expect(trace(rules, dialect, to: "10.96.0.30:80", origin: origin) == [.rejected(.tcpReset): .one])
        #expect(trace(rules, dialect, to: "10.96.0.30:8125", transport: .udp, origin: origin) == [.rejected(.portUnreachable): .one])
        #expect(trace(rules, dialect, to: "10.96.0.31:80", origin: origin) == [.rejected(.tcpReset): .one])
        #expect(trace(rules, dialect, to: "10.96.0.10:80", origin: origin) == [delivered("10.1.0.5:8080"): .one])
    }

    @Test("dual stack: each family picks among its own endpoints, per-port overrides apply", arguments: Dialect.allCases)
    func dualStack(_ dialect: Dialect) throws {
        let rules = try example("dual-stack")
        #expect(trace(rules, dialect, to: "10.96.0.40:80") == [
            delivered("10.1.0.21:8080"): Probability(2, 3), delivered("10.1.0.22:8080"): Probability(1, 3),
        ])
        #expect(trace(rules, dialect, to: "10.96.0.40:53", transport: .udp) == [
            delivered("10.1.0.21:53"): Probability(2, 3), delivered("10.1.0.22:5353"): Probability(1, 3),
        ])
        #expect(trace(rules, dialect, to: "[fd00:96::40]:80") == [
            delivered("[fd00:1::21]:8080"): Probability(1, 2), delivered("[fd00:1::22]:8080"): Probability(1, 2),
        ])
        #expect(trace(rules, dialect, to: "[fd00:96::40]:53", transport: .udp, origin: .forwarded) == [
            delivered("[fd00:1::21]:53"): Probability(1, 2), delivered("[fd00:1::22]:53"): Probability(1, 2),
        ])
    }

    @Test("traffic that is not for a service → untouched", arguments: Dialect.allCases)
    func notAService(_ dialect: Dialect) throws {
        let rules = try example("dual-stack")
        #expect(trace(rules, dialect, to: "10.96.0.40:53") == [.untouched: .one], "53/tcp is not a port of the service")
        #expect(trace(rules, dialect, to: "10.96.0.41:80") == [.untouched: .one])
        #expect(trace(rules, dialect, to: "[fd00::99]:443") == [.untouched: .one])
    }

    @Test("an endpoint reaching its own service → masqueraded (hairpin) when it lands on itself", arguments: Dialect.allCases)
    func hairpin(_ dialect: Dialect) throws {
        let outcomes = trace(try example("canary"), dialect, to: "10.96.0.20:80", from: "10.1.0.5", origin: .forwarded)
        #expect(outcomes == [
            delivered("10.1.0.5:8080", masqueraded: true): Probability(9, 10),
            delivered("10.1.0.6:8081"): Probability(1, 10),
        ])
    }

    @Test("Kubernetes import: only ready endpoints; terminating ones when nothing is ready", arguments: Dialect.allCases)
    func kubernetes(_ dialect: Dialect) throws {
        let rules = try example("kubernetes")
        #expect(trace(rules, dialect, to: "10.96.0.70:80") == [
            delivered("10.1.0.41:8080"): Probability(1, 2), delivered("10.1.0.42:8080"): Probability(1, 2),
        ])
        #expect(trace(rules, dialect, to: "10.96.0.71:80") == [delivered("10.1.0.51:8080"): .one])
    }
}

@Suite("Tracing proxy mode")
struct ProxyModeTraceTests {
    static let proxy = ServiceCompilerOptions(mode: .proxy, proxyPort: 15_001)

    @Test("TCP to a service → redirected to the proxy port, from this host and forwarded", arguments: Dialect.allCases, TraceOrigin.allCases)
    func redirect(_ dialect: Dialect, _ origin: TraceOrigin) throws {
        let outcomes = trace(try example("canary"), dialect, to: "10.96.0.20:80", origin: origin, options: Self.proxy)
        #expect(outcomes == [.redirected(port: 15_001): .one])
    }

    @Test("the proxy port is configurable", arguments: Dialect.allCases)
    func port(_ dialect: Dialect) throws {
        let options = ServiceCompilerOptions(mode: .proxy, proxyPort: 16_001)
        #expect(trace(try example("canary"), dialect, to: "10.96.0.20:80", options: options) == [.redirected(port: 16_001): .one])
    }

    @Test("UDP still goes straight to endpoints: the proxy relays TCP only", arguments: Dialect.allCases)
    func udpStaysInKernel(_ dialect: Dialect) throws {
        let outcomes = trace(try example("dual-stack"), dialect, to: "10.96.0.40:53", transport: .udp, options: Self.proxy)
        #expect(outcomes == [delivered("10.1.0.21:53"): Probability(2, 3), delivered("10.1.0.22:5353"): Probability(1, 3)])
    }

    @Test("a service without endpoints is still refused in the kernel", arguments: Dialect.allCases)
    func noEndpoints(_ dialect: Dialect) throws {
        #expect(trace(try example("no-endpoints"), dialect, to: "10.96.0.30:80", options: Self.proxy) == [.rejected(.tcpReset): .one])
    }
}

@Suite("Tracing client-IP affinity")
struct AffinityTraceTests {
    /// The timed set a returning client must be in to stick to `target`: the one its endpoint chain updates.
    static func affinitySet(for target: String, in tables: [RuleTable]) throws -> String {
        let socket = SocketAddress(target)!
        for table in tables {
            for chain in table.chains where chain.rules.contains(where: { $0.statements.contains(.dnat(socket)) }) {
                for rule in chain.rules {
                    for case .updateSet(_, let set) in rule.statements { return set }
                }
            }
        }
        throw AffinityError.noSet(target)
    }

    enum AffinityError: Error { case noSet(String) }

    @Test("a new client → the weighted split", arguments: Dialect.allCases)
    func firstConnection(_ dialect: Dialect) throws {
        #expect(trace(try example("affinity"), dialect, to: "10.96.0.60:80") == [
            delivered("10.1.0.31:8080"): Probability(3, 4), delivered("10.1.0.32:8080"): Probability(1, 4),
        ])
    }

    /// Per family: the service address, the endpoints (3:1 for IPv4, 1:1 for IPv6), a returning client and a new one.
    struct Returning: Sendable, CustomTestStringConvertible {
        var family: IPFamily
        var service: String
        var endpoints: [String]
        var firstSplit: [Probability]
        var client: String
        var otherClient: String
        var testDescription: String { family.description }
    }

    static let returning: [Returning] = [
        Returning(family: .ipv4, service: "10.96.0.60:80", endpoints: ["10.1.0.31:8080", "10.1.0.32:8080"],
                  firstSplit: [Probability(3, 4), Probability(1, 4)], client: "192.0.2.7", otherClient: "192.0.2.8"),
        Returning(family: .ipv6, service: "[fd00:96::60]:80", endpoints: ["[fd00:1::31]:8080", "[fd00:1::32]:8080"],
                  firstSplit: [Probability(1, 2), Probability(1, 2)], client: "2001:db8::7", otherClient: "2001:db8::8"),
    ]

    @Test("a returning client → the endpoint it had, with certainty; another client → the weighted split; each family keeps its own lists",
          arguments: Dialect.allCases, returning)
    func returningClient(_ dialect: Dialect, _ family: Returning) throws {
        let rules = try example("affinity")
        let set = try Self.affinitySet(for: family.endpoints[1], in: dialect.tables(rules, family: family.family))
        let state = TraceState(dynamicEntries: [set: [[.address(IPAddress(family.client)!)]]])
        #expect(trace(rules, dialect, to: family.service, from: family.client, state: state) == [delivered(family.endpoints[1]): .one])
        #expect(trace(rules, dialect, to: family.service, from: family.otherClient, state: state) == [
            delivered(family.endpoints[0]): family.firstSplit[0], delivered(family.endpoints[1]): family.firstSplit[1],
        ], "another client is not stuck")
    }

    @Test("one timed client list per endpoint, with the table's timeout", arguments: Dialect.allCases, IPFamily.allCases)
    func timeout(_ dialect: Dialect, _ family: IPFamily) throws {
        let timed = dialect.tables(try example("affinity"), family: family).flatMap(\.sets).filter(\.isDynamic)
            .filter { $0.key == [.address(.source, family)] }
        #expect(timed.count == 2)
        #expect(timed.allSatisfy { $0.timeoutSeconds == 600 })
    }
}
