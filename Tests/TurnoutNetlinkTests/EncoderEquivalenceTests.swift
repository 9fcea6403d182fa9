import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// `turnout plan` prints what `turnout apply` installs: for every example table and mode, the
/// objects nft creates from plan's text and the objects Turnout's own netlink batch creates are
/// read back from the kernel and compared, expression for expression, element for element.
@Suite("Netlink encoder installs exactly what plan's nft text installs",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct EncoderEquivalenceTests {
    static let cases: [(String, DispatchMode)] = Repository.exampleTables.flatMap { example in
        DispatchMode.allCases.map { (example, $0) }
    }

    @Test("rules/X.yaml, mode M: nft -f (plan text) and Turnout's batch read back identical", arguments: cases)
    func batchMatchesNftText(example: String, mode: DispatchMode) throws {
        let table = try TableFile.load(Repository.path("rules/\(example).yaml"))
        let ruleTable = NftablesServiceCompiler.compile(table, options: ServiceCompilerOptions(mode: mode))
        let desired = NftablesLowering.lower(ruleTable)

        let fromNft = try withNetworkNamespace(prefix: "equiv-nft") { ns in
            let load = try ns.run("nft", ["-f", "-"], input: NftablesRenderer.render([ruleTable]))
            try #require(load.status == 0, "nft -f failed: \(load.standardError)")
            return try TableReader.read(family: desired.family, name: desired.name, from: NetfilterSocket(namespacePath: ns.path))
        }
        let fromTurnout = try withNetworkNamespace(prefix: "equiv-turnout") { ns in
            let socket = try NetfilterSocket(namespacePath: ns.path)
            let batch = NetlinkBatch()
            TableDelta(installed: nil, desired: desired).append(to: batch)
            try socket.commit(batch)
            return try TableReader.read(family: desired.family, name: desired.name, from: socket)
        }
        let nft = try #require(fromNft)
        let turnout = try #require(fromTurnout)
        #expect(turnout.chains.count == ruleTable.chains.count && turnout.sets.count == ruleTable.sets.count)
        #expect(turnout.ruleCount == ruleTable.chains.reduce(0) { $0 + $1.rules.count })
        #expect(turnout == desired, "read back differs from what was written")
        #expect(nft.chains == turnout.chains)
        for (left, right) in zip(nft.sets, turnout.sets) where left != right {
            Issue.record("set \(left.name) differs:\n nft:     \(left)\n turnout: \(right)")
        }
        #expect(nft.sets.map(\.name) == turnout.sets.map(\.name))
        for (left, right) in zip(nft.chains, turnout.chains) where left != right {
            Issue.record("chain \(left.name) differs:\n nft:     \(left.rules)\n turnout: \(right.rules)")
        }
    }
}
