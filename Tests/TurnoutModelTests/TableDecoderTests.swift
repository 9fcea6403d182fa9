import Testing
import TurnoutModel

@Suite("Decoding Turnout's table format")
struct TableDecoderTests {
    @Test("the canary example: weights, a port override and zones")
    func canary() throws {
        let table = try TableDecoder.decode("""
            services:
              - name: shop/checkout
                addresses: [10.96.0.20]
                ports:
                  - {name: http, port: 80, targetPort: 8080}
                endpoints:
                  - {address: 10.1.0.5, weight: 90, zone: a}
                  - {address: 10.1.0.6, port: 8081, weight: 10, zone: b}
            """, name: "canary.yaml")
        let service = try #require(table[ServiceName("shop/checkout")!])
        #expect(service.addresses == [IPAddress("10.96.0.20")!])
        #expect(service.ports == [ServicePort(name: "http", port: 80, targetPort: 8080, transport: .tcp)])
        #expect(service.endpoints.map(\.weight) == [90, 10])
        #expect(service.endpoints.map { $0.targetPort(for: service.ports[0]) } == [8080, 8081])
        #expect(service.endpoints.map(\.zone) == ["a", "b"])
    }

    @Test("defaults: weight 1, protocol tcp, targetPort = port, no affinity")
    func defaults() throws {
        let table = try TableDecoder.decode("""
            services:
              - name: a/b
                addresses: [10.96.0.1]
                ports: [{port: 53}]
                endpoints: [{address: 10.1.0.1}]
            """, name: "t.yaml")
        let service = table.services[0]
        #expect(service.ports[0] == ServicePort(name: "", port: 53, targetPort: 53, transport: .tcp))
        #expect(service.endpoints[0].weight == 1)
        #expect(service.affinity == nil)
    }

    @Test("JSON is accepted as YAML")
    func json() throws {
        let table = try TableDecoder.decode("""
            {"services": [{"name": "a/b", "addresses": ["fd00::1"], "ports": [{"port": 80, "protocol": "udp"}],
              "endpoints": [{"address": "fd00:1::1", "weight": 3}], "affinity": {"clientIP": {"timeoutSeconds": 60}}}]}
            """, name: "t.json")
        let service = table.services[0]
        #expect(service.addresses == [IPAddress("fd00::1")!])
        #expect(service.ports[0].transport == .udp)
        #expect(service.affinity == SessionAffinity(timeoutSeconds: 60))
    }

    @Test("several sources merge into one table, sorted by service name")
    func merge() throws {
        let table = try TableDecoder.decode([
            TableSource(name: "b.yaml", text: "services:\n  - {name: z/z, addresses: [10.96.0.2], ports: [{port: 80}]}\n"),
            TableSource(name: "a.yaml", text: "services:\n  - {name: a/a, addresses: [10.96.0.1], ports: [{port: 80}]}\n"),
        ])
        #expect(table.services.map(\.name.description) == ["a/a", "z/z"])
    }

    @Test("an empty services list is a valid, empty table")
    func empty() throws {
        #expect(try TableDecoder.decode("services: []\n", name: "t.yaml").services.isEmpty)
        #expect(try TableDecoder.decode("services:\n", name: "t.yaml").services.isEmpty)
    }
}

