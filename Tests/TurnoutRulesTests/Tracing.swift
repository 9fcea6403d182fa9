import Testing
import TurnoutControl
import TurnoutModel
import TurnoutRules
import TurnoutTestSupport

/// The two rule dialects every trace test runs against: both must mean the same thing.
enum Dialect: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case nftables
    case iptables

    var testDescription: String { rawValue }

    func tables(_ table: ServiceTable, family: IPFamily, options: ServiceCompilerOptions = ServiceCompilerOptions()) -> [RuleTable] {
        switch self {
        case .nftables: [NftablesServiceCompiler.compile(table, options: options)]
        case .iptables: IptablesServiceCompiler.compile(table, family: family, options: options)
        }
    }
}

/// Compiles `table` in `dialect` and traces one connection; the result maps each disposition to
/// its probability, so tests read as `[.delivered(A): 9/10, .delivered(B): 1/10]`.
func trace(_ table: ServiceTable, _ dialect: Dialect, to destination: String, from source: String? = nil,
           transport: TransportProtocol = .tcp, origin: TraceOrigin = .local,
           options: ServiceCompilerOptions = ServiceCompilerOptions(), state: TraceState = TraceState()) -> [Disposition: Probability] {
    let target = SocketAddress(destination)!
    let client = source.map { IPAddress($0)! } ?? (target.address.family == .ipv4 ? IPAddress("192.0.2.1")! : IPAddress("2001:db8::1")!)
    let tracer = PacketTracer(tables: dialect.tables(table, family: target.address.family, options: options))
    let outcomes = tracer.trace(TracePacket(source: client, destination: target, transport: transport, origin: origin), state: state)
    return Dictionary(uniqueKeysWithValues: outcomes.map { ($0.disposition, $0.probability) })
}

func delivered(_ target: String, masqueraded: Bool = false) -> Disposition {
    .delivered(SocketAddress(target)!, masqueraded: masqueraded)
}

func example(_ name: String) throws -> ServiceTable {
    try TableFile.load(Repository.path("rules/\(name).yaml"))
}

func table(_ yaml: String) throws -> ServiceTable {
    try TableDecoder.decode(yaml, name: "test.yaml")
}
