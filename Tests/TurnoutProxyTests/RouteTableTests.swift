import Testing
import TurnoutControl
import TurnoutModel
import TurnoutProxy
import TurnoutRules
import TurnoutTestSupport

/// Original destinations looked up in the route table built from the `rules/` examples.
@Suite("Routing an original destination to a service")
struct RouteTableTests {
    @Test("canary 10.96.0.20:80 → shop/checkout:http, 10.1.0.5:8080 ×90 and 10.1.0.6:8081 ×10")
    func canary() throws {
        let route = try #require(try routes("canary").route(for: address("10.96.0.20:80")))
        #expect(route.service.description == "shop/checkout")
        #expect(route.port.name == "http" && route.port.port == 80)
        #expect(route.label == "shop/checkout:http")
        #expect(route.family == .ipv4)
        #expect(route.endpoints.map(\.address) == [address("10.1.0.5:8080"), address("10.1.0.6:8081")])
        #expect(route.weights == [90, 10])
        #expect(route.endpoints.map(\.index) == [0, 1])
        #expect(route.endpoints.map(\.zone) == ["a", "b"])
    }

    @Test("dual stack 10.96.0.40:80 → the IPv4 endpoints 2:1 on target port 8080")
    func dualStackIPv4() throws {
        let route = try #require(try routes("dual-stack").route(for: address("10.96.0.40:80")))
        #expect(route.family == .ipv4)
        #expect(route.endpoints.map(\.address) == [address("10.1.0.21:8080"), address("10.1.0.22:8080")])
        #expect(route.weights == [2, 1])
    }

    @Test("dual stack [fd00:96::40]:80 → the IPv6 endpoints 1:1 on target port 8080")
    func dualStackIPv6() throws {
        let route = try #require(try routes("dual-stack").route(for: address("[fd00:96::40]:80")))
        #expect(route.service.description == "infra/dns-web")
        #expect(route.family == .ipv6)
        #expect(route.addresses == [IPAddress("fd00:96::40")!])
        #expect(route.endpoints.map(\.address) == [address("[fd00:1::21]:8080"), address("[fd00:1::22]:8080")])
        #expect(route.weights == [1, 1])
    }

    @Test("dual stack dns 53/udp → no route, whether asked as TCP or UDP (the proxy splices TCP only)")
    func udpNotRouted() throws {
        let table = try routes("dual-stack")
        for destination in ["10.96.0.40:53", "[fd00:96::40]:53"] {
            #expect(table.route(for: address(destination)) == nil, "\(destination)")
            #expect(table.route(for: address(destination), transport: .udp) == nil, "\(destination)")
        }
        #expect(table.route(for: address("10.96.0.40:80"), transport: .udp) == nil, "80 is TCP only")
        #expect(table.routes.allSatisfy { $0.port.transport == .tcp })
    }

    @Test("unknown VIP, unknown port, a target port or an endpoint address → nil")
    func unknown() throws {
        let table = try routes("canary")
        for destination in ["10.96.0.21:80", "10.96.0.20:81", "10.96.0.20:8080", "10.1.0.5:8080"] {
            #expect(table.route(for: address(destination)) == nil, "\(destination)")
        }
        #expect(RouteTable.empty.route(for: address("10.96.0.20:80")) == nil)
        #expect(RouteTable.empty.routes.isEmpty)
    }

    @Test("weights 1:2:3 plus a drained endpoint → three endpoints, the weight-0 one left out")
    func drainedLeftOut() throws {
        let route = try #require(try routes("weights-1-2-3").route(for: address("10.96.0.50:80")))
        #expect(route.endpoints.map(\.address) == [address("10.1.0.11:9200"), address("10.1.0.12:9200"), address("10.1.0.13:9200")])
        #expect(route.weights == [1, 2, 3])
        #expect(route.endpoints.map(\.index) == [0, 1, 2])
    }

