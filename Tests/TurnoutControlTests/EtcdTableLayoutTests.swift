import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutTestSupport

/// The etcd key layout and the publish plan: pure, no etcd.
@Suite("etcd layout: a table as keys and back, errors naming the key")
struct EtcdTableLayoutTests {
    static let layout = EtcdTableLayout.standard

    static func example(_ name: String) throws -> ServiceTable {
        try TableFile.load(Repository.path("rules/\(name).yaml"))
    }

    /// The canary example's keys as bytes, as etcd would hold them.
    static func canaryEntries() throws -> [String: [UInt8]] {
        try layout.entries(for: example("canary")).mapValues { Array($0.utf8) }
    }

    static func issues(_ entries: [String: [UInt8]]) -> [String] {
        do {
            _ = try layout.table(from: entries)
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test("every example table → keys → table: the same table (endpoints in read-back order)", arguments: Repository.exampleTables)
    func roundTrip(_ name: String) throws {
        let table = try Self.example(name)
        let entries = try Self.layout.entries(for: table).mapValues { Array($0.utf8) }
        let endpointCount = table.services.map(\.endpoints.count).reduce(0, +)
        #expect(entries.count == table.services.count + endpointCount, "one key per service and per endpoint")
        #expect(try Self.layout.table(from: entries) == EtcdTableLayout.readBackOrder(table))
    }

    @Test("the canary's keys: the service without endpoints, one key per endpoint, the port override in the id")
    func canaryKeys() throws {
        let entries = try Self.layout.entries(for: Self.example("canary"))
        #expect(entries == [
            "/turnout/v1/services/shop/checkout":
                #"{"name":"shop/checkout","addresses":["10.96.0.20"],"ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"tcp"}]}"#,
            "/turnout/v1/endpoints/shop/checkout/10.1.0.5": #"{"address":"10.1.0.5","weight":90,"zone":"a"}"#,
            "/turnout/v1/endpoints/shop/checkout/10.1.0.6-8081": #"{"address":"10.1.0.6","weight":10,"port":8081,"zone":"b"}"#,
        ])
    }

    @Test("endpoint ids: the address (IPv6 keeps its colons), -port for an override, -name=port per named port", arguments: [
        (Endpoint(address: IPAddress("10.1.0.5")!), "10.1.0.5"),
        (Endpoint(address: IPAddress("fd00::5")!), "fd00::5"),
        (Endpoint(address: IPAddress("10.1.0.6")!, port: 8081), "10.1.0.6-8081"),
        (Endpoint(address: IPAddress("10.1.0.7")!, namedPorts: ["http": 8080, "dns": 5353]), "10.1.0.7-dns=5353-http=8080"),
    ])
    func endpointIDs(_ endpoint: Endpoint, _ id: String) {
        #expect(EtcdTableLayout.endpointID(endpoint) == id)
    }

    @Test("a bad value → an issue naming the etcd key and the field", arguments: [
        ("/turnout/v1/endpoints/shop/checkout/10.1.0.5", #"{"address":"10.1.0.5","weight":-1}"#,
         "etcd key /turnout/v1/endpoints/shop/checkout/10.1.0.5:1:32: weight: weight must be between 0 and 1000000, got -1"),
        ("/turnout/v1/endpoints/shop/checkout/10.1.0.5", #"{"address":"10.1.0.5","wieght":1}"#,
         "etcd key /turnout/v1/endpoints/shop/checkout/10.1.0.5:1:23: wieght: unknown key 'wieght' (known: address, port, ports, weight, zone)"),
        ("/turnout/v1/endpoints/shop/checkout/10.1.0.5", #"{"address":"fd00::5"}"#,
         "etcd key /turnout/v1/endpoints/shop/checkout/10.1.0.5:1:1: address: endpoint fd00::5 is ipv6 but the service's addresses are ipv4"),
        ("/turnout/v1/endpoints/shop/checkout/10.1.0.5", #"{"address":"10.1.0.5""#,
         "etcd key /turnout/v1/endpoints/shop/checkout/10.1.0.5:2:1: (value): not valid YAML or JSON: while parsing a flow mapping"),
        ("/turnout/v1/endpoints/shop/checkout/10.1.0.5", "",
         "etcd key /turnout/v1/endpoints/shop/checkout/10.1.0.5:1:1: (value): empty; expected a mapping"),
        ("/turnout/v1/services/shop/checkout", #"{"name":"shop/other","addresses":["10.96.0.20"],"ports":[{"port":80}]}"#,
         "etcd key /turnout/v1/services/shop/checkout:1:9: name: the key names service 'shop/checkout' but the value names 'shop/other'"),
        ("/turnout/v1/services/shop/checkout", #"{"name":"shop/checkout","addresses":["10.96.0.20"],"ports":[{"port":80}],"endpoints":[]}"#,
         "etcd key /turnout/v1/services/shop/checkout:1:74: endpoints: a service's value holds no endpoints: each endpoint is a key of its own"),
        ("/turnout/v1/services/shop/checkout", #"{"name":"shop/checkout","addresses":["10.96.0.20"],"ports":[{"port":0}]}"#,
         "etcd key /turnout/v1/services/shop/checkout:1:69: ports[0].port: port must be between 1 and 65535, got 0"),
    ])
    func badValue(_ key: String, _ value: String, _ expected: String) throws {
        var entries = try Self.canaryEntries()
        entries[key] = Array(value.utf8)
        let issues = Self.issues(entries)
        #expect(issues.count == 1 && issues[0].hasPrefix(expected), "\(issues)")
    }

