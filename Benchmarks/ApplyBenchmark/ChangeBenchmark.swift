import Foundation
import TurnoutBenchmarkSupport
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules

/// Everything measured for one size and one variant of the one-endpoint change.
struct ChangeMeasurement {
    let services: Int
    let variant: ChangeScenario.Variant
    let description: String

    /// Daemon path: `apply(table)` on a long-lived instance (no read-back while the ruleset
    /// generation is its own), which returns once traffic follows the change (its retire
    /// deferred, as `apply --watch` does). `revert` is the change back, the same size of change.
    /// `settle` is the deferred retire that follows the change (grace period + commit; none
    /// when the change has no retire), off the change's path; `revertSettle` the change back's.
    var daemon = Samples()
    var daemonRevert = Samples()
    var daemonSettle = Samples()
    var daemonRevertSettle = Samples()
    /// CLI path in-process: a fresh instance per apply (opens the socket, reads the table back,
    /// checks the digest record), instance creation included.
    var fresh = Samples()
    var freshRevert = Samples()
    /// The CLI binary: `ip netns exec NS turnout apply -f FILE.yaml`, and its own timer.
    var cliWall = Samples()
    var cliReported = Samples()
    var cliFailure: String?
    /// The peer (same-modulus change only): nft's own tool sending the service's pick elements
    /// as text, in a namespace holding the base table: deleting the old ones, adding the new
    /// ones, and the change back (deletes and adds in one transaction).
    var nftDelete = Samples()
    var nftAdd = Samples()
    var nftBoth = Samples()
    var nftFailure: String?
    var pickElements = 0

    // Where the time goes, each measured on its own.
    var compile = Samples()
    var lower = Samples()
    var delta = Samples()
    var encode = Samples()
    var digest = Samples()
    /// `NetfilterSocket.commit` of the delta batch alone (a namespace holding the base table).
    var commit = Samples()
    /// `readInstalled()` of the whole table by a fresh instance: what the CLI path adds.
    var readBack = Samples()

    var daemonMessages: Set<Int> = []
    var freshMessages: Set<Int> = []
    var cliMessages: Set<Int> = []
    var outcomes: Set<String> = []
    var changes: [String] = []

    init(services: Int, variant: ChangeScenario.Variant, description: String) {
        self.services = services
        self.variant = variant
        self.description = description
    }
}

/// Part 2: one endpoint's weight changes on a big installed table, through the daemon path,
/// the CLI path in-process and the CLI binary.
///
/// Each size gets four namespaces, each holding the base table: one for the long-lived
/// instance, one for fresh instances, one for raw commits, one for the CLI. Every change is
/// followed by the change back, so each timed apply starts from the base table.
struct ChangeBenchmark {
    let options: ApplyOptions
    let namespaces: Namespaces
    let tools: Tools
    let workDirectory: String

    private struct Setup {
        let scenario: ChangeScenario
        let baseWire: WireTable
        var wires: [ChangeScenario.Variant: WireTable]
        let daemon: NftablesBackend
        let freshSpace: Namespace
        let rawSpace: Namespace
        let rawSocket: NetfilterSocket
        let nftPeer: (deleteBase: String, addChanged: String, back: String, elements: Int)?
        let cliSpace: Namespace?
        var files: [String: String]
    }

