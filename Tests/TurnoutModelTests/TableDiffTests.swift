import Testing
import TurnoutModel

@Suite("Diffing two tables")
struct TableDiffTests {
    static func table(_ endpoints: String, extra: String = "") throws -> ServiceTable {
        try TableDecoder.decode("""
            services:
              - name: shop/api
                addresses: [10.96.0.10]
                ports: [{port: 80, targetPort: 8080}]
                endpoints: [\(endpoints)]
            \(extra)
            """, name: "t.yaml")
    }

    @Test("the same table → an empty diff")
    func same() throws {
        let table = try Self.table("{address: 10.1.0.5}")
        #expect(TableDiff(from: table, to: table).isEmpty)
    }

    @Test("a weight change → one changed endpoint, nothing added or removed")
    func weight() throws {
        let diff = TableDiff(from: try Self.table("{address: 10.1.0.5, weight: 9}"), to: try Self.table("{address: 10.1.0.5, weight: 1}"))
        let change = try #require(diff.changed.first)
        #expect(change.endpointsChanged.map { [$0.old.weight, $0.new.weight] } == [[9, 1]])
        #expect(change.endpointsAdded.isEmpty && change.endpointsRemoved.isEmpty && !change.frontendChanged)
    }

    @Test("an endpoint replaced and a service added")
    func replaced() throws {
        let old = try Self.table("{address: 10.1.0.5}")
        let new = try Self.table("{address: 10.1.0.6}", extra: "  - {name: shop/web, addresses: [10.96.0.11], ports: [{port: 80}]}")
        let diff = TableDiff(from: old, to: new)
        #expect(diff.added.map(\.name.description) == ["shop/web"])
        #expect(diff.removed.isEmpty)
        #expect(diff.changed.first?.endpointsAdded.map(\.address.description) == ["10.1.0.6"])
        #expect(diff.changed.first?.endpointsRemoved.map(\.address.description) == ["10.1.0.5"])
    }

    /// A change from one service's endpoints to others, and the log line it reads as.
    struct SummaryCase: Sendable, CustomTestStringConvertible {
        let old: String, new: String, expected: String
        var testDescription: String { "[\(old)] → [\(new)]" }
    }

    @Test("endpoints changed → one line naming each change", arguments: [
        SummaryCase(old: "{address: 10.1.0.5}", new: "{address: 10.1.0.5}, {address: 10.1.0.7}", expected: "shop/api: +10.1.0.7"),
        SummaryCase(old: "{address: 10.1.0.5}, {address: 10.1.0.6}", new: "{address: 10.1.0.6}", expected: "shop/api: -10.1.0.5"),
        SummaryCase(old: "{address: 10.1.0.6, weight: 9}", new: "{address: 10.1.0.6, weight: 1}", expected: "shop/api: 10.1.0.6 weight 9→1"),
        SummaryCase(old: "{address: 10.1.0.6, zone: a}", new: "{address: 10.1.0.6}", expected: "shop/api: 10.1.0.6 zone a→none"),
        SummaryCase(old: "{address: 10.1.0.6, port: 8080}", new: "{address: 10.1.0.6, port: 9090}",
                    expected: "shop/api: +10.1.0.6:9090, -10.1.0.6:8080"),
        SummaryCase(old: "{address: 10.1.0.5}", new: "{address: 10.1.0.6, weight: 2}, {address: 10.1.0.7}, {address: 10.1.0.8}, {address: 10.1.0.9}, {address: 10.1.0.10}",
                    expected: "shop/api: +10.1.0.6, +10.1.0.7, +10.1.0.8, +10.1.0.9, and 2 more"),
    ])
    func summary(_ example: SummaryCase) throws {
        let diff = TableDiff(from: try Self.table(example.old), to: try Self.table(example.new))
        #expect(diff.summary() == example.expected)
    }

    @Test("an IPv6 endpoint with a port of its own removed → its address in brackets")
    func summaryIPv6() throws {
        func table(_ endpoints: String) throws -> ServiceTable {
            try TableDecoder.decode("services: [{name: shop/api, addresses: ['fd00:96::10'], ports: [{port: 80}], endpoints: [\(endpoints)]}]",
                                    name: "t.yaml")
        }
        let diff = TableDiff(from: try table("{address: 'fd00::6', port: 8080}, {address: 'fd00::7'}"), to: try table("{address: 'fd00::7'}"))
        #expect(diff.summary() == "shop/api: -[fd00::6]:8080")
    }

    @Test("services added, removed and re-addressed → in name order, each with what happened to it")
    func summaryOfServices() throws {
        let old = try Self.table("{address: 10.1.0.5}", extra: "  - {name: shop/old, addresses: [10.96.0.12], ports: [{port: 80}]}")
        let new = try TableDecoder.decode("""
            services:
              - {name: shop/web, addresses: [10.96.0.11], ports: [{port: 80}], endpoints: [{address: 10.1.1.1}, {address: 10.1.1.2}]}
              - {name: shop/api, addresses: [10.96.0.20], ports: [{port: 80, targetPort: 8080}], endpoints: [{address: 10.1.0.5}, {address: 10.1.0.9}]}
            """, name: "t.yaml")
        #expect(TableDiff(from: old, to: new).summary() == "shop/api: addresses changed; +10.1.0.9; shop/old removed; shop/web added (2 endpoints)")
    }

    @Test("a diff over more services than it names → the rest counted; no diff → \"no change\"")
    func summaryBounds() throws {
        func services(_ count: Int) throws -> ServiceTable {
            let lines = (0..<count).map { "  - {name: shop/s\($0), addresses: [10.96.0.\($0 + 10)], ports: [{port: 80}]}" }
            return try TableDecoder.decode("services:\n" + lines.joined(separator: "\n"), name: "t.yaml")
        }
        let empty = try TableDecoder.decode("services: []", name: "t.yaml")
        #expect(TableDiff(from: empty, to: try services(3)).summary(services: 2)
                == "shop/s0 added (0 endpoints); shop/s1 added (0 endpoints); and 1 more service")
        #expect(TableDiff(from: empty, to: try services(4)).summary(services: 2).hasSuffix("; and 2 more services"))
        #expect(TableDiff(from: empty, to: empty).summary() == "no change")
    }
}
