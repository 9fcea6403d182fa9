import TurnoutModel

/// What the socket capture's maps hold (`turnout init --backend bpf`): `CaptureOptions` as the
/// BPF programs read them.
///
/// Plain value, compiled by ``SocketCaptureCompiler``; `TurnoutSocketCapture` writes it into the
/// kernel, `init --dry-run` prints it (``text``). Lists are normalized, so equal options give
/// equal plans.
public struct SocketCapturePlan: Hashable, Sendable {
    /// Where captured connections are sent: the proxy's listeners on this address.
    public static let proxyAddresses: [IPFamily: IPAddress] = [.ipv4: IPAddress("127.0.0.1")!, .ipv6: IPAddress("::1")!]
    /// Never captured: what `connect(2)` to these reaches needs no proxy (NAT's "over lo").
    public static let loopbackBlocks: [IPFamily: IPPrefix] = [.ipv4: IPPrefix.loopback(.ipv4), .ipv6: IPPrefix.loopback(.ipv6)]
    /// How many proxy uids and gids together the programs hold (CTURNOUTBPF_MAX_OWNERS).
    public static let maximumOwners = 16

    /// Whether IPv6 is captured too (IPv4 always is, v4-mapped destinations included).
    public var ipv6: Bool
    public var proxyPort: UInt16
    public var inboundPort: UInt16
    public var proxyUIDs: [UInt32]
    public var proxyGIDs: [UInt32]
    /// Outbound destination ports never captured (they win over ``capturedOutboundPorts``).
    public var excludedOutboundPorts: [PortRange]
    /// Outbound destination ports always captured, whatever the address.
    public var capturedOutboundPorts: [PortRange]
    /// The namespace's own addresses (not loopback; IPv6 ones when ``ipv6``): left alone, except
    /// that the proxy calling one of them is sent to the inbound listener.
    public var ownAddresses: [IPPrefix]
    public var excludedBlocks: [IPPrefix]
    public var capturedBlocks: [IPPrefix]
    /// Inbound ports whose new connections are handed to the inbound listener (the captured
    /// ports less the excluded ones; the programs also never steer the proxy's own two ports).
    public var steeredInboundPorts: [PortRange]

    /// What `init --dry-run --backend bpf` prints: every value the maps get, one line each.
    public var text: String {
        func list(_ items: [some CustomStringConvertible]) -> String { items.isEmpty ? "none" : items.map(\.description).joined(separator: ", ") }
        return """
        # turnout init --backend bpf: capture at connect(2) and at the listener lookup; no NAT rule, no conntrack
        # cgroup (--cgroup): cgroup/connect4, connect6, getpeername4, getpeername6, getsockopt, sockops; network namespace: sk_lookup
        families: \(ipv6 ? "IPv4 and IPv6" : "IPv4 (and IPv4 reached through v4-mapped IPv6 addresses)")
        outbound listener: \(Self.proxyAddresses[.ipv4]!):\(proxyPort)\(ipv6 ? ", [\(Self.proxyAddresses[.ipv6]!)]:\(proxyPort)" : "")
        inbound listener: port \(inboundPort) (found when it calls listen(2); the proxy's calls to own addresses go to port \(inboundPort) on loopback)
        proxy uids (never captured): \(list(proxyUIDs))
        proxy gids (never captured): \(list(proxyGIDs))
        outbound ports excluded: \(list(excludedOutboundPorts))
        outbound ports always captured: \(list(capturedOutboundPorts))
        left alone (loopback): \(list(ipv6 ? [Self.loopbackBlocks[.ipv4]!, Self.loopbackBlocks[.ipv6]!] : [Self.loopbackBlocks[.ipv4]!]))
        left alone (own addresses; the proxy's calls to them go to the inbound listener): \(list(ownAddresses))
        outbound blocks excluded: \(list(excludedBlocks))
        outbound blocks captured: \(list(capturedBlocks))
        inbound ports steered: \(list(steeredInboundPorts))

        """
    }
}

/// Compiles `CaptureOptions` into a ``SocketCapturePlan``: the same capture as
/// ``CaptureCompiler``'s NAT rules, decided in the same order (see the program's header,
/// `Sources/TurnoutSocketCapture/Programs/socket-capture.bpf.c`), for the BPF programs.
public enum SocketCaptureCompiler {
    /// Why these options cannot be captured this way yet; empty when they can.
    public static func problems(_ options: CaptureOptions) -> [String] {
        var problems: [String] = []
        if !options.excludeInterfaces.isEmpty {
            problems.append("--exclude-interfaces: the bpf backend captures at connect(2), before a route (and so an interface) is chosen; use --exclude-outbound-cidrs for what that interface reaches, or --backend nft")
        }
        if Set(options.proxyUIDs).count + Set(options.proxyGIDs).count > SocketCapturePlan.maximumOwners {
            problems.append("the bpf backend holds at most \(SocketCapturePlan.maximumOwners) proxy uids and gids together")
        }
        return problems
    }

    /// The plan for `options` in a namespace whose addresses are `ownAddresses` (loopback ones,
    /// and IPv6 ones with IPv6 off, are ignored). `options` must have no ``problems(_:)``.
    public static func plan(_ options: CaptureOptions, ownAddresses: [IPAddress]) -> SocketCapturePlan {
        let families = Set(options.families)
        let own = ownAddresses.filter { families.contains($0.family) && !SocketCapturePlan.loopbackBlocks[$0.family]!.contains($0) }
        let captured: [IPPrefix] = switch options.captureOutbound {
        case .all: options.families.map { IPPrefix(address: $0 == .ipv4 ? IPAddress("0.0.0.0")! : IPAddress("::")!, length: 0)! }
        case .only(let blocks): blocks.filter { families.contains($0.family) }
        }
        let inbound: [PortRange] = switch options.captureInboundPorts {
        case .all: [PortRange(1, 65535)!]
        case .only(let ports): ports
        }
        return SocketCapturePlan(
            ipv6: options.ipv6, proxyPort: options.proxyPort, inboundPort: options.inboundPort,
            proxyUIDs: Array(Set(options.proxyUIDs)).sorted(), proxyGIDs: Array(Set(options.proxyGIDs)).sorted(),
            excludedOutboundPorts: options.excludeOutboundPorts,
            capturedOutboundPorts: subtracting(options.excludeOutboundPorts, from: options.captureOutboundPorts),
            ownAddresses: IPPrefix.normalized(own.map { IPPrefix(host: $0) }),
            excludedBlocks: options.excludeOutboundCIDRs.filter { families.contains($0.family) },
            capturedBlocks: captured,
            steeredInboundPorts: subtracting(options.excludeInboundPorts, from: inbound))
    }

    /// `ranges` less every port of `removed` (both normalized), normalized.
    static func subtracting(_ removed: [PortRange], from ranges: [PortRange]) -> [PortRange] {
        var result: [PortRange] = []
        for range in ranges {
            var pieces = [range]
            for cut in removed {
                pieces = pieces.flatMap { piece -> [PortRange] in
                    guard cut.lower <= piece.upper && piece.lower <= cut.upper else { return [piece] }
                    var kept: [PortRange] = []
                    if cut.lower > piece.lower, let below = PortRange(piece.lower, cut.lower - 1) { kept.append(below) }
                    if cut.upper < piece.upper, let above = PortRange(cut.upper + 1, piece.upper) { kept.append(above) }
                    return kept
                }
            }
            result += pieces
        }
        return PortRange.normalized(result)
    }
}