    func run() throws -> [ChangeMeasurement] {
        var setups: [Setup] = []
        var results: [ChangeMeasurement] = []
        for services in options.serviceCounts {
            progress("one-endpoint change: setting up \(Format.count(services)) services (4 namespaces holding the base table)")
            let setup = try prepare(services: services)
            setups.append(setup)
            for variant in ChangeScenario.Variant.allCases {
                results.append(ChangeMeasurement(services: services, variant: variant,
                                                 description: setup.scenario.descriptions[variant]!))
            }
        }
        let options = ServiceCompilerOptions()

        for run in 1...max(self.options.changeRuns, self.options.cliChangeRuns) {
            for (setupIndex, setup) in setups.enumerated() {
                for (variantIndex, variant) in ChangeScenario.Variant.allCases.enumerated() {
                    let index = setupIndex * ChangeScenario.Variant.allCases.count + variantIndex
                    let table = setup.scenario.changed[variant]!
                    let base = setup.scenario.base
                    let wire = setup.wires[variant]!
                    if run <= self.options.changeRuns {
                        progress("one-endpoint change: run \(run)/\(self.options.changeRuns), \(Format.count(setup.scenario.services)) services, \(variant.rawValue): library")
                        // Daemon path, end to end, then without compile and lower.
                        let (report, daemonTime) = try timed { try setup.daemon.apply(table, options: options) }
                        let (retired, settleTime) = try timed { try setup.daemon.settle() }
                        let (_, revertTime) = try timed { try setup.daemon.apply(base, options: options) }
                        let (_, revertSettleTime) = try timed { try setup.daemon.settle() }
                        results[index].daemon.append(daemonTime)
                        results[index].daemonRevert.append(revertTime)
                        results[index].daemonSettle.append(settleTime)
                        results[index].daemonRevertSettle.append(revertSettleTime)
                        results[index].daemonMessages.insert(report.messages + retired)
                        results[index].outcomes.insert(report.outcome.rawValue)
                        results[index].changes = report.changes

                        // CLI path in-process: a fresh instance for each apply.
                        let (freshReport, freshTime) = try timed { () throws -> ApplyReport in
                            let backend = try NftablesBackend(namespacePath: setup.freshSpace.path, recordDirectory: namespaces.recordDirectory)
                            return try backend.apply(table, options: options)
                        }
                        let (_, freshRevertTime) = try timed { () throws -> ApplyReport in
                            let backend = try NftablesBackend(namespacePath: setup.freshSpace.path, recordDirectory: namespaces.recordDirectory)
                            return try backend.apply(base, options: options)
                        }
                        results[index].fresh.append(freshTime)
                        results[index].freshRevert.append(freshRevertTime)
                        results[index].freshMessages.insert(freshReport.messages)
                        results[index].outcomes.insert(freshReport.outcome.rawValue)
                        let reader = try NftablesBackend(namespacePath: setup.freshSpace.path, recordDirectory: namespaces.recordDirectory)
                        let (_, readTime) = try timed { try reader.readInstalled() }
                        results[index].readBack.append(readTime)

                        // The kernel's share: the same delta committed on its own.
                        let generation = try setup.rawSocket.generation()
                        let batch = NetlinkBatch(generation: generation)
                        TableDelta(installed: setup.baseWire, desired: wire).append(to: batch)
                        let (_, commitTime) = try timed { try setup.rawSocket.commit(batch, expectedGeneration: generation) }
                        results[index].commit.append(commitTime)
                        let back = NetlinkBatch(generation: generation &+ 1)
                        TableDelta(installed: wire, desired: setup.baseWire).append(to: back)
                        try setup.rawSocket.commit(back, expectedGeneration: generation &+ 1)

                        // The peer: the same element changes through nft, in the same namespace.
                        if variant == .sameModulus, results[index].nftFailure == nil, let peer = setup.nftPeer {
                            for (file, keyPath) in [(peer.deleteBase, \ChangeMeasurement.nftDelete), (peer.addChanged, \.nftAdd), (peer.back, \.nftBoth)] {
                                switch tools.nftLoad(file, in: setup.rawSpace, namespaces: namespaces) {
                                case .measured(let wall): results[index][keyPath: keyPath].append(wall)
                                case .failed(let why): results[index].nftFailure = "nft -f \((file as NSString).lastPathComponent): \(why)"
                                }
                                if results[index].nftFailure != nil { break }
                            }
                            results[index].pickElements = peer.elements
                        }

                        // The in-process steps of a whole-table apply (a fresh instance's,
                        // before its read-back), one by one; the daemon path compiles and
                        // lowers only the changed service instead.
                        let (rules, compileTime) = timed { NftablesServiceCompiler.compile(table, options: options) }
                        let (lowered, lowerTime) = timed { NftablesLowering.lower(rules) }
                        let (delta, deltaTime) = timed { TableDelta(installed: setup.baseWire, desired: lowered) }
                        let (_, encodeTime) = timed { () -> Int in
                            let batch = NetlinkBatch(generation: 0)
                            delta.append(to: batch)
                            return batch.messageCount
                        }
                        let (_, digestTime) = timed { WireDigest(lowered).description }
                        results[index].compile.append(compileTime)
                        results[index].lower.append(lowerTime)
                        results[index].delta.append(deltaTime)
                        results[index].encode.append(encodeTime)
                        results[index].digest.append(digestTime)
                    }
                    if run <= self.options.cliChangeRuns, let cliSpace = setup.cliSpace, results[index].cliFailure == nil {
                        progress("one-endpoint change: run \(run)/\(self.options.cliChangeRuns), \(Format.count(setup.scenario.services)) services, \(variant.rawValue): CLI")
                        switch tools.cliApply(setup.files[variant.rawValue]!, in: cliSpace, namespaces: namespaces) {
                        case .success(let cli):
                            results[index].cliWall.append(cli.wall)
                            results[index].cliReported.append(.microseconds(Int64(cli.reportedMilliseconds * 1_000)))
                            results[index].cliMessages.insert(cli.messages)
                            results[index].outcomes.insert(cli.outcome)
                        case .failure(let error):
                            results[index].cliFailure = error.description
                        }
                        if case .failure(let error) = tools.cliApply(setup.files["base"]!, in: cliSpace, namespaces: namespaces) {
                            results[index].cliFailure = "the change back failed: \(error)"
                        }
                    }
                }
            }
        }
        return results
    }

