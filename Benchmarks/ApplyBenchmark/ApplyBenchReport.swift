import Foundation
import TurnoutBenchmarkSupport

/// The printed result, Markdown: a header naming the build, machine and peers, then one
/// section per part. Timings are reported, never judged by the exit status.
struct ApplyBenchReport {
    let options: ApplyOptions
    let nftVersion: String?
    let iptablesVersion: String?
    var full: (results: [FullApplyMeasurement], nftBaseline: Samples?)?
    var changes: [ChangeMeasurement]?
    var latency: (configs: [LatencyConfig], tables: LatencyTables)?
    var skipped: [String] = []
    /// `/proc/loadavg`'s first three fields: other work on this shared machine shows up here.
    let loadAtStart = ApplyBenchReport.loadAverage

    static var loadAverage: String {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "?" }
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    static let fullGoalServices = 10_000
    static let fullGoalMilliseconds = 1_000.0
    static let changeGoalMilliseconds = 20.0
    static let latencyGoalRatio = 1.05

    var text: String {
        var lines = [
            "# turnout-bench-apply",
            "",
            "\(Machine.build), \(Machine.cores), kernel \(Machine.kernel ?? "?"); peers: \(nftVersion ?? "nft missing"), \(iptablesVersion ?? "iptables missing").",
            "Tables as scripts/bench/compile builds them: N services × \(options.endpointsPerService) endpoints, 1 TCP port each, every 10th a 90/10 canary, every 25th one endpoint drained.",
            "Times in ms, median [min]; every kernel step runs in a network namespace this run created. Load average at start \(loadAtStart), at end \(Self.loadAverage).",
        ]
        if let full { lines += [""] + fullSection(full.results, baseline: full.nftBaseline) }
        if let changes { lines += [""] + changeSection(changes) }
        if let latency { lines += [""] + latencySection(latency.configs, tables: latency.tables) }
        for reason in skipped { lines.append("skipped: \(reason)") }
        return lines.joined(separator: "\n")
    }

    // MARK: - 1. full apply

