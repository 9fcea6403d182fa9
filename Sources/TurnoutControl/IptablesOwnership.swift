import TurnoutRules

/// Which `TURNOUT-` chains one job of Turnout owns in iptables, and where its jumps go.
///
/// Services and capture share the `TURNOUT-` prefix but never each other's chains: applying a
/// service table leaves `TURNOUT-CAPTURE-` chains alone and `init --cleanup` leaves the service
/// chains alone; `flush` owns both.
struct IptablesOwnership: Sendable, Equatable {
    /// Chains whose names start with this are owned…
    var prefix: String
    /// …unless they start with one of these.
    var excluding: [String]
    /// Capture's jumps go first in their built-in chain (`-I CHAIN 1`), so capture sees a
    /// connection before any other rule there, as nft's priority -105 does; service jumps are
    /// appended (`-A`), as kube-proxy's are.
    var jumpsFirst: Bool

    static let services = IptablesOwnership(prefix: IptablesServiceCompiler.chainPrefix, excluding: [CaptureCompiler.iptablesChainPrefix], jumpsFirst: false)
    static let capture = IptablesOwnership(prefix: CaptureCompiler.iptablesChainPrefix, excluding: [], jumpsFirst: true)
    /// Everything of Turnout's (what `flush` removes).
    static let all = IptablesOwnership(prefix: IptablesServiceCompiler.chainPrefix, excluding: [], jumpsFirst: false)

    func owns(_ chain: some StringProtocol) -> Bool {
        chain.hasPrefix(prefix) && !excluding.contains { chain.hasPrefix($0) }
    }
}