    /// Builds the scenario's tables and installs the base table in four fresh namespaces (untimed).
    private func prepare(services: Int) throws -> Setup {
        let scenario = ChangeScenario(services: services, endpoints: options.endpointsPerService)
        let compilerOptions = ServiceCompilerOptions()
        let baseWire = NftablesLowering.lower(NftablesServiceCompiler.compile(scenario.base, options: compilerOptions))
        var wires: [ChangeScenario.Variant: WireTable] = [:]
        for (variant, table) in scenario.changed {
            wires[variant] = NftablesLowering.lower(NftablesServiceCompiler.compile(table, options: compilerOptions))
        }

        let daemonSpace = try namespaces.create()
        let daemon = try NftablesBackend(namespacePath: daemonSpace.path, recordDirectory: namespaces.recordDirectory)
        _ = try daemon.apply(scenario.base, options: compilerOptions)
        // A long-lived backend indexes its services on the apply after a full one; a running
        // control plane is past that point, so it happens here, untimed (unchanged: 0 messages).
        _ = try daemon.apply(scenario.base, options: compilerOptions)
        daemon.retireTiming = .deferred

        let freshSpace = try namespaces.create()
        _ = try NftablesBackend(namespacePath: freshSpace.path, recordDirectory: namespaces.recordDirectory)
            .apply(scenario.base, options: compilerOptions)

        let rawSpace = try namespaces.create()
        let rawSocket = try NetfilterSocket(namespacePath: rawSpace.path)
        let generation = try rawSocket.generation()
        let create = NetlinkBatch(generation: generation)
        TableDelta(installed: nil, desired: baseWire).append(to: create)
        try rawSocket.commit(create, expectedGeneration: generation)

        var files: [String: String] = [:]
        var cliSpace: Namespace?
        if tools.turnout != nil && options.cliChangeRuns > 0 {
            let tables = [("base", scenario.base)] + ChangeScenario.Variant.allCases.map { ($0.rawValue, scenario.changed[$0]!) }
            for (name, table) in tables {
                let path = "\(workDirectory)/change-\(services)-\(name.replacing(" ", with: "-")).yaml"
                try TableYAML.render(table).write(toFile: path, atomically: true, encoding: .utf8)
                files[name] = path
            }
            let space = try namespaces.create()
            if case .failure(let error) = tools.cliApply(files["base"]!, in: space, namespaces: namespaces) {
                throw BenchError("CLI apply of the base table failed: \(error)")
            }
            cliSpace = space
        }
        // nft's text for the same-modulus change: the service's pick elements, old and new.
        var nftPeer: (String, String, String, Int)?
        if tools.nft != nil {
            let old = scenario.pickElements(in: scenario.base), new = scenario.pickElements(in: scenario.changed[.sameModulus]!)
            // One element per drawn value: as many as the pick chain's modulus, which names its map.
            let chain = SharedChain.pick(modulus: UInt32(old.count))
            let map = "inet \(NftablesServiceCompiler.tableName) \(NftablesServiceCompiler.mapName(of: chain, family: .ipv4))"
            func delete(_ elements: [(key: String, value: String)]) -> String {
                "delete element \(map) { \(elements.map(\.key).joined(separator: ", ")) }\n"
            }
            func add(_ elements: [(key: String, value: String)]) -> String {
                "add element \(map) { \(elements.map { "\($0.key) : \($0.value)" }.joined(separator: ", ")) }\n"
            }
            let prefix = "\(workDirectory)/change-\(services)-nft"
            try delete(old).write(toFile: "\(prefix)-delete.nft", atomically: true, encoding: .utf8)
            try add(new).write(toFile: "\(prefix)-add.nft", atomically: true, encoding: .utf8)
            try (delete(new) + add(old)).write(toFile: "\(prefix)-back.nft", atomically: true, encoding: .utf8)
            nftPeer = ("\(prefix)-delete.nft", "\(prefix)-add.nft", "\(prefix)-back.nft", old.count)
        }
        return Setup(scenario: scenario, baseWire: baseWire, wires: wires, daemon: daemon, freshSpace: freshSpace,
                     rawSpace: rawSpace, rawSocket: rawSocket, nftPeer: nftPeer, cliSpace: cliSpace, files: files)
    }
}
