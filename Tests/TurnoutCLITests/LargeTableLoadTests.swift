import Foundation
import Testing
import TurnoutTestSupport

/// `plan` output of a large table must load with the real nft, not only the small examples:
/// nft 1.0.6 fails on one element statement of about 2,000 range elements, which the renderer
/// avoids by chunking. 2,000 dual-stack 997:3 splits (too fine for one element per drawn value,
/// so held as ranges in `endpoint-ranges4-mod1000` and `endpoint-ranges6-mod1000`) = 4,000 range elements per family.
@Suite("Large tables load with the real nft")
struct LargeTableLoadTests {
    static let services = 2_000

    static func canaries() -> String {
        var yaml = "services:\n"
        for index in 0..<services {
            let (high, low) = (index / 250, index % 250 + 1)
            yaml += """
              - name: load/svc-\(index)
                addresses: [10.96.\(high).\(low), "fd00:96::\(high):\(low)"]
                ports: [{port: 80, targetPort: 8080}]
                endpoints:
                  - {address: 10.1.\(high).\(low), weight: 997}
                  - {address: 10.2.\(high).\(low), weight: 3}
                  - {address: "fd00:1::\(high):\(low)", weight: 997}
                  - {address: "fd00:2::\(high):\(low)", weight: 3}

            """
        }
        return yaml
    }

    @Test("2,000 dual-stack 997:3 splits → nft -f loads every range element", .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
    func loads() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-large-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let table = directory.appendingPathComponent("large.yaml").path
        try Self.canaries().write(toFile: table, atomically: true, encoding: .utf8)
        let plan = try turnout("plan", "-f", table)
        #expect(plan.status == 0, "\(plan.standardError)")
        #expect(plan.standardOutput.contains("add element inet turnout endpoint-ranges4-mod1000 {"))
        let rules = directory.appendingPathComponent("large.nft").path
        try plan.standardOutput.write(toFile: rules, atomically: true, encoding: .utf8)

        try withNetworkNamespace(prefix: "turnout-large") { namespace in
            let load = try namespace.run("nft", ["-f", rules])
            #expect(load.status == 0, "\(load.standardError)")
            for family in ["4", "6"] {
                let listing = try namespace.run("nft", ["list", "map", "inet", "turnout", "endpoint-ranges\(family)-mod1000"])
                #expect(listing.status == 0, "\(listing.standardError)")
                let elements = listing.standardOutput.components(separatedBy: " . tcp . 80 . ").count - 1
                #expect(elements == 2 * Self.services, "endpoint-ranges\(family)-mod1000 holds \(elements) elements")
            }
        }
    }
}
