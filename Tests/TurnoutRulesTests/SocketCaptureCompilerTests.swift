import CTurnoutBPF
import Testing
import TurnoutModel
import TurnoutRules
import TurnoutSocketCapture

/// CaptureOptions → what the socket capture's maps hold (`init --backend bpf`), traced the way
/// the programs read them: a port's verdict, then the address tries.
@Suite("SocketCaptureCompiler: options → BPF map contents")
struct SocketCaptureCompilerTests {
    static func options(_ settings: [CaptureSetting: String]) throws -> CaptureOptions {
        var options = CaptureOptions()
        options.ipv6 = false
        for (setting, value) in settings { try setting.apply(value, to: &options) }
        return options
    }

    @Test("Istio's defaults: everything outbound captured, every inbound port steered, uid and gid 1337 spared")
    func defaults() throws {
        let plan = SocketCaptureCompiler.plan(try Self.options([:]), ownAddresses: [IPAddress("10.20.0.2")!, IPAddress("127.0.0.1")!, IPAddress("fd00::2")!])
        #expect(plan.capturedBlocks.map(\.description) == ["0.0.0.0/0"])
        #expect(plan.excludedBlocks.isEmpty)
        #expect(plan.ownAddresses.map(\.description) == ["10.20.0.2/32"])
        #expect(plan.steeredInboundPorts.map(\.description) == ["1-65535"])
        #expect(plan.proxyUIDs == [1337] && plan.proxyGIDs == [1337])
        #expect(plan.proxyPort == 15001 && plan.inboundPort == 15006)
    }

    @Test("an excluded port beats an always-captured one; excluded inbound ports leave holes", arguments: [
        ("5432", "443,5432", "15020,15021", ["443"], ["5432"], ["1-15019", "15022-65535"]),
        ("9000-9100", "9050", "", [], ["9000-9100"], ["1-65535"]),
        ("", "80,443", "1-1024", ["80", "443"], [], ["1025-65535"]),
    ])
    func ports(excludedOut: String, capturedOut: String, excludedIn: String, captured: [String], excluded: [String], steered: [String]) throws {
        let plan = SocketCaptureCompiler.plan(try Self.options([.excludeOutboundPorts: excludedOut, .captureOutboundPorts: capturedOut,
                                                                .excludeInboundPorts: excludedIn]), ownAddresses: [])
        #expect(plan.capturedOutboundPorts.map(\.description) == captured)
        #expect(plan.excludedOutboundPorts.map(\.description) == excluded)
        #expect(plan.steeredInboundPorts.map(\.description) == steered)
    }

    @Test("only IPv4 blocks reach the maps; a listed capture replaces 0.0.0.0/0")
    func blocks() throws {
        let plan = SocketCaptureCompiler.plan(try Self.options([.captureOutbound: "10.0.0.0/8,fd00::/8", .excludeOutboundCIDRs: "10.1.0.0/16,fd00:1::/32"]), ownAddresses: [])
        #expect(plan.capturedBlocks.map(\.description) == ["10.0.0.0/8"])
        #expect(plan.excludedBlocks.map(\.description) == ["10.1.0.0/16"])
    }

    @Test("refused: excluded interfaces, more than 16 uids and gids together", arguments: [
        ([CaptureSetting.excludeInterfaces: "eth1"], "--exclude-interfaces"),
        ([.proxyUID: "1,2,3,4,5,6,7,8,9", .proxyGID: "1,2,3,4,5,6,7,8"], "at most 16 proxy uids and gids together"),
    ])
    func problems(settings: [CaptureSetting: String], problem: String) throws {
        let problems = SocketCaptureCompiler.problems(try Self.options(settings))
        #expect(problems.count == 1)
        #expect(problems.first?.contains(problem) == true)
    }

