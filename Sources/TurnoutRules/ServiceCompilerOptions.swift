import TurnoutModel

/// How service traffic is handled (DESIGN.md §1).
public enum DispatchMode: String, Hashable, Sendable, CaseIterable {
    /// The kernel picks an endpoint and rewrites the destination (kube-proxy's role).
    case direct
    /// TCP to a service is redirected to the local proxy, which picks the endpoint. UDP and SCTP
    /// are still dispatched in the kernel: the proxy only relays TCP, and sending datagrams to a
    /// port nobody serves would black-hole them.
    case proxy
}

/// Options shared by the nftables and iptables service compilers.
public struct ServiceCompilerOptions: Hashable, Sendable {
    /// The proxy's default outbound port, as Istio's (15001).
    public static let defaultProxyPort: UInt16 = 15_001

    public var mode: DispatchMode
    /// Where `proxy` mode redirects TCP to.
    public var proxyPort: UInt16

    public init(mode: DispatchMode = .direct, proxyPort: UInt16 = ServiceCompilerOptions.defaultProxyPort) {
        self.mode = mode
        self.proxyPort = proxyPort
    }
}
