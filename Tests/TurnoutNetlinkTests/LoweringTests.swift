import Testing
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// The apply path skips the IR's element sort (`assemble(elementOrder: .unsorted)`) because
/// lowering sorts and deduplicates by wire bytes; what it sends must not depend on that.
@Suite("Lowering: element order and repeats in the IR do not reach the wire")
struct LoweringTests {
    @Test("rules/X.yaml, unsorted IR (shared elements repeated) → the same wire table as the canonical compile",
          arguments: Repository.exampleTables)
    func unsortedEqualsCanonical(example: String) throws {
        let table = try TableFile.load(Repository.path("rules/\(example).yaml"))
        let rules = table.services.map { NftablesServiceCompiler.rules(for: $0) }
        let unsorted = NftablesServiceCompiler.assemble(rules, elementOrder: .unsorted)
        let canonical = NftablesServiceCompiler.compile(table)
        #expect(NftablesLowering.lower(unsorted) == NftablesLowering.lower(canonical))
    }

    @Test("a shared hairpin added by two services → once in the IR's canonical form, twice unsorted, once on the wire")
    func sharedElementRepeats() throws {
        let endpoint = Endpoint(address: IPAddress("10.1.0.7")!)
        let services = ["a", "b"].enumerated().map { index, name in
            Service(name: ServiceName("shop/\(name)")!, addresses: [IPAddress("10.96.0.\(index + 1)")!],
                    ports: [ServicePort(name: "http", port: 80, targetPort: 8080)], endpoints: [endpoint])
        }
        let rules = services.map { NftablesServiceCompiler.rules(for: $0) }
        let hairpins = NftablesServiceCompiler.hairpinSet + "4"
        #expect(NftablesServiceCompiler.assemble(rules, elementOrder: .unsorted).sets.first { $0.name == hairpins }?.elements.count == 2)
        #expect(NftablesServiceCompiler.assemble(rules).sets.first { $0.name == hairpins }?.elements.count == 1)
        let wire = NftablesLowering.lower(NftablesServiceCompiler.assemble(rules, elementOrder: .unsorted))
        #expect(wire.set(named: hairpins)?.elements.count == 1)
        #expect(wire.set(named: hairpins)?.capacity == 1024)
    }
}
