import TurnoutModel

/// Which way a traced packet travels through the host's hooks.
public enum TraceOrigin: String, Hashable, Sendable, CaseIterable {
    /// Sent by a process on this host: OUTPUT, then POSTROUTING.
    case local
    /// Arriving from another host (a pod behind a bridge, a client routed through this node):
    /// PREROUTING, then FORWARD (or INPUT when redirected to a local port), then POSTROUTING.
    case forwarded
}

/// The first packet of a connection, as the tracer sees it.
public struct TracePacket: Hashable, Sendable {
    public var source: IPAddress
    public var sourcePort: UInt16
    public var destination: SocketAddress
    public var transport: TransportProtocol
    public var origin: TraceOrigin
    public var mark: UInt32
    /// The sending socket's owner; only locally generated packets have one.
    public var uid: UInt32?
    public var gid: UInt32?
    /// The interface a forwarded (arriving) packet came in on, and the one a local packet
    /// leaves by, as routing would choose them.
    public var inputInterface: String?
    public var outputInterface: String?

    /// The interface routing picks for a loopback destination.
    public static let loopback = "lo"

    /// `uid` defaults to root for local packets and to none for forwarded ones; `gid` to `uid`.
    /// A local packet leaves by `lo` when its destination is a loopback address, else by
    /// `outputInterface` (default `eth0`); a forwarded one arrives on `inputInterface` (`eth0`).
    /// A local packet to one of the host's own non-loopback addresses leaves by `lo` too: pass
    /// `outputInterface: TracePacket.loopback` for it.
    public init(source: IPAddress, sourcePort: UInt16 = 49_152, destination: SocketAddress,
                transport: TransportProtocol = .tcp, origin: TraceOrigin = .local, mark: UInt32 = 0,
                uid: UInt32? = nil, gid: UInt32? = nil, inputInterface: String? = nil, outputInterface: String? = nil) {
        self.source = source
        self.sourcePort = sourcePort
        self.destination = destination
        self.transport = transport
        self.origin = origin
        self.mark = mark
        self.uid = origin == .local ? (uid ?? 0) : nil
        self.gid = origin == .local ? (gid ?? uid ?? 0) : nil
        let loopback = IPPrefix.loopback(destination.address.family)
        switch origin {
        case .local:
            self.outputInterface = loopback.contains(destination.address) ? Self.loopback : (outputInterface ?? "eth0")
            self.inputInterface = nil
        case .forwarded:
            self.inputInterface = inputInterface ?? "eth0"
            self.outputInterface = nil
        }
    }
}

/// Entries already present in dynamic sets (client-IP affinity), keyed by set name.
///
/// Empty by default: a first connection. Tests fill it to trace a returning client.
public struct TraceState: Hashable, Sendable {
    public var dynamicEntries: [String: Set<[KeyPart]>]

    public init(dynamicEntries: [String: Set<[KeyPart]>] = [:]) {
        self.dynamicEntries = dynamicEntries
    }
}

/// What finally happens to a traced connection.
public enum Disposition: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Accepted with its destination unchanged.
    case untouched
    /// Destination rewritten to an endpoint; `masqueraded` when its source is rewritten too (hairpin).
    case delivered(SocketAddress, masqueraded: Bool)
    /// Redirected to a local port (the proxy).
    case redirected(port: UInt16)
    case rejected(RejectKind)
    case dropped

    public var description: String {
        switch self {
        case .untouched: "accept, destination unchanged"
        case .delivered(let target, let masqueraded): "dnat to \(target)" + (masqueraded ? " (masquerade: hairpin)" : "")
        case .redirected(let port): "redirect to local port \(port)"
        case .rejected(let kind): "reject with \(kind.rawValue)"
        case .dropped: "drop"
        }
    }

    public static func < (lhs: Disposition, rhs: Disposition) -> Bool { lhs.description < rhs.description }
}

/// One possible fate of a packet with its exact probability and the chains it went through.
public struct TraceOutcome: Hashable, Sendable {
    public var disposition: Disposition
    public var probability: Probability
    /// The chains of one path to this outcome, in order, e.g. `nat-output`, `services`, `weighted-pick-10`.
    public var chains: [String]
}
