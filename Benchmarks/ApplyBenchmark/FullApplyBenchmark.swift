import Foundation
import TurnoutBenchmarkSupport
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules

/// Everything measured for one size of the full apply.
struct FullApplyMeasurement {
    let services: Int
    let endpoints: Int
    var compile = Samples()
    var lower = Samples()
    /// The whole create batch built in memory (TableDelta + libnftnl encoding), no kernel.
    var encode = Samples()
    /// `NetfilterSocket.commit` of that batch into a fresh namespace: sendmsg + the kernel's
    /// transaction + reading the acknowledgements.
    var commit = Samples()
    /// `NftablesBackend.apply(table)` on a fresh instance in a fresh namespace, end to end:
    /// compile, lower, generation and table read, delta, encode, commit, record.
    var backendApply = Samples()
    /// `NftablesBackend.apply` of that table with one weight changed, by an instance with no
    /// record of it: a rebuild (the copy beside it, the swap, the copy deleted), end to end.
    var backendRebuild = Samples()
    var messages = 0
    var batchBytes = 0
    var outcomes: Set<String> = []
    /// `ip netns exec NS nft -f FILE` of `turnout plan`'s text, in a fresh namespace.
    var nftLoad = Samples()
    var nftFailure: String?
    var planBytes = 0
    /// `ip netns exec NS turnout apply -f FILE.yaml --format json`, in a fresh namespace.
    var cliWall = Samples()
    /// The same process's own timer (backend work after the table was loaded).
    var cliReported = Samples()
    var cliMessages: Set<Int> = []
    var cliFailure: String?
    var yamlBytes = 0

    init(services: Int, endpoints: Int) {
        self.services = services
        self.endpoints = endpoints
    }
}

/// Part 1: the whole table into a fresh namespace, library and CLI, with `nft -f` as the peer.
///
/// Sizes are interleaved run by run (run 1 of every size, then run 2, …), so a slow spell of the
/// VM lands on every size alike. Run 0 is an untimed warm-up of the in-process steps.
struct FullApplyBenchmark {
    let options: ApplyOptions
    let namespaces: Namespaces
    let tools: Tools
    let workDirectory: String

    func run() throws -> (results: [FullApplyMeasurement], nftBaseline: Samples?) {
        let tables = options.serviceCounts.map { services in
            progress("full apply: building \(Format.count(services)) services × \(options.endpointsPerService) endpoints")
            return BenchTables.full(services: services, endpoints: options.endpointsPerService)
        }
        var results = options.serviceCounts.map { FullApplyMeasurement(services: $0, endpoints: $0 * options.endpointsPerService) }

        // The files the CLI and nft read: the table as YAML, and `turnout plan`'s text of it.
        var yamlFiles: [String] = [], planFiles: [String?] = []
        for (index, table) in tables.enumerated() {
            let yaml = "\(workDirectory)/full-\(results[index].services).yaml"
            let text = TableYAML.render(table)
            try text.write(toFile: yaml, atomically: true, encoding: .utf8)
            results[index].yamlBytes = text.utf8.count
            yamlFiles.append(yaml)
            if tools.turnout != nil && options.peerRuns > 0 {
                let plan = "\(workDirectory)/full-\(results[index].services).nft"
                progress("full apply: turnout plan of \(Format.count(results[index].services)) services (untimed)")
                try tools.plan(yaml, to: plan)
                results[index].planBytes = (try? FileManager.default.attributesOfItem(atPath: plan)[.size] as? Int) ?? 0
                planFiles.append(plan)
            } else {
                planFiles.append(nil)
            }
        }

        var nftBaseline: Samples?
        if tools.nft != nil && options.peerRuns > 0 {
            let empty = "\(workDirectory)/empty.nft"
            try NftablesRenderer.render([NftablesServiceCompiler.compile(ServiceTable(services: []))])
                .write(toFile: empty, atomically: true, encoding: .utf8)
            var samples = Samples()
            for _ in 0..<options.peerRuns {
                let namespace = try namespaces.create()
                if case .measured(let wall) = tools.nftLoad(empty, in: namespace, namespaces: namespaces) { samples.append(wall) }
                namespaces.retire(namespace)
            }
            nftBaseline = samples.isEmpty ? nil : samples
        }

        progress("full apply: warm-up (compile + lower, untimed)")
        for table in tables { _ = NftablesLowering.lower(NftablesServiceCompiler.compile(table)) }

        for run in 1...max(options.runs, options.peerRuns) {
            for index in tables.indices {
                let size = Format.count(results[index].services)
                if run <= options.runs {
                    progress("full apply: run \(run)/\(options.runs), \(size) services: library (compile, encode, commit, backend apply)")
                    try measureLibrary(tables[index], into: &results[index])
                }
                if run <= options.peerRuns {
                    if let plan = planFiles[index], results[index].nftFailure == nil {
                        progress("full apply: run \(run)/\(options.peerRuns), \(size) services: nft -f of the plan text")
                        let namespace = try namespaces.create()
                        switch tools.nftLoad(plan, in: namespace, namespaces: namespaces) {
                        case .measured(let wall): results[index].nftLoad.append(wall)
                        case .failed(let why): results[index].nftFailure = why
                        }
                        namespaces.retire(namespace)
                    }
                    if tools.turnout != nil, results[index].cliFailure == nil {
                        progress("full apply: run \(run)/\(options.peerRuns), \(size) services: CLI turnout apply -f YAML")
                        let namespace = try namespaces.create()
                        switch tools.cliApply(yamlFiles[index], in: namespace, namespaces: namespaces) {
                        case .success(let cli):
                            results[index].cliWall.append(cli.wall)
                            results[index].cliReported.append(.microseconds(Int64(cli.reportedMilliseconds * 1_000)))
                            results[index].cliMessages.insert(cli.messages)
                        case .failure(let error):
                            results[index].cliFailure = error.description
                        }
                        namespaces.retire(namespace)
                    }
                }
            }
        }
        return (results, nftBaseline)
    }

