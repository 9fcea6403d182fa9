import Foundation
import Testing
import TurnoutModel
import TurnoutTestSupport

@Suite("table encoder: JSON that decodes back to the same table")
struct TableEncoderTests {
    static func example(_ name: String) throws -> ServiceTable {
        let path = Repository.path("rules/\(name).yaml")
        return try TableDecoder.decode(String(contentsOfFile: path, encoding: .utf8), name: path)
    }

    @Test("every example table → JSON → decoded again: the same table", arguments: Repository.exampleTables)
    func roundTrip(_ name: String) throws {
        let table = try Self.example(name)
        let json = TableEncoder.json(table)
        #expect(try TableDecoder.decode(json, name: "\(name).json") == table, "\(json)")
    }

    @Test("the same table → the same bytes; a service without endpoints for etcd leaves them out")
    func deterministic() throws {
        let table = try Self.example("canary")
        #expect(TableEncoder.json(table) == TableEncoder.json(table))
        let service = try #require(table.services.first)
        #expect(TableEncoder.json(service, endpoints: false)
                == #"{"name":"shop/checkout","addresses":["10.96.0.20"],"ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"tcp"}]}"#)
        #expect(TableEncoder.json(service.endpoints[1]) == #"{"address":"10.1.0.6","weight":10,"port":8081,"zone":"b"}"#)
    }

    @Test("names with quotes, backslashes and control characters are escaped", arguments: [
        ("a\"b", #""a\"b""#), ("a\\b", #""a\\b""#), ("a\nb", #""a\nb""#), ("a\u{1}b", #""a\u0001b""#),
    ])
    func escaping(_ text: String, _ literal: String) {
        #expect(JSONValue.quoted(text) == literal)
    }
}
