import Testing
import TurnoutModel
import TurnoutRules
import TurnoutTestSupport

/// Properties of the compilers that no single trace shows.
@Suite("Compiler properties")
struct CompilerPropertyTests {
    static func generated(services: Int, endpoints: Int = 3) -> ServiceTable {
        ServiceTable(services: (0..<services).map { index in
            Service(name: ServiceName("ns/svc-\(index)")!,
                    addresses: [IPAddress("10.96.\(index / 250).\(index % 250 + 1)")!],
                    ports: [ServicePort(name: "http", port: 80, targetPort: 8080)],
                    endpoints: (0..<endpoints).map { Endpoint(address: IPAddress("10.1.\(index / 250).\(index % 250 + 1)")!.offset($0)) })
        })
    }

    @Test("nft dispatch does not grow with the table: 10 or 1,000 services → the same chains and rules")
    func constantDispatch() {
        let small = NftablesServiceCompiler.compile(Self.generated(services: 10))
        let large = NftablesServiceCompiler.compile(Self.generated(services: 1_000))
        #expect(small.chains == large.chains)
        #expect(large.set(named: "service-ips4")?.elements.count == 1_000)
        #expect(large.set(named: "endpoint-picks4-mod3")?.elements.count == 3_000)
        #expect(small.sets.map(\.name) == large.sets.map(\.name), "the same maps too")
    }

    @Test("services with proportional weights share one pick chain (90/10 and 9/1 → weighted-pick-10)")
    func gcdReduction() throws {
        let rules = NftablesServiceCompiler.compile(try table("""
            services:
              - {name: a/a, addresses: [10.96.0.1], ports: [{port: 80}], endpoints: [{address: 10.1.0.1, weight: 90}, {address: 10.1.0.2, weight: 10}]}
              - {name: a/b, addresses: [10.96.0.2], ports: [{port: 80}], endpoints: [{address: 10.1.0.3, weight: 9}, {address: 10.1.0.4, weight: 1}]}
            """))
        #expect(rules.chains.map(\.name).filter { $0.hasPrefix("weighted-pick-") } == ["weighted-pick-10"])
        #expect(rules.sets.map(\.name).filter { $0.hasPrefix("endpoint-picks") } == ["endpoint-picks4-mod10", "endpoint-picks6-mod10"])
        #expect(rules.set(named: "endpoint-picks4-mod10")?.elements.count == 20)
    }

    /// One service with these weights → which pick map holds it, how many elements, which chain.
    struct PickLayoutCase: Sendable, CustomTestStringConvertible {
        var weights: [UInt32]
        var map: String
        var elements: Int
        var chain: String
        var testDescription: String {
            let shown = weights.count > 4 ? "\(weights.count) × \(weights[0])" : weights.map(String.init).joined(separator: ":")
            return "\(shown) → \(elements) in \(map) via \(chain)"
        }
    }

    @Test("a split → one hash-map element per drawn value, ranges only past 100 values", arguments: [
        PickLayoutCase(weights: [90, 10], map: "endpoint-picks4-mod10", elements: 10, chain: "weighted-pick-10"),
        PickLayoutCase(weights: [1, 1, 1], map: "endpoint-picks4-mod3", elements: 3, chain: "weighted-pick-3"),
        PickLayoutCase(weights: [99, 1], map: "endpoint-picks4-mod100", elements: 100, chain: "weighted-pick-100"),
        PickLayoutCase(weights: Array(repeating: 5, count: 150), map: "endpoint-picks4-mod150", elements: 150, chain: "weighted-pick-150"),
        PickLayoutCase(weights: [100, 1], map: "endpoint-ranges4-mod101", elements: 2, chain: "weighted-range-101"),
        PickLayoutCase(weights: [997, 2, 1], map: "endpoint-ranges4-mod1000", elements: 3, chain: "weighted-range-1000"),
    ])
    func pickLayout(_ layout: PickLayoutCase) {
        let service = Service(name: ServiceName("ns/split")!, addresses: [IPAddress("10.96.0.1")!],
                              ports: [ServicePort(name: "http", port: 80, targetPort: 8080)],
                              endpoints: layout.weights.enumerated().map { Endpoint(address: IPAddress("10.1.0.1")!.offset($0.offset), weight: $0.element) })
        let rules = NftablesServiceCompiler.compile(ServiceTable(services: [service]))
        #expect(rules.set(named: layout.map)?.elements.count == layout.elements)
        // The chain's two maps (IPv4 holds the service), and no other pick or range map.
        #expect(rules.sets.map(\.name).filter { $0.hasPrefix("endpoint-") } == [layout.map, layout.map.replacing("4-mod", with: "6-mod")])
        #expect(rules.chains.map(\.name).filter { $0.hasPrefix("weighted-") } == [layout.chain])
    }

