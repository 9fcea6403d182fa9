import TurnoutModel

/// What one service contributes to Turnout's nftables table (`inet turnout`).
///
/// `NftablesServiceCompiler.compile` is the union of every service's contribution over the
/// table's skeleton (base chains, fixed chains, set declarations), so a long-lived backend can
/// recompile one changed service and send only the difference of its contribution. Elements and
/// objects are split by ownership: what belongs to this service alone can be deleted with it,
/// what other services may also need (a hairpin pair, a `weighted-pick-N` chain) must be
/// reference-counted by whoever patches the table.
public struct ServiceRules: Hashable, Sendable {
    /// Elements no other service adds: its frontends' dispatch, picks and refusal entries
    /// (frontends are unique across a valid table).
    public var elements: [SetMember]
    /// Elements other services may add too: hairpin pairs of shared endpoints.
    public var sharedElements: [SetMember]
    /// Chains only this service jumps to (client-IP affinity), and the sets they use.
    public var chains: [Chain]
    public var sets: [NamedSet]
    /// Chains other services may jump to as well, each with the maps it looks up
    /// (`NftablesServiceCompiler.sets(for:)`), which hold some of `elements`.
    public var sharedChains: Set<SharedChain>

    public init(elements: [SetMember] = [], sharedElements: [SetMember] = [], chains: [Chain] = [],
                sets: [NamedSet] = [], sharedChains: Set<SharedChain> = []) {
        self.elements = elements
        self.sharedElements = sharedElements
        self.chains = chains
        self.sets = sets
        self.sharedChains = sharedChains
    }
}

/// One element of a named set or map of the table.
public struct SetMember: Hashable, Sendable {
    public var set: String
    public var element: SetElement

    public init(set: String, element: SetElement) {
        self.set = set
        self.element = element
    }
}

/// A chain that services share; `NftablesServiceCompiler.chain(for:options:)` builds it.
///
/// Ordered as the compiler lays them out: the proxy redirect, then pick chains by modulus, then
/// range chains by modulus.
public enum SharedChain: Hashable, Sendable, Comparable {
    /// `redirect-to-proxy` (proxy mode).
    case proxyRedirect
    /// `weighted-pick-N`: one element per drawn value in its maps `endpoint-picks4-modN` and
    /// `endpoint-picks6-modN`.
    case pick(modulus: UInt32)
    /// `weighted-range-N`: the draw's values held as ranges, in `endpoint-ranges4-modN` and
    /// `endpoint-ranges6-modN`.
    case range(modulus: UInt32)

    public var name: String {
        switch self {
        case .proxyRedirect: NftablesServiceCompiler.proxyRedirectChain
        case .pick(let modulus): "\(NftablesServiceCompiler.weightedPickPrefix)\(modulus)"
        case .range(let modulus): "\(NftablesServiceCompiler.weightedRangePrefix)\(modulus)"
        }
    }

    public static func < (lhs: SharedChain, rhs: SharedChain) -> Bool {
        lhs.order < rhs.order
    }

    private var order: (Int, UInt32) {
        switch self {
        case .proxyRedirect: (0, 0)
        case .pick(let modulus): (1, modulus)
        case .range(let modulus): (2, modulus)
        }
    }
}
