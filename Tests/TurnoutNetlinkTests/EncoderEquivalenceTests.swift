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
        try NftEquivalence.check(ruleTable, namespacePrefix: "equiv")
    }
}
