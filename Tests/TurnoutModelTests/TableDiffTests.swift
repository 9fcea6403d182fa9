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
}
