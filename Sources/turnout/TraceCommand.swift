import ArgumentParser
import TurnoutControl
import TurnoutModel
import TurnoutRules

extension TransportProtocol: ExpressibleByArgument {}
extension TraceOrigin: ExpressibleByArgument {}

/// `turnout trace`: where would a connection go? Walks the compiled rules for one packet.
struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Show every place a connection can end up, with its exact probability.",
        discussion: """
        Compiles the table as `plan` does and walks the rules for the first packet of a connection,
        splitting at every random choice. Examples:
          turnout trace -f rules/canary.yaml --to 10.96.0.20:80
          turnout trace -f rules/canary.yaml --to 10.96.0.20:80 --format iptables
          turnout trace -f rules/no-endpoints.yaml --to 10.96.0.30:80
          turnout trace -f rules/dual-stack.yaml --to [fd00:96::40]:53 --protocol udp --origin forwarded
        """
    )

    @OptionGroup var rules: RuleOptions

    @Option(help: "The destination, ADDR:PORT or [ADDR6]:PORT.")
    var to: String

    @Option(help: "The source address (default: a documentation address of the destination's family).")
    var from: String?

    @Option(name: .customLong("protocol"), help: "tcp, udp or sctp.")
    var transport: TransportProtocol = .tcp

    @Option(help: "local: sent by a process on this host; forwarded: routed through it.")
    var origin: TraceOrigin = .local

    @Option(help: "The sending process's user id (local origin only).")
    var uid: UInt32 = 0

    @Option(help: "The sending process's group id (default: the uid).")
    var gid: UInt32?

    @Option(help: "Which rules to trace: nft, iptables or ip6tables (by default the one for the destination's family).")
    var format: RuleFormat?

    func run() throws {
        guard let destination = SocketAddress(to) else {
            throw BadInput(message: "--to '\(to)' is not ADDR:PORT or [ADDR6]:PORT")
        }
        let source: IPAddress
        if let from {
            guard let parsed = IPAddress(from) else { throw BadInput(message: "--from '\(from)' is not an IP address") }
            source = parsed
        } else {
            source = destination.address.family == .ipv4 ? IPAddress("192.0.2.1")! : IPAddress("2001:db8::1")!
        }
        guard source.family == destination.address.family else {
            throw BadInput(message: "--from \(source) and --to \(destination) are of different families")
        }
        var format = self.format ?? .nft
        if format != .nft {
            format = destination.address.family == .ipv4 ? .iptables : .ip6tables
        }

        let table = try TableFile.load(rules.file)
        let tracer = PacketTracer(tables: format.tables(for: table, options: rules.compilerOptions))
        let packet = TracePacket(source: source, destination: destination, transport: transport, origin: origin, uid: uid, gid: gid)
        let outcomes = tracer.trace(packet)

        let owner = packet.uid.map { ", uid \($0) gid \(packet.gid ?? $0)" } ?? ""
        print("\(transport) \(source) -> \(destination), \(origin) origin\(owner), mode \(rules.mode.rawValue), \(format.rawValue) rules")
        for outcome in outcomes {
            let fraction = outcome.probability.description.padding(to: 9)
            print("  \(fraction) \(outcome.probability.percentText.padding(to: 8)) \(outcome.disposition)")
            print("  \("".padding(to: 18)) via \(outcome.chains.joined(separator: " > "))")
        }
    }
}

private extension String {
    func padding(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
