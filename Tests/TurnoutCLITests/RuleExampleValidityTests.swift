import Foundation
import Testing
import TurnoutTestSupport

/// The texts in `rules/` are what `turnout plan` prints and what operators paste into `nft -f` or
/// `iptables-restore`: the kernel's own tools must accept every one of them. Each case runs in a
/// fresh network namespace, so the host's ruleset is never read or changed, and `--check` /
/// `--test` still reach the kernel (nft validates the whole batch there, then aborts it).
@Suite("rules/ examples are accepted by nft and iptables-restore",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct RuleExampleValidityTests {
    /// Examples that have an IPv6 iptables text (`X.ip6tables`): the dual-stack ones.
    static let ip6tablesExamples = Repository.exampleTables.filter {
        FileManager.default.fileExists(atPath: Repository.path("rules/\($0).ip6tables"))
    }

    @Test("rules/X.nft → nft --check -f exits 0", arguments: Repository.exampleTables)
    func nftTextPassesNftCheck(example: String) throws {
        let file = try exampleFile(example, "nft")
        let result = try withNetworkNamespace(prefix: "turnout-rules") { ns in
            try ns.run("nft", ["--check", "-f", file])
        }
        #expect(result.status == 0, "nft --check -f rules/\(example).nft failed:\n\(result.standardError)")
    }

    @Test("rules/X.iptables on stdin → iptables-restore --test exits 0", arguments: Repository.exampleTables)
    func iptablesTextPassesRestoreTest(example: String) throws {
        let text = try String(contentsOfFile: exampleFile(example, "iptables"), encoding: .utf8)
        let result = try withNetworkNamespace(prefix: "turnout-rules") { ns in
            try ns.run("iptables-restore", ["--test"], input: text)
        }
        #expect(result.status == 0, "iptables-restore --test < rules/\(example).iptables failed:\n\(result.standardError)")
    }

    @Test("rules/X.ip6tables on stdin → ip6tables-restore --test exits 0", arguments: ip6tablesExamples)
    func ip6tablesTextPassesRestoreTest(example: String) throws {
        let text = try String(contentsOfFile: exampleFile(example, "ip6tables"), encoding: .utf8)
        let result = try withNetworkNamespace(prefix: "turnout-rules") { ns in
            try ns.run("ip6tables-restore", ["--test"], input: text)
        }
        #expect(result.status == 0, "ip6tables-restore --test < rules/\(example).ip6tables failed:\n\(result.standardError)")
    }

    /// Proves the checks above are not vacuous: the same command on the same kind of text passes
    /// until one rule jumps to a chain that does not exist, which only the kernel notices.
    @Test("nft text with a goto to a missing chain → nft --check exits non-zero")
    func brokenNftTextFailsNftCheck() throws {
        let valid = """
            table inet turnout {
            \tchain services {
            \t}
            \tchain dispatch {
            \t\tgoto services
            \t}
            }

            """
        let broken = valid.replacingOccurrences(of: "goto services", with: "goto no-such-chain")
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("turnout-rules-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let validFile = directory.appendingPathComponent("valid.nft").path
        let brokenFile = directory.appendingPathComponent("broken.nft").path
        try valid.write(toFile: validFile, atomically: true, encoding: .utf8)
        try broken.write(toFile: brokenFile, atomically: true, encoding: .utf8)

        try withNetworkNamespace(prefix: "turnout-rules") { ns in
            let accepted = try ns.run("nft", ["--check", "-f", validFile])
            #expect(accepted.status == 0, "the control text should pass nft --check:\n\(accepted.standardError)")
            let rejected = try ns.run("nft", ["--check", "-f", brokenFile])
            #expect(rejected.status != 0, "nft --check accepted a goto to a missing chain")
            #expect(rejected.standardError.contains("no-such-chain"),
                    "nft's error should point at the bad goto:\n\(rejected.standardError)")
        }
    }

    /// `--check` validates; this installs. The examples start with `table …; delete table …;`,
    /// so loading one twice must replace the table, not fail or duplicate it.
    @Test("rules/X.nft → nft -f installs table inet turnout, and loading it again replaces it",
          arguments: Repository.exampleTables)
    func nftTextLoadsIntoKernel(example: String) throws {
        let file = try exampleFile(example, "nft")
        try withNetworkNamespace(prefix: "turnout-rules") { ns in
            let loaded = try ns.run("nft", ["-f", file])
            try #require(loaded.status == 0, "nft -f rules/\(example).nft failed:\n\(loaded.standardError)")
            let listed = try ns.run("nft", ["list", "table", "inet", "turnout"])
            try #require(listed.status == 0, "nft list table inet turnout failed after loading:\n\(listed.standardError)")
            #expect(listed.standardOutput.contains("table inet turnout {"))

            let reloaded = try ns.run("nft", ["-f", file])
            try #require(reloaded.status == 0, "loading rules/\(example).nft a second time failed:\n\(reloaded.standardError)")
            let relisted = try ns.run("nft", ["list", "table", "inet", "turnout"])
            #expect(relisted.status == 0)
            #expect(relisted.standardOutput == listed.standardOutput, "a reload changed the installed table")
        }
    }

    /// The path of `rules/<example>.<ext>`; a missing companion file is a failure, not a pass.
    private func exampleFile(_ example: String, _ ext: String) throws -> String {
        let path = Repository.path("rules/\(example).\(ext)")
        try #require(FileManager.default.fileExists(atPath: path), "rules/\(example).yaml has no rules/\(example).\(ext)")
        return path
    }
}
