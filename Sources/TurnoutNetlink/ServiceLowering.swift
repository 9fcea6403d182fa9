import TurnoutModel
import TurnoutRules

/// The chains and sets one service owns (client-IP affinity), as wire values. Its elements are
/// lowered on their own (`ServiceLowering.lower(_:)` of set members), only when they are sent.
public struct WireServiceObjects: Hashable, Sendable {
    public var chains: [WireChain]
    public var sets: [WireSet]
}

/// One element of a named set or map, as the kernel holds it.
public struct WireSetMember: Hashable, Sendable {
    public var set: String
    public var element: WireElement

    public init(set: String, element: WireElement) {
        self.set = set
        self.element = element
    }
}

/// Lowers single services' contributions against the table's skeleton, for patches that touch
/// only the services that changed.
///
/// Produces exactly the objects `NftablesLowering.lower` produces for the same service inside
/// the whole table (tested), because both go through the same key layouts and rule lowering.
/// Immutable; any thread.
public struct ServiceLowering: Sendable {
    /// The skeleton as wire values: every declared set (no elements) and the fixed chains.
    public let skeleton: WireTable
    private let skeletonRules: RuleTable
    private let options: ServiceCompilerOptions
    private let declarations: [String: NamedSet]

    public init(options: ServiceCompilerOptions) {
        self.options = options
        skeletonRules = NftablesServiceCompiler.skeleton()
        skeleton = NftablesLowering.lower(skeletonRules)
        declarations = Dictionary(uniqueKeysWithValues: skeletonRules.sets.map { ($0.name, $0) })
    }

    /// The service's own chains and sets.
    public func objects(of rules: ServiceRules) -> WireServiceObjects {
        WireServiceObjects(chains: lower(rules.chains, ownSets: rules.sets), sets: rules.sets.map(NftablesLowering.lowerSet))
    }

    /// A shared chain, as the whole-table lowering produces it.
    public func lower(_ shared: SharedChain) -> WireChain {
        lower([NftablesServiceCompiler.chain(for: shared, options: options)], ownSets: [])[0]
    }

    /// Elements of the skeleton's sets, each lowered on its own. The skeleton holds no
    /// single-field interval set, whose elements (rbtree range ends) depend on their neighbours.
    public func lower(_ members: [SetMember]) -> [WireSetMember] {
        members.map { member in
            guard let set = declarations[member.set] else { preconditionFailure("\(member.set) is not a set of the skeleton") }
            precondition(!set.isInterval || set.key.count > 1, "\(set.name): rbtree elements cannot be lowered one by one")
            let layout = NftablesLowering.KeyLayout(set.key, interval: set.isInterval)
            let lowered = NftablesLowering.elements([member.element], layout: layout, interval: set.isInterval)
            return WireSetMember(set: member.set, element: lowered[0])
        }
    }

    private func lower(_ chains: [Chain], ownSets: [NamedSet]) -> [WireChain] {
        guard !chains.isEmpty else { return [] }
        var context = skeletonRules
        context.sets += ownSets
        return NftablesLowering.lowerChains(chains, in: context)
    }
}
