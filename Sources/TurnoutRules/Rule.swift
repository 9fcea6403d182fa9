import TurnoutModel

/// Which address or port of a packet an expression reads.
public enum PacketDirection: String, Hashable, Sendable {
    case source
    case destination
}

/// Which interface of a packet a match reads: the one it arrived on or the one it leaves by.
public enum InterfaceDirection: String, Hashable, Sendable {
    case input
    case output
}

/// A value computed from the packet, as one component of a set key or a rewrite target.
public enum KeyField: Hashable, Sendable {
    /// `ip daddr`, `ip6 saddr`, …: also an implicit match on the family.
    case address(PacketDirection, IPFamily)
    /// `meta l4proto`.
    case transport
    /// `th dport` / `th sport`: the transport header's port.
    case port(PacketDirection)
    /// `numgen random mod N`: a uniformly random integer in 0..<N.
    case random(modulus: UInt32)
}

/// Connection-tracking states a rule can require (`ct state new`).
public enum ConnectionState: String, Hashable, Sendable, Comparable {
    case new
    case established
    case related

    public static func < (lhs: ConnectionState, rhs: ConnectionState) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One condition of a rule; all of a rule's matches must hold for its statements to run.
public enum Match: Hashable, Sendable {
    /// `meta nfproto ipv4`.
    case family(IPFamily)
    /// `meta l4proto tcp` or `meta l4proto { tcp, udp }`.
    case transport(Set<TransportProtocol>)
    /// `th dport 80`.
    case port(PacketDirection, UInt16)
    /// `ip daddr . meta l4proto . th dport @set` (or `!=` when negated).
    case lookup([KeyField], set: String, negated: Bool)
    /// `ct state new`.
    case connectionState(Set<ConnectionState>)
    /// `ct status dnat`: the connection's destination was rewritten.
    case destinationNATed
    /// iptables `-m statistic --mode random --probability p` (exact value kept for the tracer).
    case probability(Probability)
    /// `meta mark & bits == bits` (or `!=` when negated).
    case markBits(UInt32, negated: Bool)
    /// `meta skuid 1337`: the sending socket's owner (locally generated packets only; a packet
    /// without a local socket matches neither this nor its negation, as in the kernel).
    case socketUser(Set<UInt32>, negated: Bool)
    /// `meta skgid 1337`, likewise for the owner's group.
    case socketGroup(Set<UInt32>, negated: Bool)
    /// `ip daddr 10.0.0.1`, `ip daddr 10.0.0.0/8`, `ip daddr != 127.0.0.0/8`, `ip daddr { 10.0.0.0/8, 192.168.0.0/16 }`:
    /// blocks of one family, at least one; negated means in none of them. Like every address
    /// match it also requires that family. iptables takes one block per rule.
    case addresses(PacketDirection, [IPPrefix], negated: Bool)
    /// `th dport 22`, `th dport { 22, 9000-9100 }`: at least one range, negated means in none.
    /// iptables prints it as `-m multiport`, at most 15 ports per rule (a range counts 2).
    case ports(PacketDirection, [PortRange], negated: Bool)
    /// `iifname "eth1"`, `oifname != "lo"`, `oifname { "eth1", "eth2" }`. iptables takes one
    /// name per rule.
    case interface(InterfaceDirection, [String], negated: Bool)
}

/// Why a connection is refused.
public enum RejectKind: String, Hashable, Sendable {
    /// A TCP reset: the client's connect fails at once with ECONNREFUSED.
    case tcpReset = "tcp reset"
    /// ICMP(v6) port unreachable, for protocols without a reset.
    case portUnreachable = "port unreachable"
}

/// What ends a rule's processing or moves it to another chain.
public enum Verdict: Hashable, Sendable {
    case accept
    case drop
    case `return`
    case jump(String)
    case goto(String)
}

/// One action of a rule.
public enum Statement: Hashable, Sendable {
    /// `dnat to ADDR:PORT`: rewrite the destination (terminal for the hook).
    case dnat(SocketAddress)
    /// `dnat ip to KEY map @MAP`: rewrite the destination to the looked-up `address . port`.
    case dnatMap([KeyField], map: String, family: IPFamily)
    /// `redirect to :PORT`: to the primary local address of the interface, for the local proxy.
    case redirect(port: UInt16)
    case masquerade
    case reject(RejectKind)
    /// `update @set { KEY }`: refresh a dynamic set entry (client-IP affinity).
    case updateSet([KeyField], set: String)
    /// `meta mark set meta mark | bits`.
    case orMark(UInt32)
    /// `meta mark set meta mark ^ bits`.
    case xorMark(UInt32)
    /// `KEY vmap @map` or `KEY vmap { … }`.
    case verdictMap([KeyField], VerdictMapReference)
    case verdict(Verdict)
}

/// The map of a `vmap` statement: a named one, or inline elements.
public enum VerdictMapReference: Hashable, Sendable {
    case named(String)
    case inline([SetElement])
}

/// One rule: matches, then statements, in order.
public struct Rule: Hashable, Sendable {
    public var matches: [Match]
    public var statements: [Statement]
    /// Shown as `comment "…"` (nft) or `-m comment` (iptables); for people reading the rules.
    public var comment: String?

    public init(_ matches: [Match] = [], _ statements: [Statement], comment: String? = nil) {
        self.matches = matches
        self.statements = statements
        self.comment = comment
    }
}