    @Test("IPv6 on: both families' blocks and own addresses, the IPv6 tries filled, ::1 and ::6 as four network-order words")
    func ipv6() throws {
        let plan = SocketCaptureCompiler.plan(try Self.options([.ipv6: "on", .excludeOutboundCIDRs: "fd00:1::/32,10.1.0.0/16"]),
                                              ownAddresses: [IPAddress("10.20.0.2")!, IPAddress("fd00:20::2")!, IPAddress("::1")!])
        #expect(plan.ipv6)
        #expect(plan.capturedBlocks.map(\.description) == ["0.0.0.0/0", "::/0"])
        #expect(plan.ownAddresses.map(\.description) == ["10.20.0.2/32", "fd00:20::2/128"])
        let contents = SocketCaptureMapContents(plan)
        #expect(contents.config.ipv6 == 1)
        #expect(withUnsafeBytes(of: contents.config.proxy_ip6) { Array($0) } == Array(repeating: 0, count: 15) + [1])
        #expect(withUnsafeBytes(of: contents.config.passthrough_ip6) { Array($0) } == Array(repeating: 0, count: 15) + [6])
        #expect(contents.localAddresses6.map(\.0.prefix_length) == [128, 128])
        #expect(contents.excludedBlocks6.map(\.0.prefix_length) == [32])
        #expect(contents.excludedBlocks.map(\.0.prefix_length) == [16])
        #expect(contents.capturedBlocks6.map(\.0.prefix_length) == [0])
        // IPv6 off: no IPv6 trie is filled, and the config says so (connect6 then captures only
        // v4-mapped destinations).
        let off = SocketCaptureMapContents(SocketCaptureCompiler.plan(try Self.options([:]), ownAddresses: [IPAddress("fd00:20::2")!]))
        #expect(off.config.ipv6 == 0 && off.localAddresses6.isEmpty && off.capturedBlocks6.isEmpty)
    }

    @Test("map contents: port verdicts, address keys in network order, the owners")
    func mapContents() throws {
        let plan = SocketCaptureCompiler.plan(try Self.options([.excludeOutboundPorts: "5432", .captureOutboundPorts: "443,5432",
                                                                .excludeInboundPorts: "15020", .proxyUID: "1337,1338",
                                                                .proxyGID: "1337,1338"]),
                                              ownAddresses: [IPAddress("10.20.0.2")!])
        let contents = SocketCaptureMapContents(plan)
        #expect(contents.outboundVerdict(5432) == UInt8(CTURNOUTBPF_PORT_EXCLUDED))
        #expect(contents.outboundVerdict(443) == UInt8(CTURNOUTBPF_PORT_CAPTURED))
        #expect(contents.outboundVerdict(80) == UInt8(CTURNOUTBPF_PORT_DEFAULT))
        #expect(contents.outboundPorts.count == 2)
        #expect(!contents.inboundSteered(15020))
        #expect(contents.inboundSteered(8080))
        #expect(!contents.inboundSteered(0))
        // Steering is the default here: only the two ports left alone are written.
        #expect(contents.config.inbound_default == UInt32(CTURNOUTBPF_INBOUND_STEERED))
        #expect(contents.inboundPorts.map(\.port) == [0, 15020])
        // 10.20.0.2 as the kernel holds it: the bytes 10, 20, 0, 2 in memory order.
        let own = contents.localAddresses.first { $0.1 == UInt8(CTURNOUTBPF_LOCAL_OWN) }
        #expect(own.map { withUnsafeBytes(of: $0.0.address) { Array($0) } } == [10, 20, 0, 2])
        #expect(own?.0.prefix_length == 32)
        #expect(contents.localAddresses.first?.0.prefix_length == 8)
        #expect(contents.proxyIDs == [1337, 1338, 1 << 32 | 1337, 1 << 32 | 1338])
        #expect(withUnsafeBytes(of: contents.config.proxy_ip) { Array($0) } == [127, 0, 0, 1])
        #expect(withUnsafeBytes(of: contents.config.passthrough_ip) { Array($0) } == [127, 0, 0, 6])
    }
}

/// The inbound port table is written sparse: whichever of the steered and the left ports are
/// fewer, so init never fills more than half of the 65,536 entries.
@Suite("SocketCaptureMapContents: sparse inbound ports")
struct SocketCaptureSparsePortTests {
    @Test("captured inbound ports → the smaller side is written, the default covers the rest", arguments: [
        ("*", "", UInt32(CTURNOUTBPF_INBOUND_STEERED), 1, [8080: true, 0: false]),
        ("8080,9090", "", UInt32(CTURNOUTBPF_INBOUND_LEFT), 2, [8080: true, 9090: true, 80: false]),
        ("*", "1-40000", UInt32(CTURNOUTBPF_INBOUND_LEFT), 25535, [40001: true, 8080: false]),
        ("", "", UInt32(CTURNOUTBPF_INBOUND_LEFT), 0, [8080: false]),
    ])
    func sparse(captured: String, excluded: String, expectedDefault: UInt32, written: Int, steered: [UInt16: Bool]) throws {
        var options = CaptureOptions()
        options.ipv6 = false
        try CaptureSetting.captureInboundPorts.apply(captured, to: &options)
        try CaptureSetting.excludeInboundPorts.apply(excluded, to: &options)
        let contents = SocketCaptureMapContents(SocketCaptureCompiler.plan(options, ownAddresses: []))
        #expect(contents.config.inbound_default == expectedDefault)
        #expect(contents.inboundPorts.count == written)
        for (port, expected) in steered { #expect(contents.inboundSteered(port) == expected, "port \(port)") }
    }
}