    /// One timed pass of the library path: compile, lower, encode, raw commit (fresh namespace),
    /// then the backend's own apply (another fresh namespace, fresh instance).
    private func measureLibrary(_ table: ServiceTable, into result: inout FullApplyMeasurement) throws {
        // As NftablesBackend does it: lowering sorts by wire bytes, so the IR is left unsorted.
        let (rules, compileTime) = timed {
            NftablesServiceCompiler.assemble(table.services.map { NftablesServiceCompiler.rules(for: $0) }, elementOrder: .unsorted)
        }
        let (wire, lowerTime) = timed { NftablesLowering.lower(rules) }
        result.compile.append(compileTime)
        result.lower.append(lowerTime)

        let commitSpace = try namespaces.create()
        do {
            let socket = try NetfilterSocket(namespacePath: commitSpace.path)
            let generation = try socket.generation()
            let (batch, encodeTime) = timed { () -> NetlinkBatch in
                let batch = NetlinkBatch(generation: generation)
                TableDelta(installed: nil, desired: wire).append(to: batch)
                return batch
            }
            let (_, commitTime) = try timed { try socket.commit(batch, expectedGeneration: generation) }
            result.encode.append(encodeTime)
            result.commit.append(commitTime)
            result.batchBytes = batch.byteCount
        }
        namespaces.retire(commitSpace)

        let applySpace = try namespaces.create()
        do {
            let backend = try NftablesBackend(namespacePath: applySpace.path, recordDirectory: namespaces.recordDirectory)
            let (report, applyTime) = try timed { try backend.apply(table, options: ServiceCompilerOptions()) }
            result.backendApply.append(applyTime)
            result.messages = report.messages
            result.outcomes.insert(report.outcome.rawValue)
            // One weight changed, applied by an instance with no record: the installed table is
            // not known to be Turnout's own last write, so the apply rebuilds instead of patching.
            var services = table.services
            services[0].endpoints[0].weight += 1
            let changed = ServiceTable(services: services)
            let unrecorded = try NftablesBackend(namespacePath: applySpace.path, recordDirectory: namespaces.recordDirectory + "/unrecorded")
            let (rebuild, rebuildTime) = try timed { try unrecorded.apply(changed, options: ServiceCompilerOptions()) }
            result.backendRebuild.append(rebuildTime)
            result.outcomes.insert(rebuild.outcome.rawValue)
        }
        namespaces.retire(applySpace)
    }
}