    @Test("keys outside the layout, an endpoint without its service, a value not UTF-8 → each named", arguments: [
        ("/turnout/v1/README", [UInt8]("hello".utf8), "etcd key /turnout/v1/README:1:1: (key): not a Turnout key"),
        ("/turnout/v1/services/shop/checkout/extra", [UInt8]("{}".utf8), "etcd key /turnout/v1/services/shop/checkout/extra:1:1: (key): not a Turnout key"),
        ("/turnout/v1/services/shop/bad name", [UInt8]("{}".utf8), "etcd key /turnout/v1/services/shop/bad name:1:1: (key): not a Turnout key"),
        ("/turnout/v1/endpoints/shop/checkout/", [UInt8]("{}".utf8), "etcd key /turnout/v1/endpoints/shop/checkout/:1:1: (key): not a Turnout key"),
        ("/turnout/v1/endpoints/shop/gone/10.1.0.9", [UInt8](#"{"address":"10.1.0.9"}"#.utf8),
         "etcd key /turnout/v1/endpoints/shop/gone/10.1.0.9:1:1: (key): no service key /turnout/v1/services/shop/gone for this endpoint"),
        ("/turnout/v1/endpoints/shop/checkout/10.1.0.9", [0x7B, 0xFF, 0x7D], "etcd key /turnout/v1/endpoints/shop/checkout/10.1.0.9:1:1: (value): not UTF-8 text"),
    ])
    func badKey(_ key: String, _ value: [UInt8], _ expected: String) throws {
        var entries = try Self.canaryEntries()
        entries[key] = value
        let issues = Self.issues(entries)
        #expect(issues.count == 1 && issues[0].hasPrefix(expected), "\(issues)")
    }

    @Test("two services on the same VIP:port → the validator's issue names the second service's key")
    func wholeTableValidation() throws {
        var entries = try Self.canaryEntries()
        entries["/turnout/v1/services/shop/copy"] = Array(#"{"name":"shop/copy","addresses":["10.96.0.20"],"ports":[{"port":80}]}"#.utf8)
        let issues = Self.issues(entries)
        #expect(issues.count == 1 && issues[0].hasPrefix("etcd key /turnout/v1/services/shop/copy:1:")
                && issues[0].contains("10.96.0.20:80/tcp is already used by service 'shop/checkout'"), "\(issues)")
    }

    @Test("no keys at all → the empty table")
    func empty() throws {
        #expect(try Self.layout.table(from: [:]) == ServiceTable(services: []))
    }

    @Test("publish plan: the same table → nothing; one weight changed → one put; an endpoint removed → one delete; a stray key → deleted")
    func plan() throws {
        let table = try Self.example("canary")
        let current = try Self.canaryEntries()
        let same = try EtcdPublisher.plan(table, current: current)
        #expect(same.operationCount == 0 && same.unchanged == 3)

        var service = table.services[0]
        service.endpoints[0].weight = 50
        let reweighted = try EtcdPublisher.plan(ServiceTable(services: [service]), current: current)
        #expect(reweighted.puts == ["/turnout/v1/endpoints/shop/checkout/10.1.0.5"] && reweighted.deletes.isEmpty)
        #expect(reweighted.values["/turnout/v1/endpoints/shop/checkout/10.1.0.5"] == #"{"address":"10.1.0.5","weight":50,"zone":"a"}"#)

        service.endpoints.removeLast()
        var withStray = current
        withStray["/turnout/v1/README"] = Array("x".utf8)
        let shrunk = try EtcdPublisher.plan(ServiceTable(services: [service]), current: withStray)
        #expect(shrunk.deletes == ["/turnout/v1/README", "/turnout/v1/endpoints/shop/checkout/10.1.0.6-8081"])
        #expect(shrunk.unchanged == 1 && shrunk.puts.count == 1)
    }

    @Test("etcd URLs: IPv4, [IPv6], localhost, host names, the default port, several members by commas, https; a path, a bad name or port, an empty member, one listed twice or http mixed with https → refused", arguments: [
        ("http://127.0.0.1:2379", ["127.0.0.1:2379"]), ("http://10.0.0.5", ["10.0.0.5:2379"]), ("http://[::1]:2380/", ["[::1]:2380"]),
        ("http://localhost:2381", ["127.0.0.1:2381"]), ("http://localhost", ["127.0.0.1:2379"]),
        ("http://10.0.0.5,http://10.0.0.6:2380,http://[fd00::7]", ["10.0.0.5:2379", "10.0.0.6:2380", "[fd00::7]:2379"]),
        ("https://127.0.0.1:2379", ["127.0.0.1:2379"]), ("https://localhost,https://10.0.0.6", ["127.0.0.1:2379", "10.0.0.6:2379"]),
        ("http://etcd.local:2379", ["etcd.local:2379"]), ("https://ETCD-0.Example,https://etcd-1.example:2380", ["etcd-0.example:2379", "etcd-1.example:2380"]),
        ("http://etcd_0:2379", nil), ("http://-etcd:2379", nil), ("http://10.0.0:2379", nil), ("http://[10.0.0.1]:2379", nil),
        ("http://127.0.0.1:0", nil), ("http://127.0.0.1:65536", nil), ("http://[::1]x", nil), ("http://etcd.local,http://ETCD.local:2379", nil),
        ("http://LOCALHOST:2380", ["127.0.0.1:2380"]), ("https://etcd.example.:2379", ["etcd.example:2379"]),
        ("http://[etcd-0]:2379", nil), ("http://[localhost]", nil), ("http://127.0.0.1:+2379", nil), ("http://127.0.0.1:", nil),
        ("http://localhost,http://LOCALHOST", nil),
        ("ftp://127.0.0.1:2379", nil), ("http://127.0.0.1:2379/v3", nil), ("http://::1", nil), ("127.0.0.1:2379", nil),
        ("http://10.0.0.5,", nil), ("http://10.0.0.5,https://10.0.0.6", nil), ("http://10.0.0.5,http://10.0.0.5:2379", nil),
    ] as [(String, [String]?)])
    func urls(_ url: String, _ servers: [String]?) {
        #expect((try? EtcdClient(url: url))?.members.map(\.description) == servers)
    }

    @Test("--source etcd:URL → an etcd source named so; a bad etcd URL → refused before anything starts")
    func sourceURL() throws {
        #expect(try TableSourceURL.open("etcd:http://127.0.0.1:2379").location == "etcd:http://127.0.0.1:2379")
        #expect(try TableSourceURL.open("etcd:https://127.0.0.1:2379").location == "etcd:https://127.0.0.1:2379")
        #expect(throws: ValueError.self) { try TableSourceURL.open("etcd:https://127.0.0.1:2379/v3") }
    }

    @Test("prefix range end: the last byte plus one")
    func prefixEnd() {
        #expect(EtcdClient.prefixEnd("/turnout/v1/") == Array("/turnout/v10".utf8))
        #expect(EtcdClient.prefixEnd("a\u{7F}") == [0x61, 0x80])
    }
}
