import CTurnoutBPF
import TurnoutModel
import TurnoutRules

/// A ``SocketCapturePlan`` as the elements of the programs' per-load maps (layouts in
/// `CTurnoutBPFMaps.h`), ready to be written.
///
/// Plain value; computing it touches no kernel, so tests read a port's verdict or a block's
/// value from it directly.
public struct SocketCaptureMapContents: Sendable {
    public var config: CTurnoutBPF_config
    /// `proxy_ids`: the proxy's uids and gids as keys (CTURNOUTBPF_OWNER_KEY), value 1.
    public var proxyIDs: [UInt64]
    /// `outbound_ports`: the ports whose verdict is not CTURNOUTBPF_PORT_DEFAULT, the value an
    /// array map starts with (CTURNOUTBPF_PORT_*). Only those are written.
    public var outboundPorts: [(port: UInt32, verdict: UInt8)]
    /// `inbound_ports`: the ports that differ from `config.inbound_default`, the fewer of the
    /// steered and the left ones (CTURNOUTBPF_INBOUND_*), so at most half of the ports.
    public var inboundPorts: [(port: UInt32, verdict: UInt8)]
    /// The LPM tries' elements: key and value (CTURNOUTBPF_LOCAL_* for `local_addresses`, 1 for
    /// the block lists).
    public var localAddresses: [(CTurnoutBPF_block, UInt8)]
    public var excludedBlocks: [(CTurnoutBPF_block, UInt8)]
    public var capturedBlocks: [(CTurnoutBPF_block, UInt8)]
    /// The IPv6 tries (`local_addresses6`, …), empty with IPv6 off.
    public var localAddresses6: [(CTurnoutBPF_block6, UInt8)]
    public var excludedBlocks6: [(CTurnoutBPF_block6, UInt8)]
    public var capturedBlocks6: [(CTurnoutBPF_block6, UInt8)]

    public init(_ plan: SocketCapturePlan) {
        var config = CTurnoutBPF_config()
        config.proxy_ip = Self.networkOrder(SocketCapturePlan.proxyAddresses[.ipv4]!)
        config.passthrough_ip = Self.networkOrder(CaptureOptions.passthroughSources[.ipv4]!)
        config.proxy_ip6 = Self.words(SocketCapturePlan.proxyAddresses[.ipv6]!)
        config.passthrough_ip6 = Self.words(CaptureOptions.passthroughSources[.ipv6]!)
        config.ipv6 = plan.ipv6 ? 1 : 0
        config.proxy_port = plan.proxyPort
        config.inbound_port = plan.inboundPort
        self.config = config
        proxyIDs = plan.proxyUIDs.map { UInt64(CTURNOUTBPF_OWNER_UID) << 32 | UInt64($0) }
            + plan.proxyGIDs.map { UInt64(CTURNOUTBPF_OWNER_GID) << 32 | UInt64($0) }

        var outbound = [UInt8](repeating: UInt8(CTURNOUTBPF_PORT_DEFAULT), count: 65536)
        // Excluded last: an excluded port is never captured, as in the NAT rules' order.
        for range in plan.capturedOutboundPorts { for port in range.lower...range.upper { outbound[Int(port)] = UInt8(CTURNOUTBPF_PORT_CAPTURED) } }
        for range in plan.excludedOutboundPorts { for port in range.lower...range.upper { outbound[Int(port)] = UInt8(CTURNOUTBPF_PORT_EXCLUDED) } }
        outboundPorts = outbound.indices.filter { outbound[$0] != UInt8(CTURNOUTBPF_PORT_DEFAULT) }.map { (UInt32($0), outbound[$0]) }
        var steered = [Bool](repeating: false, count: 65536)
        for range in plan.steeredInboundPorts { for port in range.lower...range.upper { steered[Int(port)] = true } }
        let steeredCount = steered.lazy.filter { $0 }.count
        let byDefault = steeredCount > 65536 / 2
        self.config.inbound_default = UInt32(byDefault ? CTURNOUTBPF_INBOUND_STEERED : CTURNOUTBPF_INBOUND_LEFT)
        inboundPorts = steered.indices.filter { steered[$0] != byDefault }
            .map { (UInt32($0), UInt8(steered[$0] ? CTURNOUTBPF_INBOUND_STEERED : CTURNOUTBPF_INBOUND_LEFT)) }

        let own4 = plan.ownAddresses.filter { $0.family == .ipv4 }, own6 = plan.ownAddresses.filter { $0.family == .ipv6 }
        localAddresses = [(Self.block(SocketCapturePlan.loopbackBlocks[.ipv4]!), UInt8(CTURNOUTBPF_LOCAL_LOOPBACK))]
            + own4.map { (Self.block($0), UInt8(CTURNOUTBPF_LOCAL_OWN)) }
        excludedBlocks = plan.excludedBlocks.filter { $0.family == .ipv4 }.map { (Self.block($0), 1) }
        capturedBlocks = plan.capturedBlocks.filter { $0.family == .ipv4 }.map { (Self.block($0), 1) }
        localAddresses6 = plan.ipv6
            ? [(Self.block6(SocketCapturePlan.loopbackBlocks[.ipv6]!), UInt8(CTURNOUTBPF_LOCAL_LOOPBACK))] + own6.map { (Self.block6($0), UInt8(CTURNOUTBPF_LOCAL_OWN)) }
            : []
        excludedBlocks6 = plan.excludedBlocks.filter { $0.family == .ipv6 }.map { (Self.block6($0), 1) }
        capturedBlocks6 = plan.capturedBlocks.filter { $0.family == .ipv6 }.map { (Self.block6($0), 1) }
    }

    /// The verdict the programs read for outbound destination `port` (CTURNOUTBPF_PORT_*).
    public func outboundVerdict(_ port: UInt16) -> UInt8 {
        outboundPorts.first { $0.port == UInt32(port) }?.verdict ?? UInt8(CTURNOUTBPF_PORT_DEFAULT)
    }

    /// Whether the programs hand a new inbound connection to `port` to the inbound listener.
    public func inboundSteered(_ port: UInt16) -> Bool {
        let verdict = inboundPorts.first { $0.port == UInt32(port) }?.verdict ?? UInt8(config.inbound_default)
        return verdict == UInt8(CTURNOUTBPF_INBOUND_STEERED)
    }

    /// An IPv4 address as the kernel's contexts hold it: its four bytes in network order, read as
    /// one native integer.
    static func networkOrder(_ address: IPAddress) -> UInt32 {
        word(address.bytes, at: 0)
    }

    /// An IPv6 address as the kernel's contexts hold it: four words, each read like an IPv4 one.
    static func words(_ address: IPAddress) -> (UInt32, UInt32, UInt32, UInt32) {
        let bytes = address.bytes
        return (word(bytes, at: 0), word(bytes, at: 4), word(bytes, at: 8), word(bytes, at: 12))
    }

    private static func word(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }

    static func block6(_ prefix: IPPrefix) -> CTurnoutBPF_block6 {
        CTurnoutBPF_block6(prefix_length: UInt32(prefix.length), address: words(prefix.address))
    }

    static func block(_ prefix: IPPrefix) -> CTurnoutBPF_block {
        CTurnoutBPF_block(prefix_length: UInt32(prefix.length), address: networkOrder(prefix.address))
    }
}