    @Test("a hash set's element count → its kernel size (a power of two it fills to at most four fifths, at least 1,024)", arguments: [
        (0, 1024), (1, 1024), (819, 1024), (820, 2048), (1024, 2048), (100_000, 131_072), (104_857, 131_072), (104_858, 262_144),
    ])
    func capacity(elements: Int, expected: Int) {
        #expect(NamedSet.capacity(forElements: elements) == expected)
    }

    @Test("sized: hash sets and maps carry a size, interval maps and affinity sets do not", arguments: ["affinity", "fine-split"])
    func sizedSets(example: String) throws {
        let rules = NftablesServiceCompiler.compile(try TurnoutRulesTests.example(example))
        for set in rules.sets {
            #expect((set.capacity != nil) == (!set.isInterval && !set.isDynamic), "\(set.name)")
        }
        #expect(rules.sets.contains { $0.isDynamic || $0.isInterval })
    }

    @Test("same table in any order → the same bytes", arguments: RuleFormatCase.allCases)
    func deterministic(_ format: RuleFormatCase) throws {
        let services = Self.generated(services: 50).services
        let forward = format.render(ServiceTable(services: services))
        let shuffled = format.render(ServiceTable(services: services.shuffled()))
        #expect(forward == shuffled)
        #expect(forward == format.render(ServiceTable(services: services)))
    }

    @Test("every iptables chain name fits iptables' 28 characters and starts with TURNOUT-", arguments: Repository.exampleTables)
    func iptablesNames(_ name: String) throws {
        for family in IPFamily.allCases {
            for chain in IptablesServiceCompiler.compile(try example(name), family: family).flatMap(\.chains) where !chain.isBuiltin {
                #expect(chain.name.count <= 28 && chain.name.hasPrefix("TURNOUT-"), "\(chain.name)")
            }
        }
    }

    @Test("built-in iptables chains get only jumps into Turnout's own chains")
    func builtinJumpsOnly() throws {
        for table in IptablesServiceCompiler.compile(try example("canary"), family: .ipv4) {
            for chain in table.chains where chain.isBuiltin {
                for rule in chain.rules {
                    guard case .verdict(.jump(let target))? = rule.statements.last else {
                        Issue.record("\(chain.name): \(rule) is not a jump")
                        continue
                    }
                    #expect(target.hasPrefix("TURNOUT-"))
                }
            }
        }
    }

    @Test("nft and iptables agree on every frontend of every example", arguments: Repository.exampleTables)
    func dialectsAgree(_ name: String) throws {
        let rules = try example(name)
        for service in rules.services {
            for address in service.addresses {
                for port in service.ports {
                    let destination = SocketAddress(address: address, port: port.port).description
                    for origin in TraceOrigin.allCases {
                        let nft = trace(rules, .nftables, to: destination, transport: port.transport, origin: origin)
                        let iptables = trace(rules, .iptables, to: destination, transport: port.transport, origin: origin)
                        #expect(nft == iptables, "\(service.name) \(destination)/\(port.transport) \(origin)")
                        #expect(nft.values.reduce(Probability.zero, +) == .one)
                    }
                }
            }
        }
    }
}

enum RuleFormatCase: String, CaseIterable, Sendable {
    case nft, iptables, ip6tables

    func render(_ table: ServiceTable) -> String {
        switch self {
        case .nft: NftablesRenderer.render([NftablesServiceCompiler.compile(table)])
        case .iptables: IptablesRenderer.render(IptablesServiceCompiler.compile(table, family: .ipv4))
        case .ip6tables: IptablesRenderer.render(IptablesServiceCompiler.compile(table, family: .ipv6))
        }
    }
}

extension IPAddress {
    /// The address `n` further on, for generated tables (IPv4 only; stays inside the last octet's /24 here).
    func offset(_ n: Int) -> IPAddress {
        guard case .v4(let value) = self else { return self }
        return .v4(value &+ UInt32(n) * 65_536)
    }
}