/// Each bad input → the exact line, column-free field path and a message that says what is wrong.
@Suite("Rejecting bad tables with file:line and field")
struct TableValidationTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var yaml: String
        var line: Int
        var field: String
        var message: String
        var testDescription: String { name }
    }

    static let service = "  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{name: http, port: 80}]\n"

    static let cases: [Case] = [
        Case(name: "duplicate service name",
             yaml: "services:\n\(service)  - name: shop/api\n    addresses: [10.96.0.11]\n    ports: [{port: 80}]\n",
             line: 5, field: "services[1].name", message: "duplicate service name 'shop/api'"),
        Case(name: "the same VIP:port:protocol in two services",
             yaml: "services:\n\(service)  - name: shop/other\n    addresses: [10.96.0.10]\n    ports: [{port: 80}]\n",
             line: 7, field: "services[1].ports[0]", message: "10.96.0.10:80/tcp is already used by service 'shop/api'"),
        Case(name: "a bad address",
             yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.300]\n    ports: [{port: 80}]\n",
             line: 3, field: "services[0].addresses[0]", message: "'10.96.0.300' is not an IPv4 or IPv6 address"),
        Case(name: "an IPv6 endpoint behind IPv4-only addresses (mixed-up families)",
             yaml: "services:\n\(service)    endpoints:\n      - {address: 'fd00::5'}\n",
             line: 6, field: "services[0].endpoints[0].address", message: "endpoint fd00::5 is ipv6 but the service's addresses are ipv4"),
        Case(name: "a multicast service address",
             yaml: "services:\n  - name: shop/api\n    addresses: [224.0.0.1]\n    ports: [{port: 80}]\n",
             line: 3, field: "services[0].addresses[0]", message: "unspecified, multicast or broadcast"),
        Case(name: "port 0",
             yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{port: 0}]\n",
             line: 4, field: "services[0].ports[0].port", message: "port must be between 1 and 65535, got 0"),
        Case(name: "port above 65535",
             yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports:\n      - {port: 80, targetPort: 70000}\n",
             line: 5, field: "services[0].ports[0].targetPort", message: "port must be between 1 and 65535, got 70000"),
        Case(name: "a negative weight",
             yaml: "services:\n\(service)    endpoints:\n      - {address: 10.1.0.5, weight: -1}\n",
             line: 6, field: "services[0].endpoints[0].weight", message: "weight must be between 0 and 1000000, got -1"),
        Case(name: "a non-integer weight",
             yaml: "services:\n\(service)    endpoints:\n      - {address: 10.1.0.5, weight: 1.5}\n",
             line: 6, field: "services[0].endpoints[0].weight", message: "weight must be an integer, got '1.5'"),
        Case(name: "an unknown key (a misspelt weight)",
             yaml: "services:\n\(service)    endpoints:\n      - {address: 10.1.0.5, wieght: 5}\n",
             line: 6, field: "services[0].endpoints[0].wieght", message: "unknown key 'wieght'"),
        Case(name: "an empty service name",
             yaml: "services:\n  - name: ''\n    addresses: [10.96.0.10]\n    ports: [{port: 80}]\n",
             line: 2, field: "services[0].name", message: "must not be empty"),
        Case(name: "a name without a namespace",
             yaml: "services:\n  - name: api\n    addresses: [10.96.0.10]\n    ports: [{port: 80}]\n",
             line: 2, field: "services[0].name", message: "'api' is not namespace/name"),
        Case(name: "a missing address list",
             yaml: "services:\n  - name: shop/api\n    ports: [{port: 80}]\n",
             line: 2, field: "services[0]", message: "missing key 'addresses'"),
        Case(name: "an unknown protocol",
             yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{port: 80, protocol: icmp}]\n",
             line: 4, field: "services[0].ports[0].protocol", message: "protocol must be tcp, udp or sctp"),
        Case(name: "several unnamed ports",
             yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{port: 80}, {port: 443}]\n",
             line: 4, field: "services[0].ports[0].name", message: "a service with several ports must name each of them"),
        Case(name: "a single-port override on a multi-port service",
             yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{name: a, port: 80}, {name: b, port: 443}]\n    endpoints: [{address: 10.1.0.5, port: 8080}]\n",
             line: 5, field: "services[0].endpoints[0].port", message: "'port' is ambiguous"),
        Case(name: "a named port override for a port the service lacks",
             yaml: "services:\n\(service)    endpoints: [{address: 10.1.0.5, ports: {grpc: 9000}}]\n",
             line: 5, field: "services[0].endpoints[0].ports.grpc", message: "the service has no port named 'grpc'"),
        Case(name: "the same endpoint twice",
             yaml: "services:\n\(service)    endpoints:\n      - {address: 10.1.0.5}\n      - {address: 10.1.0.5}\n",
             line: 7, field: "services[0].endpoints[1].address", message: "listed twice"),
        Case(name: "an affinity timeout above Kubernetes' maximum",
             yaml: "services:\n\(service)    affinity: {clientIP: {timeoutSeconds: 90000}}\n",
             line: 5, field: "services[0].affinity.clientIP.timeoutSeconds", message: "timeoutSeconds must be between 1 and 86400"),
        Case(name: "text that is not YAML",
             yaml: "services:\n  - name: [unclosed\n",
             line: 3, field: "(document)", message: "not valid YAML"),
    ]

    @Test("bad input → one issue at the right line and field", arguments: cases)
    func rejects(_ badCase: Case) throws {
        let error = #expect(throws: TableError.self) { try TableDecoder.decode(badCase.yaml, name: "bad.yaml") }
        let issue = try #require(error?.issues.first, "an error must list its issues")
        #expect(issue.location.file == "bad.yaml")
        #expect(issue.location.line == badCase.line, "\(issue)")
        #expect(issue.field == badCase.field, "\(issue)")
        #expect(issue.message.contains(badCase.message), "\(issue)")
    }

    @Test("every problem of a table is reported, not only the first")
    func reportsAll() throws {
        let yaml = "services:\n  - name: shop/api\n    addresses: [10.96.0.300]\n    ports: [{port: 0}]\n    endpoints: [{address: 10.1.0.5, weight: -2}]\n"
        let error = #expect(throws: TableError.self) { try TableDecoder.decode(yaml, name: "bad.yaml") }
        #expect(error?.issues.map(\.location.line) == [3, 4, 5])
    }
}
