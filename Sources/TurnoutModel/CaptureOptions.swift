/// What `turnout init` captures: the options of Istio's `istio-iptables` (and Linkerd's
/// `proxy-init`), as values.
///
/// Defaults are Istio's: outbound TCP → 15001, inbound TCP → 15006, uid and gid 1337 never
/// captured, every outbound destination and every inbound port captured. Build one with
/// `init()` and set fields, or from option text with `CaptureSetting`. Lists are kept
/// normalized (sorted, overlaps joined), so equal options compile to identical rules.
public struct CaptureOptions: Hashable, Sendable {
    /// Every destination (`*`), or only these blocks; an empty list captures none.
    public enum Selection<Element: Hashable & Sendable>: Hashable, Sendable {
        case all
        case only([Element])

        /// True for `.only([])`: this direction is not captured at all.
        public var isEmpty: Bool { if case .only(let items) = self { items.isEmpty } else { false } }
    }

    /// Where captured outbound connections go (the proxy's outbound listener).
    public var proxyPort: UInt16 = 15001
    /// Where captured inbound connections go (the proxy's inbound listener).
    public var inboundPort: UInt16 = 15006
    /// The proxy's users and groups: their sockets are never captured (the loop guard).
    public var proxyUIDs: [UInt32] = [1337]
    public var proxyGIDs: [UInt32] = [1337]
    public var captureOutbound: Selection<IPPrefix> = .all { didSet { captureOutbound = Self.normalized(captureOutbound) } }
    public var excludeOutboundCIDRs: [IPPrefix] = [] { didSet { excludeOutboundCIDRs = IPPrefix.normalized(excludeOutboundCIDRs) } }
    /// Captured whatever the destination address (but never from the proxy, nor over `lo`).
    public var captureOutboundPorts: [PortRange] = [] { didSet { captureOutboundPorts = PortRange.normalized(captureOutboundPorts) } }
    /// Never captured; beats every inclusion.
    public var excludeOutboundPorts: [PortRange] = [] { didSet { excludeOutboundPorts = PortRange.normalized(excludeOutboundPorts) } }
    public var captureInboundPorts: Selection<PortRange> = .all { didSet { captureInboundPorts = Self.normalized(captureInboundPorts) } }
    public var excludeInboundPorts: [PortRange] = [] { didSet { excludeInboundPorts = PortRange.normalized(excludeInboundPorts) } }
    /// Traffic in or out through these interfaces is never captured.
    public var excludeInterfaces: [String] = [] { didSet { excludeInterfaces = Array(Set(excludeInterfaces)).sorted() } }
    /// Whether IPv6 gets the same capture; IPv4 always does.
    public var ipv6 = true

    public init() {}

    /// The inbound passthrough sources: the proxy connects to the app from these so that its
    /// own deliveries are not captured again (Istio's `127.0.0.6` and `::6`).
    public static let passthroughSources: [IPFamily: IPAddress] = [.ipv4: IPAddress("127.0.0.6")!, .ipv6: IPAddress("::6")!]

    /// The families capture rules are installed for.
    public var families: [IPFamily] { ipv6 ? [.ipv4, .ipv6] : [.ipv4] }

    /// Problems no single option shows, e.g. both ports the same; empty when usable.
    public var problems: [String] {
        var problems: [String] = []
        if proxyPort == inboundPort {
            problems.append("the proxy port and the inbound port are both \(proxyPort): the proxy could not tell inbound from outbound")
        }
        if proxyUIDs.isEmpty && proxyGIDs.isEmpty {
            problems.append("no proxy uid or gid: the proxy's own connections would be captured again (a loop)")
        }
        return problems
    }

    private static func normalized(_ selection: Selection<IPPrefix>) -> Selection<IPPrefix> {
        if case .only(let items) = selection { return .only(IPPrefix.normalized(items)) }
        return selection
    }

    private static func normalized(_ selection: Selection<PortRange>) -> Selection<PortRange> {
        if case .only(let items) = selection { return .only(PortRange.normalized(items)) }
        return selection
    }
}
