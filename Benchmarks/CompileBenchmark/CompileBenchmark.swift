import Foundation
import TurnoutBenchmarkSupport
import TurnoutModel
import TurnoutRules

/// Runs every step for every table size. Progress goes to stderr so stdout holds only the report.
///
/// Compile+render runs go round-robin over the sizes (run 1 of every size, then run 2, …), so a
/// slow spell of a shared machine lands on all sizes alike instead of skewing one row's ratio.
struct CompileBenchmark {
    let options: BenchmarkOptions
    let peer: NftCheckPeer?

    func run() -> [SizeMeasurement] {
        let tables = options.serviceCounts.map { services in
            progress("building \(Format.count(services)) services × \(options.endpointsPerService) endpoints")
            return SyntheticTable(services: services, endpointsPerService: options.endpointsPerService).table
        }
        var results = options.serviceCounts.map {
            SizeMeasurement(services: $0, endpoints: $0 * options.endpointsPerService)
        }

        if options.warmupRuns > 0 { progress("warm-up: \(options.warmupRuns) untimed run(s) per size") }
        for _ in 0..<options.warmupRuns {
            for table in tables {
                _ = NftablesRenderer.render([NftablesServiceCompiler.compile(table)]).utf8.count
                _ = IptablesRenderer.render(IptablesServiceCompiler.compile(table, family: .ipv4)).utf8.count
            }
        }

        var nftTexts: [String?] = Array(repeating: nil, count: tables.count)
        for run in 1...options.runs {
            progress("nft and iptables compile+render: run \(run) of \(options.runs)")
            for index in tables.indices {
                let text = measureNftables(tables[index], into: &results[index])
                if nftTexts[index] == nil { nftTexts[index] = text }
                measureIptables(tables[index], into: &results[index])
            }
        }

        for index in tables.indices {
            let services = results[index].services
            if let directory = options.saveDirectory, let text = nftTexts[index] {
                save(text, to: "\(directory)/services-\(services).nft")
            }
            if services <= options.decodeLimit {
                let yaml = TableYAML.render(tables[index])
                results[index].yamlBytes = yaml.utf8.count
                progress("YAML decode of \(Format.count(services)) services (\(yaml.utf8.count / 1024) KiB): 1 checked + \(options.runs) runs")
                results[index].yamlDecode = measureDecode(yaml, of: tables[index])
            }
            if let peer, services <= options.peerLimit, let text = nftTexts[index] {
                progress("peer: \(options.peerRuns) × nft --check of the \(Format.count(services))-service text (\(text.utf8.count / 1024) KiB)")
                results[index].peer = PeerBenchmark.measure(peer, text: text, runs: options.peerRuns)
            }
            nftTexts[index] = nil
        }
        return results
    }

    /// One timed compile + render; returns the text so the peer can check exactly this output.
    private func measureNftables(_ table: ServiceTable, into result: inout SizeMeasurement) -> String {
        let clock = ContinuousClock()
        let start = clock.now
        let rules = NftablesServiceCompiler.compile(table)
        let compiled = clock.now
        let text = NftablesRenderer.render([rules])
        let rendered = clock.now
        result.nftCompile.append(compiled - start)
        result.nftRender.append(rendered - compiled)
        result.nftTotal.append(rendered - start)
        precondition(result.nftBytes == 0 || text.utf8.count == result.nftBytes, "the nft output changed between runs")
        result.nftBytes = text.utf8.count
        return text
    }

    private func measureIptables(_ table: ServiceTable, into result: inout SizeMeasurement) {
        let (text, duration) = timed {
            IptablesRenderer.render(IptablesServiceCompiler.compile(table, family: .ipv4))
        }
        result.iptablesTotal.append(duration)
        result.iptablesBytes = text.utf8.count
    }

    /// Checks that decoding the YAML gives back the table (untimed; also the warm-up), then times
    /// `TableDecoder.decode`.
    private func measureDecode(_ yaml: String, of table: ServiceTable) -> Samples {
        do {
            let decoded = try TableDecoder.decode(yaml, name: "bench.yaml")
            precondition(decoded == table, "the generated YAML does not decode to the table it was rendered from")
        } catch {
            preconditionFailure("the generated YAML does not decode: \(error)")
        }
        var samples = Samples()
        for _ in 0..<options.runs {
            let (_, duration) = timed { try? TableDecoder.decode(yaml, name: "bench.yaml") }
            samples.append(duration)
        }
        return samples
    }

    private func save(_ text: String, to path: String) {
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            progress("wrote \(path)")
        } catch {
            progress("cannot write \(path): \(error)")
        }
    }
}

func progress(_ line: String) {
    FileHandle.standardError.write(Data(("turnout-bench-compile: " + line + "\n").utf8))
}
