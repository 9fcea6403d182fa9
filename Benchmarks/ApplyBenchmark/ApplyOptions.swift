import Glibc
import TurnoutBenchmarkSupport

/// Command-line options of `turnout-bench-apply`. Parsed by hand, like the compile benchmark's.
struct ApplyOptions {
    enum Part: String, CaseIterable {
        case full, change, latency
    }

    var serviceCounts = [1_000, 10_000]
    var endpointsPerService = 10
    /// Library full applies (compile, encode, commit, backend apply) per size.
    var runs = 5
    /// `nft -f` of the plan text and CLI applies per size (each spawns processes; YAML is slow).
    var peerRuns = 3
    /// One-endpoint changes per variant and size, through the library (daemon and fresh paths).
    var changeRuns = 4
    /// One-endpoint changes per variant and size through the CLI.
    var cliChangeRuns = 2
    /// Timed connects per client and round, after `warmupConnects` untimed ones.
    var connects = 5_000
    var warmupConnects = 500
    /// Connects in a row from one client before the next client's turn.
    var block = 100
    /// Latency rounds: one helper process each, every client interleaved block by block.
    var rounds = 9
    var latencySmall = 10
    var latencyLarge = 10_000
    /// Endpoints of every service but the target in the large iptables table (and in the nft
    /// table measured beside it): iptables-restore of 10k × 10 takes minutes (chains).
    var iptablesEndpoints = 1
    var parts = Set(Part.allCases)
    /// The `turnout` binary for the CLI and `plan` rows; those rows are skipped without it.
    var turnout: String?
    /// Network namespace names start with this; scripts/bench/apply passes `tob-$$`.
    var prefix = "tob-\(getpidValue())"
    /// Helper PIDs (the lab's server) are appended here, so the script can stop them on exit.
    var pidFile: String?
    /// Pause after deleting a namespace that held a large table, so the kernel's deferred
    /// cleanup does not land in the next timed step.
    var settleMilliseconds = 300
    /// The lab server exits by itself after this long, whatever happens to the benchmark.
    var serverLifetimeSeconds = 900
    /// Seconds one child process (nft, the CLI, iptables-restore, a client run) may take.
    var childTimeoutSeconds = 240

    static let usage = """
        usage: turnout-bench-apply [--services N,N] [--endpoints E] [--runs R] [--peer-runs R]
                                   [--change-runs R] [--cli-change-runs R] [--connects N] [--warmup-connects N] [--block N]
                                   [--rounds R] [--latency-small N] [--latency-large N] [--iptables-endpoints E]
                                   [--only full,change,latency] [--turnout PATH] [--prefix NAME] [--pid-file PATH]
                                   [--settle-ms MS] [--child-timeout SECONDS]

          needs root: every measurement runs in network namespaces it creates (PREFIX-N) and deletes.
          --services         table sizes for the full-apply and one-endpoint-change parts (default 1000,10000)
          --endpoints        endpoints per service (default 10)
          --runs             library full applies per size (default 5)
          --peer-runs        nft -f and CLI full applies per size (default 3)
          --change-runs      one-endpoint changes per variant and size, library paths (default 4)
          --cli-change-runs  the same through the CLI (default 2)
          --connects         timed connects per client and round (default 5000), after --warmup-connects (500)
          --block            connects in a row from one client before the next one's turn (default 100)
          --rounds           latency rounds, each with fresh source addresses (default 9)
          --latency-small    services in the small latency table (default 10)
          --latency-large    services in the large latency table (default 10000)
          --iptables-endpoints  endpoints of the other services in the large iptables table (default 1)
          --only             parts to run (default full,change,latency)
          --turnout          the turnout binary, for the CLI rows and the plan text nft -f loads
          --prefix           namespace name prefix (default tob-PID)
          --pid-file         append helper PIDs here (scripts/bench/apply stops them on exit)

        internal helpers, run by the benchmark itself (serve inside the lab's endpoint namespace):
          turnout-bench-apply serve PORT SECONDS
          turnout-bench-apply connect-mix COUNT WARMUP BLOCK DEADLINE_SECONDS NSPATH,SOURCE,ADDRESS,PORT...
        """

    enum ParseError: Error, CustomStringConvertible {
        case help
        case invalid(String)
        var description: String {
            switch self {
            case .help: ApplyOptions.usage
            case .invalid(let message): "turnout-bench-apply: \(message)\n\n\(ApplyOptions.usage)"
            }
        }
    }

    init(arguments: [String]) throws(ParseError) {
        var remaining = arguments[...]
        func value(for flag: String) throws(ParseError) -> String {
            guard let next = remaining.popFirst() else { throw .invalid("\(flag) needs a value") }
            return next
        }
        func count(for flag: String, minimum: Int = 1) throws(ParseError) -> Int {
            let text = try value(for: flag)
            guard let number = parseCount(text), number >= minimum else {
                throw .invalid("\(flag): '\(text)' is not a whole number ≥ \(minimum)")
            }
            return number
        }
        while let flag = remaining.popFirst() {
            switch flag {
            case "-h", "--help": throw .help
            case "--services":
                let text = try value(for: flag)
                let counts = text.split(separator: ",").compactMap { parseCount(String($0)) }.filter { $0 >= 1 }
                guard !counts.isEmpty, counts.count == text.split(separator: ",").count else {
                    throw .invalid("--services: '\(text)' is not a list of whole numbers ≥ 1")
                }
                serviceCounts = Array(Set(counts)).sorted()
            case "--endpoints": endpointsPerService = try count(for: flag, minimum: 2)
            case "--runs": runs = try count(for: flag)
            case "--peer-runs": peerRuns = try count(for: flag, minimum: 0)
            case "--change-runs": changeRuns = try count(for: flag)
            case "--cli-change-runs": cliChangeRuns = try count(for: flag, minimum: 0)
            case "--connects": connects = try count(for: flag, minimum: 100)
            case "--warmup-connects": warmupConnects = try count(for: flag, minimum: 0)
            case "--block": block = try count(for: flag)
            case "--rounds":
                rounds = try count(for: flag)
                guard rounds <= 250 else { throw .invalid("--rounds: at most 250 (one source address per round)") }
            case "--latency-small": latencySmall = try count(for: flag)
            case "--latency-large": latencyLarge = try count(for: flag)
            case "--iptables-endpoints": iptablesEndpoints = try count(for: flag)
            case "--only":
                let text = try value(for: flag)
                var chosen = Set<Part>()
                for name in text.split(separator: ",") {
                    guard let part = Part(rawValue: String(name)) else { throw .invalid("--only: unknown part '\(name)' (full, change, latency)") }
                    chosen.insert(part)
                }
                parts = chosen
            case "--turnout": turnout = try value(for: flag)
            case "--prefix": prefix = try value(for: flag)
            case "--pid-file": pidFile = try value(for: flag)
            case "--settle-ms": settleMilliseconds = try count(for: flag, minimum: 0)
            case "--child-timeout": childTimeoutSeconds = try count(for: flag)
            default: throw .invalid("unknown argument '\(flag)'")
            }
        }
        let largest = SyntheticTable.maximumServices(endpointsPerService: endpointsPerService)
        if let tooMany = (serviceCounts + [latencyLarge]).first(where: { $0 > largest }) {
            throw .invalid("\(tooMany) services × \(endpointsPerService) endpoints do not fit the synthetic address ranges (at most \(largest))")
        }
        guard prefix.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }), prefix.count <= 40 else {
            throw .invalid("--prefix: letters, digits and '-' only, at most 40 characters")
        }
    }
}

private func getpidValue() -> Int32 { getpid() }
