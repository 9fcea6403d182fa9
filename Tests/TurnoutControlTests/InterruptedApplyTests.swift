import Foundation
import Testing
@testable import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// Another process commits to the ruleset between two of an apply's transactions (as kube-proxy
/// or firewalld may at any moment): the kernel refuses the next phase (its batch is bound to the
/// generation the phase before made), and the apply must still end with exactly the desired
/// table, no `turnout-bridge` copy left, and the other process's table untouched. A phase the
/// kernel refuses for its own reasons must not leave a daemon stuck either.
@Suite("apply interrupted between its phases by another commit, or refused",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct InterruptedApplyTests {
    /// rules/canary.yaml with other weights: 9:1 → 2:1 changes its pick chain and slots, a
    /// patch of three phases.
    static func canary(_ first: Int, _ second: Int) throws -> ServiceTable {
        let text = try String(contentsOfFile: Repository.path("rules/canary.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "weight: 90", with: "weight: \(first)")
            .replacingOccurrences(of: "weight: 10", with: "weight: \(second)")
        return try TableDecoder.decode(text, name: "canary-\(first)-\(second).yaml")
    }

    /// How the second apply is made: by the backend that wrote the first table (it patches), or
    /// by one without its record (it rebuilds, with the copy beside).
    enum Writer: String, CaseIterable, CustomTestStringConvertible {
        case patching, rebuilding
        var testDescription: String { rawValue }
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var writer: Writer
        /// The phase before which the other process commits.
        var interrupted: TableDelta.Phase
        /// Every phase sent, the refused one included, and how the apply reports its end.
        var phases: [TableDelta.Phase]
        var outcome: ApplyReport.Outcome
        var testDescription: String { "\(writer), another commit before \(interrupted)" }
    }

    /// A refused switchover or retire leaves the table between old and new and the record
    /// deleted, so the apply starts over with a rebuild. A rebuild's refused retire leaves the
    /// new table in place and its copy beside it: starting over finds the table right and
    /// deletes only the copy.
    static let cases = [
        Case(writer: .patching, interrupted: .switchover, phases: [.prepare, .switchover, .prepare, .switchover, .retire], outcome: .rebuilt),
        Case(writer: .patching, interrupted: .retire, phases: [.prepare, .switchover, .retire, .prepare, .switchover, .retire], outcome: .rebuilt),
        Case(writer: .rebuilding, interrupted: .switchover, phases: [.prepare, .switchover, .prepare, .switchover, .retire], outcome: .rebuilt),
        Case(writer: .rebuilding, interrupted: .retire, phases: [.prepare, .switchover, .retire], outcome: .incremental),
    ]

    @Test("another commit before a phase → that phase refused, the apply starts over and ends with exactly the desired table; no copy left; the other table untouched",
          arguments: cases)
    func anotherCommitBetweenPhases(_ test: Case) throws {
        try withNetworkNamespace(prefix: "tx-interrupt") { ns in
            let first = try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/first")
            _ = try first.apply(Self.canary(9, 1), options: ServiceCompilerOptions())
            let backend = test.writer == .patching
                ? first
                : try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory + "/second")

            var phasesSeen: [TableDelta.Phase] = []
            var foreignCommits: [String] = []
            backend.beforePhase = { phase in
                phasesSeen.append(phase)
                guard phase == test.interrupted, foreignCommits.isEmpty else { return }
                let result = try? ns.run("nft", ["add table inet other; add chain inet other c { type filter hook output priority 5; }"])
                foreignCommits.append(result.map { $0.status == 0 ? "committed" : "nft failed: \($0.standardError)" } ?? "nft did not run")
            }
            let desired = try Self.canary(2, 1)
            let report = try backend.apply(desired, options: ServiceCompilerOptions())

            #expect(foreignCommits == ["committed"])
            #expect(phasesSeen == test.phases)
            #expect(report.outcome == test.outcome, "\(report.changes) \(report.reason ?? "")")
            #expect(try backend.status(comparingWith: desired, options: ServiceCompilerOptions()).drift == [])
            #expect(try backend.readInstalled(TableDelta.bridgeName(of: NftablesServiceCompiler.tableName)) == nil,
                    "no copy left; report: \(report.changes)")
            let other = try ns.run("nft", ["list", "table", "inet", "other"]).standardOutput
            #expect(other.contains("type filter hook output priority filter + 5; policy accept;"), "\(other)")
        }
    }

    struct Refusal: Sendable, CustomTestStringConvertible {
        /// The daemon's path (the instance that wrote the first table) or the CLI's (a fresh
        /// instance that reads the kernel back and trusts the record).
        var daemon: Bool
        /// The phases the kernel refuses, by their position among those sent.
        var refused: Set<Int>
        var phases: [TableDelta.Phase]
        /// nil: the apply ends with the desired table, rebuilt; else the error it throws.
        var thrown: Int32?
        var testDescription: String {
            "\(daemon ? "daemon" : "fresh instance"), phases \(refused.sorted()) of [\(phases.map { "\($0)" }.joined(separator: ", "))] refused"
        }
    }

    @Test("a patch the kernel refuses (EINVAL, standing for any refusal but ERESTART) → sent again as a rebuild, once; the kernel exact, the reason names the refusal; refused again → the error",
          arguments: [
              Refusal(daemon: true, refused: [0], phases: [.prepare, .prepare, .switchover, .retire], thrown: nil),
              // The refused switchover's prepare is undone; the full path then rebuilds from the same table.
              Refusal(daemon: true, refused: [1], phases: [.prepare, .switchover, .prepare, .switchover, .retire], thrown: nil),
              Refusal(daemon: false, refused: [0], phases: [.prepare, .prepare, .switchover, .retire], thrown: nil),
              Refusal(daemon: false, refused: [0, 1], phases: [.prepare, .prepare], thrown: EINVAL),
          ])
    func refusedPatch(_ test: Refusal) throws {
        try withNetworkNamespace(prefix: "tx-refused") { ns in
            let first = try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory)
            let before = try Self.canary(9, 1)
            _ = try first.apply(before, options: ServiceCompilerOptions())
            let backend = test.daemon ? first : try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory)
            var phasesSeen: [TableDelta.Phase] = []
            backend.beforePhase = { phase throws(NetlinkError) in
                phasesSeen.append(phase)
                if test.refused.contains(phasesSeen.count - 1) {
                    throw NetlinkError(call: "the test refusing phase \(phasesSeen.count - 1) (\(phase))", errno: EINVAL)
                }
            }
            let desired = try Self.canary(2, 1)
            do throws(NetlinkError) {
                let report = try backend.apply(desired, options: ServiceCompilerOptions())
                #expect(test.thrown == nil, "applied: \(report.outcome)")
                #expect(report.outcome == .rebuilt, "\(report.outcome)")
                let first = test.refused.min()!
                #expect(report.reason == "the kernel refused the patch (the test refusing phase \(first) (\(phasesSeen[first])): Invalid argument (errno 22))",
                        "\(report.reason ?? "")")
            } catch {
                #expect(error.errno == test.thrown, "\(error)")
                #expect(error.call == "the test refusing phase 0 (prepare)", "the patch's error, not the rebuild's")
            }
            #expect(phasesSeen == test.phases)
            backend.beforePhase = nil
            let expected = test.thrown == nil ? desired : before
            #expect(try backend.status(comparingWith: expected, options: ServiceCompilerOptions()).drift == [])
            #expect(try backend.readInstalled(TableDelta.bridgeName(of: NftablesServiceCompiler.tableName)) == nil)
        }
    }
}
