import Foundation
import TurnoutBenchmarkSupport

/// The printed result: a header naming the build and machine, the main table, the peer table.
/// Timings are reported, never judged: the process exits 0 whatever they are.
struct Report {
    let options: BenchmarkOptions
    let results: [SizeMeasurement]
    let peer: Result<NftCheckPeer, NftCheckPeer.SkipReason>
    /// `nft --check` of the table with no services: process start-up plus an empty transaction.
    let peerBaseline: PeerMeasurement?

    static let goalServices = 10_000
    static let goalMilliseconds = 1_000.0

    var text: String {
        var lines = header
        lines.append("")
        lines.append(mainTable.text)
        lines.append("")
        lines += legend
        lines.append("")
        lines += peerSection
        return lines.joined(separator: "\n")
    }

    private var header: [String] {
        [
            "turnout-bench-compile: \(Machine.build), \(Machine.cores), single-threaded",
            "tables: N services × \(options.endpointsPerService) endpoints, 1 TCP port each, VIPs in 10.96.0.0/12, endpoints in 10.128.0.0/9,",
            "        weight 1 except every 10th service a 90/10 canary and every 25th one endpoint drained (weight 0)",
            "times: milliseconds, median [min] of \(options.runs) runs after \(options.warmupRuns) warm-up, sizes interleaved run by run, ContinuousClock",
        ]
    }

    private var mainTable: TextTable {
        var table = TextTable(headers: ["services", "endpoints", "nft compile", "nft render", "nft total",
                                        "µs/svc", "×lin", "nft MiB", "iptables total", "ipt/nft", "YAML decode"])
        let reference = results.first
        for result in results {
            table.append([
                Format.count(result.services),
                Format.count(result.endpoints),
                Format.milliseconds(result.nftCompile),
                Format.milliseconds(result.nftRender),
                Format.milliseconds(result.nftTotal),
                Format.number(result.microsecondsPerService),
                reference.map {
                    "\(Format.ratio(result.microsecondsPerService / $0.microsecondsPerService)) [\(Format.ratio(result.minimumMicrosecondsPerService / $0.minimumMicrosecondsPerService))]"
                } ?? "-",
                Format.mebibytes(result.nftBytes),
                Format.milliseconds(result.iptablesTotal),
                Format.ratio(result.iptablesTotal.medianMilliseconds / result.nftTotal.medianMilliseconds),
                result.yamlDecode.map(Format.milliseconds) ?? "skipped",
            ])
        }
        return table
    }

    private var legend: [String] {
        let smallest = results.first.map { Format.count($0.services) } ?? "-"
        var lines = [
            "nft total       NftablesServiceCompiler.compile + NftablesRenderer.render to nft text, timed as one step",
            "µs/svc, ×lin    median nft total per service; ×lin = µs/svc over the \(smallest)-service row's, of medians [of mins];",
            "                ≈1.00× means linear growth (on a shared VM, runs can be 2× apart: the [min] ratio is the steadier one)",
            "iptables total  IptablesServiceCompiler.compile(.ipv4) + IptablesRenderer.render; ipt/nft = medians' ratio",
        ]
        let decoded = results.filter { $0.yamlDecode != nil }
        if decoded.isEmpty {
            lines.append("YAML decode     skipped for every size (--decode-limit \(options.decodeLimit))")
        } else {
            let sizes = decoded.map { "\(Format.mebibytes($0.yamlBytes)) MiB" }.joined(separator: ", ")
            let skipped = decoded.count < results.count ? "; skipped above \(Format.count(options.decodeLimit)) services (--decode-all)" : ""
            lines.append("YAML decode     TableDecoder.decode (parse + validate) of the same table as YAML text (\(sizes))\(skipped)")
        }
        if let goal = results.first(where: { $0.services == Report.goalServices && $0.endpoints == Report.goalServices * 10 }) {
            let median = goal.nftTotal.medianMilliseconds
            let verdict = median < Report.goalMilliseconds ? "within" : "OVER"
            lines.append("goal (issue)    10,000 × 10 nft compile+render < 1 s: median \(Format.number(median)) ms, \(verdict) the goal")
        }
        return lines
    }

    private var peerSection: [String] {
        let peer: NftCheckPeer
        switch self.peer {
        case .failure(let reason):
            return ["peer (nft --check of the same text): skipped: \(reason)"]
        case .success(let found):
            peer = found
        }
        let measured = results.filter { $0.peer != nil }
        guard !measured.isEmpty else {
            return ["peer (nft --check of the same text): no size ≤ --peer-limit \(Format.count(options.peerLimit)) services was measured"]
        }
        var lines = [
            "peer, same run: `nft --check -f FILE` (\(peer.version)) of the text Turnout rendered, in netns \(peer.namespace);",
            "      wall clock incl. process start, median [min] of \(options.peerRuns) runs; nft/turnout = nft --check ÷ Turnout's nft total",
            "",
        ]
        var table = TextTable(headers: ["services", "nft MiB", "turnout nft total", "nft --check", "nft/turnout"])
        var failures: [String] = []
        for result in measured {
            switch result.peer {
            case .measured(let samples)?:
                table.append([Format.count(result.services), Format.mebibytes(result.nftBytes), Format.milliseconds(result.nftTotal),
                              Format.milliseconds(samples), Format.ratio(samples.medianMilliseconds / result.nftTotal.medianMilliseconds)])
            case .failed(let message)?:
                table.append([Format.count(result.services), Format.mebibytes(result.nftBytes), Format.milliseconds(result.nftTotal),
                              "failed", "-"])
                failures.append("nft --check of the \(Format.count(result.services))-service text failed: \(message)")
            case nil:
                break
            }
        }
        lines.append(table.text)
        lines += failures
        switch peerBaseline {
        case .measured(let samples)?:
            lines.append("baseline: nft --check of the empty Turnout table (no services) \(Format.milliseconds(samples)) ms: process start-up + netlink round trip")
        case .failed(let message)?:
            lines.append("baseline: nft --check of the empty Turnout table failed: \(message)")
        case nil:
            break
        }
        return lines
    }
}
