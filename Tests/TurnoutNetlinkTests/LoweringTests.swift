import Testing
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// The apply path skips the IR's element sort (`assemble(elementOrder: .unsorted)`) because
/// lowering sorts and deduplicates by wire bytes; what it sends must not depend on that. A
/// long-lived backend lowers one service's contribution at a time (`ServiceLowering`); what it
/// sends must be what the whole table's lowering holds.
@Suite("Lowering: element order, repeats and one service at a time do not change the wire")
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

    @Test("rules/X.yaml, lowered one service at a time → the same chains, map declarations and elements as the whole table",
          arguments: Repository.exampleTables)
    func serviceLoweringMatchesWholeTable(example: String) throws {
        let table = try TableFile.load(Repository.path("rules/\(example).yaml"))
        let whole = NftablesLowering.lower(NftablesServiceCompiler.compile(table))
        let lowering = ServiceLowering(options: ServiceCompilerOptions())
        for service in table.services {
            let rules = NftablesServiceCompiler.rules(for: service)
            for shared in rules.sharedChains {
                let chain = lowering.lower(shared)
                #expect(whole.chains.first { $0.name == chain.name } == chain, "\(service.name): \(chain.name)")
                for declared in lowering.sets(of: shared) {
                    var installed = try #require(whole.set(named: declared.name), "\(declared.name)")
                    installed.elements = []
                    #expect(installed == declared, "\(service.name): \(declared.name)")
                }
            }
            let objects = lowering.objects(of: rules)
            for chain in objects.chains { #expect(whole.chains.first { $0.name == chain.name } == chain, "\(service.name): \(chain.name)") }
            for set in objects.sets { #expect(whole.set(named: set.name) == set, "\(service.name): \(set.name)") }
            for member in lowering.lower(rules.elements + rules.sharedElements, sharedChains: rules.sharedChains) {
                #expect(whole.set(named: member.set)?.elements.contains(member.element) == true, "\(service.name): \(member.set)")
            }
        }
    }
}
