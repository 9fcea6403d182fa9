import Testing
import TurnoutModel
import TurnoutRules

/// The socket-owner match that capture rules need (the proxy's own traffic is never captured),
/// traced and rendered on a hand-built chain in the shape Istio's init container installs.
@Suite("Socket owner matches")
struct SocketOwnerTraceTests {
    /// OUTPUT: the proxy's uid 1337 or gid 1338 → return (left alone); everyone else → the proxy port.
    static let capture = RuleTable(name: "capture", family: .inet, chains: [
        Chain(name: "output", base: BaseChainSpec(type: .nat, hook: .output, priority: -100), rules: [
            Rule([.socketUser([1337], negated: false)], [.verdict(.return)]),
            Rule([.socketGroup([1338], negated: false)], [.verdict(.return)]),
            Rule([.transport([.tcp])], [.redirect(port: 15_001)]),
        ]),
    ])

    static func trace(uid: UInt32?, gid: UInt32? = nil, origin: TraceOrigin = .local) -> [Disposition] {
        let packet = TracePacket(source: IPAddress("10.0.0.1")!, destination: SocketAddress("10.96.0.20:80")!,
                                 origin: origin, uid: uid, gid: gid)
        return PacketTracer(tables: [capture]).trace(packet).map(\.disposition)
    }

    @Test("the proxy's uid → untouched; its gid → untouched; an app's uid → redirected")
    func owners() {
        #expect(Self.trace(uid: 1337) == [.untouched])
        #expect(Self.trace(uid: 1000, gid: 1338) == [.untouched])
        #expect(Self.trace(uid: 1000) == [.redirected(port: 15_001)])
        #expect(Self.trace(uid: 0) == [.redirected(port: 15_001)])
    }

    @Test("a negated owner match holds for every other uid, and never without a socket")
    func negated() {
        let table = RuleTable(name: "t", family: .inet, chains: [
            Chain(name: "output", base: BaseChainSpec(type: .nat, hook: .output, priority: -100), rules: [
                Rule([.socketUser([1337], negated: true)], [.redirect(port: 15_001)]),
            ]),
            Chain(name: "prerouting", base: BaseChainSpec(type: .nat, hook: .prerouting, priority: -100), rules: [
                Rule([.socketUser([1337], negated: true)], [.redirect(port: 15_001)]),
            ]),
        ])
        func dispositions(_ packet: TracePacket) -> [Disposition] { PacketTracer(tables: [table]).trace(packet).map(\.disposition) }
        let destination = SocketAddress("10.96.0.20:80")!
        #expect(dispositions(TracePacket(source: IPAddress("10.0.0.1")!, destination: destination, uid: 1000)) == [.redirected(port: 15_001)])
        #expect(dispositions(TracePacket(source: IPAddress("10.0.0.1")!, destination: destination, uid: 1337)) == [.untouched])
        #expect(dispositions(TracePacket(source: IPAddress("10.0.0.1")!, destination: destination, origin: .forwarded)) == [.untouched])
    }

    @Test("rendered as meta skuid/skgid and -m owner", arguments: [
        (Match.socketUser([1337], negated: false), "meta skuid 1337", "-m owner --uid-owner 1337"),
        (Match.socketUser([1337], negated: true), "meta skuid != 1337", "-m owner ! --uid-owner 1337"),
        (Match.socketGroup([1338], negated: false), "meta skgid 1338", "-m owner --gid-owner 1338"),
    ])
    func rendered(_ match: Match, _ nft: String, _ iptables: String) {
        let rule = Rule([match], [.verdict(.return)])
        #expect(NftablesRenderer.renderRule(rule) == "\(nft) return")
        let table = RuleTable(name: "nat", family: .ip, chains: [Chain(name: "TURNOUT-X", rules: [rule])])
        #expect(IptablesRenderer.render([table]).contains("-A TURNOUT-X \(iptables) -j RETURN"))
    }

    @Test("several uids render as an nft anonymous set")
    func several() {
        #expect(NftablesRenderer.renderRule(Rule([.socketUser([1337, 1000], negated: true)], [.verdict(.return)])) == "meta skuid != { 1000, 1337 } return")
    }
}