    private func fullSection(_ results: [FullApplyMeasurement], baseline: Samples?) -> [String] {
        var table = TextTable(headers: ["services", "endpoints", "compile", "lower", "encode", "kernel commit", "apply (backend)", "rebuild (backend)",
                                        "messages", "batch MiB", "`nft -f` plan", "nft ÷ apply", "CLI wall (YAML)", "CLI own timer", "CLI outside apply"])
        var notes: [String] = []
        for result in results {
            if !result.outcomes.isEmpty && result.outcomes != ["created", "rebuilt"] {
                notes.append("the \(Format.count(result.services))-service applies ended \(result.outcomes.sorted().joined(separator: ", ")), expected created and rebuilt")
            }
            let nft: (String, String)
            if let failure = result.nftFailure {
                nft = ("failed", "-")
                notes.append("nft -f of the \(Format.count(result.services))-service plan failed: \(failure)")
            } else if result.nftLoad.isEmpty || result.backendApply.isEmpty {
                nft = ("-", "-")
            } else {
                nft = (Format.milliseconds(result.nftLoad), Format.ratio(result.nftLoad.medianMilliseconds / result.backendApply.medianMilliseconds))
            }
            var cli = ("-", "-", "-")
            if let failure = result.cliFailure {
                cli = ("failed", "-", "-")
                notes.append("CLI apply of the \(Format.count(result.services))-service YAML failed: \(failure)")
            } else if !result.cliWall.isEmpty {
                cli = (Format.milliseconds(result.cliWall), Format.milliseconds(result.cliReported),
                       Format.number(result.cliWall.medianMilliseconds - result.cliReported.medianMilliseconds))
            }
            table.append([
                Format.count(result.services), Format.count(result.endpoints),
                cell(result.compile), cell(result.lower), cell(result.encode), cell(result.commit), cell(result.backendApply), cell(result.backendRebuild),
                result.messages == 0 ? "-" : Format.count(result.messages), Format.mebibytes(result.batchBytes),
                nft.0, nft.1, cli.0, cli.1, cli.2,
            ])
        }
        var lines = [
            "## 1. Full apply into a fresh namespace (nft backend over netlink)",
            "",
            "Library steps \(options.runs) runs each, sizes interleaved run by run; `nft -f` and CLI \(options.peerRuns) runs, each in a fresh namespace.",
            "",
            table.markdown(leftAligned: []),
            "",
            "- compile, lower: `NftablesServiceCompiler.rules(for:)` of every service + `assemble(elementOrder: .unsorted)`, then `NftablesLowering.lower` (sets on all cores), as `NftablesBackend` does it (in process).",
            "- encode: the create batch built in memory (`TableDelta` + libnftnl); kernel commit: `NetfilterSocket.commit` of that batch in a fresh namespace (sendmsg, the kernel's transaction, the acknowledgements).",
            "- apply (backend): `NftablesBackend.apply(table)`, fresh instance in a fresh namespace, end to end: compile + lower + generation/table read + delta + encode + commit + record. messages: its batch, begin/end included. rebuild (backend): the table with one weight changed, applied in that namespace by a fresh instance without a record of it, so it rebuilds: compile + lower + table read + delta, then three transactions (a copy `inet turnout-bridge`, the swap, the copy deleted).",
            "- `nft -f` plan: wall clock of `ip netns exec NS nft -f FILE` of `turnout plan`'s text (\(results.map { Format.mebibytes($0.planBytes) + " MiB" }.joined(separator: ", "))), process start included"
                + (baseline.map { "; the empty table loads in \(Format.milliseconds($0)) ms (start-up + one round trip)" } ?? "") + ".",
            "- CLI wall: `ip netns exec NS turnout apply -f FILE.yaml --format json` (\(results.map { Format.mebibytes($0.yamlBytes) + " MiB" }.joined(separator: ", ")) of YAML); CLI own timer: the `milliseconds` it reports (backend work after the table was loaded); outside apply = wall − own timer: process start, YAML decode and validation.",
        ]
        for result in results where !result.compile.isEmpty {
            let inProcess = result.compile.medianMilliseconds + result.lower.medianMilliseconds
            let kernelSide = result.encode.medianMilliseconds + result.commit.medianMilliseconds
            lines.append("- split at \(Format.count(result.services)) services (sums of medians): compile + lower \(Format.number(inProcess)) ms, encode + kernel commit \(Format.number(kernelSide)) ms (kernel commit alone \(Format.number(result.commit.medianMilliseconds)) ms).")
        }
        if let goal = results.first(where: { $0.services == Self.fullGoalServices }), !goal.backendApply.isEmpty {
            let median = goal.backendApply.medianMilliseconds
            lines.append("- goal: 10,000 × \(options.endpointsPerService) apply ≤ 1 s: median \(Format.number(median)) ms, \(median <= Self.fullGoalMilliseconds ? "within" : "OVER") the goal"
                + (goal.cliWall.isEmpty ? "." : "; the CLI end to end takes \(Format.number(goal.cliWall.medianMilliseconds)) ms, most of it outside apply (YAML)."))
        }
        return lines + notes.map { "- \($0)" }
    }

    // MARK: - 2. one-endpoint change

