import TurnoutModel
import TurnoutRules

/// The chains and sets one service owns (client-IP affinity), as wire values. Its elements are
/// lowered on their own (`ServiceLowering.lower(_:sharedChains:)` of set members), only when they are sent.
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
    /// The skeleton as wire values: the fixed sets (no elements) and the fixed chains. The maps of
    /// shared chains are not in it (``skeleton(with:)``).
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
        WireServiceObjects(chains: lower(rules.chains, declaring: rules.sets), sets: rules.sets.map(NftablesLowering.lowerSet))
    }

    /// A shared chain, as the whole-table lowering produces it. Its rules are lowered beside its
    /// maps' declarations: a key drawn from an interval map is converted to network byte order.
    public func lower(_ shared: SharedChain) -> WireChain {
        lower([NftablesServiceCompiler.chain(for: shared, options: options)], declaring: NftablesServiceCompiler.sets(for: shared))[0]
    }

    /// A shared chain's maps, empty: as the whole-table lowering declares them while they hold
    /// no more elements than the smallest capacity (``NamedSet/minimumCapacity``).
    public func sets(of shared: SharedChain) -> [WireSet] {
        NftablesServiceCompiler.sets(for: shared).map(NftablesLowering.lowerSet)
    }

    /// The skeleton with the maps of `shared` declared too: what a patch that touches those
    /// chains' elements reads set kinds from (``TableDelta/init(patching:addedChains:changedChains:removedChains:addedSets:removedSets:elementChanges:)``).
    public func skeleton(with shared: some Sequence<SharedChain>) -> WireTable {
        var table = skeleton
        table.sets += shared.flatMap(sets(of:))
        return table
    }

    /// Elements of the skeleton's sets and of the maps of `shared`, each lowered on its own.
    /// Neither holds a single-field interval set, whose elements (rbtree range ends) depend on
    /// their neighbours.
    public func lower(_ members: [SetMember], sharedChains shared: some Sequence<SharedChain>) -> [WireSetMember] {
        var declarations = declarations
        for set in shared.flatMap(NftablesServiceCompiler.sets(for:)) { declarations[set.name] = set }
        return members.map { member in
            guard let set = declarations[member.set] else { preconditionFailure("\(member.set) is not a set of the skeleton or of its shared chains") }
            precondition(!set.isInterval || set.key.count > 1, "\(set.name): rbtree elements cannot be lowered one by one")
            let layout = NftablesLowering.KeyLayout(set.key, interval: set.isInterval)
            let lowered = NftablesLowering.elements([member.element], layout: layout, interval: set.isInterval)
            return WireSetMember(set: member.set, element: lowered[0])
        }
    }

    private func lower(_ chains: [Chain], declaring sets: [NamedSet]) -> [WireChain] {
        guard !chains.isEmpty else { return [] }
        var context = skeletonRules
        context.sets += sets
        return NftablesLowering.lowerChains(chains, in: context)
    }
}
