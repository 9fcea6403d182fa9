// turnout-bench-compile: how long compiling and rendering a service table takes, and how it grows.
//
// A benchmark, not a test: it prints a table (scripts/bench/compile runs it in a release build)
// with ratios against peers measured in the same run, and never judges a timing by its exit code.
import Foundation
import TurnoutBenchmarkSupport
import TurnoutModel
import TurnoutRules

let options: BenchmarkOptions
do {
    options = try BenchmarkOptions(arguments: Array(CommandLine.arguments.dropFirst()))
} catch .help {
    print(BenchmarkOptions.usage)
    exit(0)
} catch {
    FileHandle.standardError.write(Data("\(error)\n".utf8))
    exit(2)
}

let peer = NftCheckPeer.make(options: options)
var peerBaseline: PeerMeasurement?
if case .success(let found) = peer, options.serviceCounts.contains(where: { $0 <= options.peerLimit }) {
    progress("peer baseline: nft --check of the empty table in netns \(found.namespace)")
    let empty = NftablesRenderer.render([NftablesServiceCompiler.compile(ServiceTable(services: []))])
    peerBaseline = PeerBenchmark.measure(found, text: empty, runs: options.peerRuns)
}

let results = CompileBenchmark(options: options, peer: try? peer.get()).run()

print(Report(options: options, results: results, peer: peer, peerBaseline: peerBaseline).text)