    private func changeSection(_ results: [ChangeMeasurement]) -> [String] {
        var endToEnd = TextTable(headers: ["services", "change", "outcome", "messages", "daemon apply", "daemon, change back",
                                           "its deferred retire", "the change back's", "fresh instance", "fresh, change back", "CLI wall (YAML)", "CLI own timer"])
        var parts = TextTable(headers: ["services", "change", "compile", "lower", "delta", "encode", "digest", "kernel commit", "read-back (fresh only)"])
        var notes: [String] = []
        for result in results {
            let messages = Set([result.daemonMessages, result.freshMessages, result.cliMessages].flatMap { $0 })
            var cli = ("-", "-")
            if let failure = result.cliFailure {
                cli = ("failed", "-")
                notes.append("CLI, \(Format.count(result.services)) services, \(result.variant.rawValue): \(failure)")
            } else if !result.cliWall.isEmpty {
                cli = (Format.milliseconds(result.cliWall), Format.milliseconds(result.cliReported))
            }
            endToEnd.append([
                Format.count(result.services), result.variant.rawValue, result.outcomes.sorted().joined(separator: ", "),
                messages.sorted().map(String.init).joined(separator: "/"),
                cell(result.daemon), cell(result.daemonRevert), cell(result.daemonSettle), cell(result.daemonRevertSettle),
                cell(result.fresh), cell(result.freshRevert), cli.0, cli.1,
            ])
            parts.append([
                Format.count(result.services), result.variant.rawValue,
                cell(result.compile), cell(result.lower), cell(result.delta), cell(result.encode), cell(result.digest),
                cell(result.commit), cell(result.readBack),
            ])
        }
        var lines = [
            "## 2. One endpoint's weight changes on an installed table",
            "",
            "Library \(options.changeRuns) runs, CLI \(options.cliChangeRuns), sizes and variants interleaved; every change is followed by the change back (also timed).",
        ]
        for variant in ChangeScenario.Variant.allCases {
            if let example = results.first(where: { $0.variant == variant }) {
                lines.append("- \(variant.rawValue): \(example.description); sends: \(example.changes.joined(separator: "; "))")
            }
        }
        lines += [
            "",
            endToEnd.markdown(leftAligned: [1, 2]),
            "",
            "- daemon apply: `apply(table)` on one long-lived `NftablesBackend` (no read-back while the ruleset generation is its own), retires deferred as `apply --watch` does: it returns once traffic follows the change; change back: the next apply, back to the base table.",
            "- its deferred retire, the change back's: `settle()` after the change and after the change back (one RCU grace period, then the retire's commit; about 0 when there is no retire; its messages are counted in the messages column). It is off the change's path, but the kernel holds the old keys until it is done. The CLI's path (fresh instance) waits for it inside its apply.",
            "- fresh instance: the CLI's path in process: new instance (socket opened in the namespace) + `apply(table)`, which reads the whole table back and checks the digest record.",
            "- CLI wall: `ip netns exec NS turnout apply -f FILE.yaml --format json`; own timer: its reported `milliseconds`.",
            "",
            "Where a whole-table apply's time goes (a fresh instance's steps before its read-back, each timed on its own, same change; the daemon path compiles, lowers and diffs only the changed service):",
            "",
            parts.markdown(leftAligned: [1]),
            "",
            "- delta: `TableDelta(installed:desired:)` of the two whole tables; encode: its messages into a batch; digest: `WireDigest` of the desired table (the record); kernel commit: `NetfilterSocket.commit` of the delta batch alone; read-back: `readInstalled()` of the whole table by a fresh instance.",
        ]
        for variant in ChangeScenario.Variant.allCases {
            let rows = results.filter { $0.variant == variant }
            let counts = rows.map { Set([$0.daemonMessages, $0.freshMessages, $0.cliMessages].flatMap { $0 }) }
            let sizes = rows.map { Format.count($0.services) }.joined(separator: " and ")
            if rows.count > 1 {
                lines.append("- messages, \(variant.rawValue): \(counts.allSatisfy { $0 == counts[0] } && counts[0].count == 1 ? "the same at \(sizes) (\(counts[0].first!))" : "DIFFER between \(sizes): \(counts.map { $0.sorted() })")")
            }
        }
        for result in results where result.services == Self.fullGoalServices && !result.daemon.isEmpty {
            let median = result.daemon.medianMilliseconds
            let total = result.daemon.medianMilliseconds + result.daemonSettle.medianMilliseconds
            lines.append("- goal: daemon apply of a one-endpoint change at 10,000 services ≤ 20 ms (\(result.variant.rawValue)): median \(Format.number(median)) ms until traffic follows it, \(median <= Self.changeGoalMilliseconds ? "within" : "OVER") the goal (the change back: \(Format.number(result.daemonRevert.medianMilliseconds)) ms, \(result.daemonRevert.medianMilliseconds <= Self.changeGoalMilliseconds ? "within" : "OVER")); the delta's kernel commit alone \(Format.number(result.commit.medianMilliseconds)) ms; with its deferred retire \(Format.number(total)) ms (sum of medians).")
        }
        let peers = results.filter { $0.variant == .sameModulus && (!$0.nftDelete.isEmpty || $0.nftFailure != nil) }
        if !peers.isEmpty {
            var peerTable = TextTable(headers: ["services", "pick elements", "Turnout: kernel commit of the delta", "`nft -f` delete old", "`nft -f` add new",
                                                "`nft -f` both (change back)", "nft both ÷ Turnout commit"])
            for result in peers {
                if let failure = result.nftFailure { notes.append("nft peer, \(Format.count(result.services)) services: \(failure)") }
                peerTable.append([
                    Format.count(result.services), String(result.pickElements), cell(result.commit),
                    cell(result.nftDelete), cell(result.nftAdd), cell(result.nftBoth),
                    result.nftBoth.isEmpty || result.commit.isEmpty ? "-" : Format.ratio(result.nftBoth.medianMilliseconds / result.commit.medianMilliseconds),
                ])
            }
            lines += [
                "",
                "Peer, same run, same kernel: nftables' own tool sending the same-modulus change's elements of its pick map `endpoint-picks4-mod19` (a hash map, one element per drawn value), as text, in the namespace holding the base table. Wall clock of `ip netns exec NS nft -f FILE`, process start included:",
                "",
                peerTable.markdown(leftAligned: []),
            ]
        }
        return lines + notes.map { "- \($0)" }
    }

