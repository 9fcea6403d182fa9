import TurnoutBenchmarkSupport

/// Command-line options. Parsed by hand: the benchmark depends only on TurnoutModel and
/// TurnoutRules, so it measures exactly what a caller of those modules pays for.
struct BenchmarkOptions {
    var serviceCounts = [1_000, 10_000, 50_000]
    var endpointsPerService = 10
    var runs = 5
    var warmupRuns = 1
    /// YAML decode is timed for tables up to this many services (it is far slower than compiling).
    var decodeLimit = 10_000
    /// `nft --check` (the peer) is timed for tables up to this many services.
    var peerLimit = 10_000
    var peerRuns = 3
    /// Seconds one `nft --check` may take before it is killed and reported as a timeout.
    var peerTimeoutSeconds = 120
    /// A network namespace to run the peer in; created and deleted by scripts/bench/compile.
    var namespace: String?
    /// Why the caller could not provide a namespace, printed instead of the peer table.
    var peerSkipReason: String?
    /// Where to write each size's rendered nft text (`services-N.nft`), to rerun nft on it by hand.
    var saveDirectory: String?

    static let usage = """
        usage: turnout-bench-compile [--services N,N,...] [--endpoints E] [--runs R] [--warmup W]
                                     [--decode-all | --decode-limit N] [--peer-limit N] [--peer-runs R]
                                     [--peer-timeout SECONDS] [--netns NAME | --no-peer REASON] [--save-nft DIR]

          --services     service counts to measure, k/m suffixes allowed (default 1000,10000,50000)
          --endpoints    endpoints per service (default 10)
          --runs         timed runs per step; the table shows median and [min] (default 5)
          --warmup       untimed runs per service count before timing (default 1)
          --decode-all   also time YAML decoding above 10000 services (slow)
          --decode-limit largest service count whose YAML decode is timed (default 10000)
          --peer-limit   largest service count checked with `nft --check` (default 10000)
          --peer-runs    timed `nft --check` runs per service count (default 3)
          --peer-timeout seconds before one `nft --check` is killed (default 120)
          --netns        network namespace to run `nft --check` in (needs root; scripts/bench/compile
                         creates turnout-bench-$$ and deletes it on exit)
          --no-peer      skip the nft peer, printing REASON
          --save-nft     write each size's nft text to DIR/services-N.nft (untimed)
        """

    enum ParseError: Error, CustomStringConvertible {
        case help
        case invalid(String)
        var description: String {
            switch self {
            case .help: BenchmarkOptions.usage
            case .invalid(let message): "turnout-bench-compile: \(message)\n\n\(BenchmarkOptions.usage)"
            }
        }
    }

    init() {}

    init(arguments: [String]) throws(ParseError) {
        var remaining = arguments[...]
        func value(for flag: String) throws(ParseError) -> String {
            guard let next = remaining.popFirst() else { throw .invalid("\(flag) needs a value") }
            return next
        }
        func count(_ text: String, for flag: String, minimum: Int = 1) throws(ParseError) -> Int {
            guard let number = BenchmarkOptions.count(text), number >= minimum else {
                throw .invalid("\(flag): '\(text)' is not a whole number ≥ \(minimum)")
            }
            return number
        }
        while let flag = remaining.popFirst() {
            switch flag {
            case "-h", "--help":
                throw .help
            case "--services":
                let text = try value(for: flag)
                var counts: [Int] = []
                for part in text.split(separator: ",") { counts.append(try count(String(part), for: flag)) }
                guard !counts.isEmpty else { throw .invalid("--services needs at least one count") }
                serviceCounts = Array(Set(counts)).sorted()
            case "--endpoints": endpointsPerService = try count(try value(for: flag), for: flag)
            case "--runs": runs = try count(try value(for: flag), for: flag)
            case "--warmup": warmupRuns = try count(try value(for: flag), for: flag, minimum: 0)
            case "--decode-all": decodeLimit = Int.max
            case "--decode-limit": decodeLimit = try count(try value(for: flag), for: flag, minimum: 0)
            case "--peer-limit": peerLimit = try count(try value(for: flag), for: flag, minimum: 0)
            case "--peer-runs": peerRuns = try count(try value(for: flag), for: flag)
            case "--peer-timeout": peerTimeoutSeconds = try count(try value(for: flag), for: flag)
            case "--netns": namespace = try value(for: flag)
            case "--no-peer": peerSkipReason = try value(for: flag)
            case "--save-nft": saveDirectory = try value(for: flag)
            default: throw .invalid("unknown argument '\(flag)'")
            }
        }
        let largest = SyntheticTable.maximumServices(endpointsPerService: endpointsPerService)
        if let tooMany = serviceCounts.first(where: { $0 > largest }) {
            throw .invalid("\(tooMany) services × \(endpointsPerService) endpoints do not fit 10.96.0.0/12 and 10.128.0.0/9 (at most \(largest) services)")
        }
    }

    /// `1000`, `10k`, `1_000`, `1m`.
    static func count(_ text: String) -> Int? { parseCount(text) }
}
