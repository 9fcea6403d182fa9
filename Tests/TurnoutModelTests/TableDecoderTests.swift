import Testing
import TurnoutModel
import TurnoutTestSupport

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
            TableText(name: "b.yaml", text: "services:\n  - {name: z/z, addresses: [10.96.0.2], ports: [{port: 80}]}\n"),
            TableText(name: "a.yaml", text: "services:\n  - {name: a/a, addresses: [10.96.0.1], ports: [{port: 80}]}\n"),
        ])
        #expect(table.services.map(\.name.description) == ["a/a", "z/z"])
    }

    @Test("an empty services list is a valid, empty table")
    func empty() throws {
        #expect(try TableDecoder.decode("services: []\n", name: "t.yaml").services.isEmpty)
        #expect(try TableDecoder.decode("services:\n", name: "t.yaml").services.isEmpty)
    }
}

/// Each bad input (the shared catalogue in TurnoutTestSupport) → the exact line, field and message.
@Suite("Rejecting bad tables with file:line and field")
struct TableValidationTests {
    @Test("bad input → one issue at the right line and field", arguments: InvalidTable.all)
    func rejects(_ badCase: InvalidTable) throws {
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