    // MARK: - 3. connect latency

    private func latencySection(_ configs: [LatencyConfig], tables: LatencyTables) -> [String] {
        let small = { (backend: LatencyConfig.Backend) in configs.first { $0.backend == backend && $0.services == options.latencySmall } }
        var table = TextTable(headers: ["client", "rules the SYN walks", "install", "p50 µs", "p99 µs", "p50 range", "p50 ÷ small", "p99 ÷ small", "failures"])
        var notes: [String] = []
        var verdicts: [String] = []
        for config in configs {
            if let failure = config.failure { notes.append("\(config.label): \(failure)") }
            let failed = config.runs.reduce(0) { $0 + $1.failures }
            if failed > 0 {
                notes.append("\(config.label): \(failed) connects failed (first error: \(config.runs.first { $0.failures > 0 }?.error.replacing("_", with: " ") ?? "?"))")
            }
            let p50s = config.runs.map(\.p50), p99s = config.runs.map(\.p99)
            var ratio50 = "-", ratio99 = "-"
            if config.services == options.latencyLarge, let reference = small(config.backend), !reference.runs.isEmpty, !config.runs.isEmpty {
                let paired50 = Self.pairedRatios(config.runs.map(\.p50), reference.runs.map(\.p50))
                let paired99 = Self.pairedRatios(config.runs.map(\.p99), reference.runs.map(\.p99))
                ratio50 = "\(Format.ratio(Self.median(paired50))) [\(Format.ratio(paired50.min()!))–\(Format.ratio(paired50.max()!))]"
                ratio99 = "\(Format.ratio(Self.median(paired99))) [\(Format.ratio(paired99.min()!))–\(Format.ratio(paired99.max()!))]"
                if config.backend == .nft && config.endpointsPerOther == options.endpointsPerService {
                    let value = Self.median(paired50)
                    verdicts.append("- goal: nft p50 ratio \(Format.count(options.latencyLarge)) ÷ \(Format.count(options.latencySmall)) services ≤ \(Self.latencyGoalRatio): \(Format.ratio(value)), \(value <= Self.latencyGoalRatio ? "within" : "OVER") the goal.")
                }
            }
            let walk: String
            switch config.backend {
            case .none: walk = "none (no rules)"
            case .nft: walk = "2 map lookups (+ no-endpoint, hairpin set lookups)"
            case .iptables: walk = config.walk.map { "rule \(Format.count($0.position)) of \(Format.count($0.of)) in TURNOUT-SERVICES" } ?? "?"
            }
            let install = config.installTime.map { "\(Format.number($0.milliseconds)) ms" } ?? "-"
            table.append([
                config.label, walk, install,
                p50s.isEmpty ? "-" : Format.number(Self.median(p50s)),
                p99s.isEmpty ? "-" : Format.number(Self.median(p99s)),
                p50s.isEmpty ? "-" : "\(Format.number(p50s.min()!))–\(Format.number(p50s.max()!))",
                ratio50, ratio99,
                String(config.runs.reduce(0) { $0 + $1.failures }),
            ])
        }
        // The same services with 10× fewer pick elements: isolates what the elements cost.
        let nftLarge = configs.first { $0.backend == .nft && $0.services == options.latencyLarge && $0.endpointsPerOther == options.endpointsPerService }
        if let nftLarge, let fewer = configs.first(where: { $0.backend == .nft && $0.services == options.latencyLarge && $0.endpointsPerOther != options.endpointsPerService }),
           !nftLarge.runs.isEmpty, !fewer.runs.isEmpty {
            let paired = Self.pairedRatios(nftLarge.runs.map(\.p50), fewer.runs.map(\.p50))
            verdicts.append("- nft \(Format.count(options.latencyLarge)) × \(options.endpointsPerService) ÷ \(Format.count(options.latencyLarge)) × \(fewer.endpointsPerOther) (same services and VIP map, \(options.endpointsPerService / max(fewer.endpointsPerOther, 1))× the elements in the pick map), p50 paired by round: \(Format.ratio(Self.median(paired))) [\(Format.ratio(paired.min()!))–\(Format.ratio(paired.max()!))].")
        }
        var perRun = TextTable(headers: ["client"] + (1...options.rounds).map { "r\($0)" })
        for config in configs where !config.runs.isEmpty {
            perRun.append([config.label] + (0..<options.rounds).map { $0 < config.runs.count ? Format.number(config.runs[$0].p50) : "-" })
        }
        var lines = [
            "## 3. Connect latency to one VIP: small vs large table installed",
            "",
            "\(options.rounds) rounds. In a round one compiled Swift loop makes \(Format.count(options.connects)) timed connects (after \(options.warmupConnects) untimed) from every client namespace, interleaved in blocks of \(options.block)",
            "(A B C …, then … C B A), one connect at a time: socket, bind to a source address no earlier round used, `connect` timed alone with CLOCK_MONOTONIC, close with RST.",
            "One client namespace per row, each joined to the one endpoint namespace by its own veth pair; the server there accepts, and closes when the client has.",
            "Target: \(tables.targetName) \(LatencyTables.targetVIP):\(LatencyTables.targetPort) → \(tables.targetEndpoints) endpoints 10.1.0.1–\(tables.targetEndpoints):\(LatencyTables.endpointPort), the same service in every table; the others have their own VIPs and endpoints (rules only).",
            "",
            table.markdown(leftAligned: [0, 1]),
            "",
            "- p50/p99: medians over rounds of each round's percentile; p50 range: the lowest and highest round's p50.",
            "- ÷ small: the large table's percentile divided by the small table's of the same round (same backend), median [min–max] over rounds.",
        ]
        if options.iptablesEndpoints != options.endpointsPerService {
            lines.append("- The large iptables table has \(options.iptablesEndpoints) endpoint(s) per other service: kube-proxy's layout needs a chain per service and per endpoint, \(Format.count(options.latencyLarge * (options.endpointsPerService + 1))) chains at \(Format.count(options.latencyLarge)) × \(options.endpointsPerService), and iptables-restore time grows faster than linearly with chains (10,000 × 2 took about 2 minutes on this VM, 10,000 × 1 about 15 s). The first packet's walk does not depend on the other services' endpoints; the nft table of the same shape is measured beside it.")
        }
        lines += verdicts + notes.map { "- \($0)" }
        lines += ["", "p50 of every round, µs:", "", perRun.markdown()]
        return lines
    }

    // MARK: - helpers

    private func cell(_ samples: Samples) -> String { samples.isEmpty ? "-" : Format.milliseconds(samples) }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// Round-by-round ratios `large[i] / small[i]`, over the rounds both have.
    static func pairedRatios(_ large: [Double], _ small: [Double]) -> [Double] {
        zip(large, small).map { $0 / $1 }
    }
}