    @Test("no endpoints, or only drained ones → a route with no endpoint (reject), not nil (unknown)")
    func noEndpoints() throws {
        let table = try routes("no-endpoints")
        let empty = try #require(table.route(for: address("10.96.0.30:80")))
        #expect(empty.endpoints.isEmpty)
        let drained = try #require(table.route(for: address("10.96.0.31:80")))
        #expect(drained.endpoints.isEmpty)
        #expect(table.route(for: address("10.96.0.30:8125"), transport: .udp) == nil)
        #expect(table.route(for: address("10.96.0.10:80"))?.endpoints.map(\.address) == [address("10.1.0.5:8080")])
    }

    @Test("two IPv4 VIPs of one port → one shared route (one balancer); ids index routes")
    func sharedRoute() throws {
        let table = RouteTable(try TableDecoder.decode("""
            services:
              - name: shop/api
                addresses: [10.96.0.10, 10.96.0.11, "fd00::10"]
                ports:
                  - {name: http, port: 80, targetPort: 8080}
                  - {name: admin, port: 9000}
                endpoints:
                  - {address: 10.1.0.5, ports: {admin: 9901}}
                  - {address: "fd00:1::5"}
            """, name: "test.yaml"))
        let first = try #require(table.route(for: address("10.96.0.10:80")))
        let second = try #require(table.route(for: address("10.96.0.11:80")))
        #expect(first == second)
        #expect(first.addresses == [IPAddress("10.96.0.10")!, IPAddress("10.96.0.11")!])
        #expect(table.route(for: address("[fd00::10]:80"))?.id != first.id)
        #expect(table.routes.enumerated().allSatisfy { $0.offset == $0.element.id })
        #expect(table.routes.count == 4, "2 ports × 2 families")
        #expect(table.route(for: address("10.96.0.11:9000"))?.endpoints.map(\.address) == [address("10.1.0.5:9901")])
        #expect(table.route(for: address("[fd00::10]:9000"))?.endpoints.map(\.address) == [address("[fd00:1::5]:9000")])
    }

    /// The proxy must send a connection where `direct` mode's kernel rules would: for every TCP
    /// VIP:port of every example, the route's endpoints and weight shares equal the outcomes the
    /// packet tracer finds in the compiled nft rules.
    @Test("every example's TCP frontends → the same endpoints and shares as the compiled rules", arguments: Repository.exampleTables)
    func agreesWithKernelRules(_ name: String) throws {
        let serviceTable = try TableFile.load(Repository.path("rules/\(name).yaml"))
        let table = RouteTable(serviceTable)
        let rules = [NftablesServiceCompiler.compile(serviceTable, options: ServiceCompilerOptions())]
        for service in serviceTable.services {
            for port in service.ports {
                for vip in service.addresses {
                    let destination = SocketAddress(address: vip, port: port.port)
                    let route = table.route(for: destination)
                    guard port.transport == .tcp else {
                        #expect(route == nil, "\(destination) is \(port.transport)")
                        continue
                    }
                    let client = vip.family == .ipv4 ? IPAddress("192.0.2.1")! : IPAddress("2001:db8::1")!
                    let traced = PacketTracer(tables: rules).trace(TracePacket(source: client, destination: destination, transport: .tcp, origin: .local))
                    let kernel = Dictionary(uniqueKeysWithValues: traced.map { ($0.disposition, $0.probability) })
                    #expect(kernel == (try #require(route)).expectedOutcomes, "\(name): \(destination)")
                }
            }
        }
    }

    private func routes(_ name: String) throws -> RouteTable {
        RouteTable(try TableFile.load(Repository.path("rules/\(name).yaml")))
    }
}

func address(_ text: String) -> SocketAddress {
    SocketAddress(text)!
}

extension ServiceRoute {
    /// What the tracer reports for a route: each endpoint with its weight share, or a reset.
    var expectedOutcomes: [Disposition: Probability] {
        let total = endpoints.reduce(UInt64(0)) { $0 + UInt64($1.weight) }
        guard total > 0 else { return [.rejected(.tcpReset): .one] }
        return Dictionary(endpoints.map { (Disposition.delivered($0.address, masqueraded: false), Probability(UInt64($0.weight), total)) },
                          uniquingKeysWith: +)
    }
}
