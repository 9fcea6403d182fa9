import Foundation
import Testing
import TurnoutTestSupport

/// `turnout plan` on each example must print exactly the file beside it in rules/.
/// After an intended change, regenerate them with scripts/update-examples and review the diff.
@Suite("turnout plan output matches rules/ examples")
struct PlanGoldenTests {
    static let formats: [(format: String, suffix: String)] = [("nft", "nft"), ("iptables", "iptables"), ("ip6tables", "ip6tables")]

    @Test("rules/X.yaml → rules/X.nft, rules/X.iptables (and X.ip6tables for IPv6 tables)", arguments: Repository.exampleTables)
    func golden(_ name: String) throws {
        var compared = 0
        for (format, suffix) in Self.formats {
            let goldenPath = Repository.path("rules/\(name).\(suffix)")
            guard FileManager.default.fileExists(atPath: goldenPath) else {
                #expect(suffix == "ip6tables", "rules/\(name).\(suffix) is missing")
                continue
            }
            let result = try turnout("plan", "-f", "rules/\(name).yaml", "--format", format)
            #expect(result.status == 0, "\(result.standardError)")
            let golden = try String(contentsOfFile: goldenPath, encoding: .utf8)
            #expect(result.standardOutput == golden, "rules/\(name).\(suffix) drifted: run scripts/update-examples and review the diff")
            compared += 1
        }
        #expect(compared >= 2)
    }

    @Test("an example with IPv6 addresses has its ip6tables file")
    func ipv6ExamplesHaveIp6tables() throws {
        for name in Repository.exampleTables {
            let yaml = try String(contentsOfFile: Repository.path("rules/\(name).yaml"), encoding: .utf8)
            if yaml.contains("fd00:96::") {
                #expect(FileManager.default.fileExists(atPath: Repository.path("rules/\(name).ip6tables")), "\(name)")
            }
        }
    }
}
