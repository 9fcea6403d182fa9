import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// The transaction guarantees of `apply` and `flush`, against the real kernel in a throwaway
/// namespace: all or nothing, nothing sent twice, foreign state untouched, drift rebuilt.
@Suite("nf_tables transactions: atomic, idempotent, own tables only",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct TransactionTests {
    static func example(_ name: String) throws -> ServiceTable {
        try TableFile.load(Repository.path("rules/\(name).yaml"))
    }

    /// rules/canary.yaml with other weights.
    static func canary(weights first: Int, _ second: Int) throws -> ServiceTable {
        let text = try String(contentsOfFile: Repository.path("rules/canary.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "weight: 90", with: "weight: \(first)")
            .replacingOccurrences(of: "weight: 10", with: "weight: \(second)")
        return try TableDecoder.decode(text, name: "canary-\(first)-\(second).yaml")
    }

    /// `count` one-endpoint services on VIPs 10.97.x.y, none of them reached: table ballast.
    static func others(_ count: Int) -> [Service] {
        (0..<count).map { index in
            let (high, low) = (index / 250, index % 250 + 1)
            return Service(name: ServiceName("ballast/svc-\(index)")!, addresses: [IPAddress("10.97.\(high).\(low)")!],
                           ports: [ServicePort(name: "http", port: 80, targetPort: 8080)],
                           endpoints: [Endpoint(address: IPAddress("10.2.\(high).\(low)")!)])
        }
    }

    static func wire(_ table: ServiceTable, mode: DispatchMode = .direct) -> WireTable {
        NftablesLowering.lower(NftablesServiceCompiler.compile(table, options: ServiceCompilerOptions(mode: mode)))
    }

    /// A private record directory per test, so tests never share apply records.
    static func backend(_ ns: NetworkNamespace) throws -> NftablesBackend {
        try NftablesBackend(namespacePath: ns.path, recordDirectory: ns.scratchDirectory)
    }

    static func ruleset(_ ns: NetworkNamespace) throws -> String {
        let listing = try ns.run("nft", ["list", "ruleset"])
        try #require(listing.status == 0, "nft list ruleset: \(listing.standardError)")
        return listing.standardOutput
    }

    @Test("apply canary twice → second is unchanged, 0 messages, read-back identical")
    func applyTwiceSendsNothing() throws {
        try withNetworkNamespace(prefix: "tx-idem") { ns in
            let backend = try Self.backend(ns)
            let table = try Self.example("canary")
            let first = try backend.apply(table, options: ServiceCompilerOptions())
            let installed = try backend.readInstalled()
            let second = try Self.backend(ns).apply(table, options: ServiceCompilerOptions())  // fresh instance: the CLI's path
            let third = try backend.apply(table, options: ServiceCompilerOptions())            // same instance: the daemon's path
            #expect(first.outcome == .created)
            #expect(second == ApplyReport(backend: "nft", outcome: .unchanged, messages: 0))
            #expect(third == ApplyReport(backend: "nft", outcome: .unchanged, messages: 0, changedServices: 0))
            #expect(try backend.readInstalled() == installed)
            #expect(installed == Self.wire(table))
        }
    }

    @Test("a batch the kernel rejects in its middle → error names the object, ruleset byte-identical")
    func rejectedBatchChangesNothing() throws {
        try withNetworkNamespace(prefix: "tx-atomic") { ns in
            let backend = try Self.backend(ns)
            _ = try backend.apply(Self.example("canary"), options: ServiceCompilerOptions())
            let before = try Self.ruleset(ns)
            let installedBefore = try backend.readInstalled()

            // Valid changes first (new weights: map elements and chains), then a rule that jumps
            // to a chain that does not exist, then more valid changes (chain deletions).
            let changed = try Self.canary(weights: 50, 50)
            var desired = Self.wire(changed)
            let services = try #require(desired.chains.firstIndex { $0.name == NftablesServiceCompiler.servicesChain })
            desired.chains[services].rules.append(WireRule([.immediateVerdict(WireVerdict(code: WireVerdict.jumpCode, chain: "no-such-chain"))]))

            let error = #expect(throws: NetlinkError.self) { try backend.apply(desired) }
            #expect(error?.errno == ENOENT)
            #expect(error?.call == "add rule 3 to chain inet turnout services", "the error names the rejected object")
            #expect(try Self.ruleset(ns) == before)
            #expect(try backend.readInstalled() == installedBefore)
            // And the backend recovers: the valid table applies as a patch afterwards.
            #expect(try backend.apply(changed, options: ServiceCompilerOptions()).outcome == .incremental)
        }
    }

    /// A SYN that enters the NAT chain with the old generation's rules and reads the new one's
    /// map elements used to leave with no DNAT (4 in about 6,000 in-process applies here, the weights
    /// switched 9:1 ↔ 2:1), and its conntrack entry then kept that client port untranslated for two
    /// minutes: the client timed out. Such an entry is the evidence looked for here (reply source
    /// = the VIP), along with the client's own errors.
    ///
    /// The switches: exact slots (`weighted-pick-10` ↔ `-3`, each with its own map, the old one
    /// deleted whole in the retire); ranges (`weighted-range-1000` ↔ `-200`, two interval maps,
    /// the new one filled in the prepare: when both draws shared one map, 3 of 3 runs failed
    /// without temporary ranges bridging what only one side covered); and a rebuild every
    /// time (1,100 more services on one side take `service-ips4` across its size, which the
    /// kernel cannot change in place).
    @Test("weights switched as fast as apply goes, under 6 s of connections to the VIP → no connection fails, none escapes DNAT",
          arguments: [WeightSwitch(from: (9, 1), to: (2, 1)), WeightSwitch(from: (999, 1), to: (199, 1)),
                      WeightSwitch(from: (9, 1), to: (2, 1), others: 1_100)])
    func switchingUnderLoadLosesNothing(_ weights: WeightSwitch) throws {
        try withNetworkNamespace(prefix: "tx-load") { ns in
            try IPBatch.run(in: ns, ["link set lo up", "addr add 10.1.0.5/32 dev lo", "addr add 10.1.0.6/32 dev lo",
                                     "route add 10.96.0.0/12 dev lo src 127.0.0.1"])
            let script = Repository.path("scripts/lab/tcp.py")
            let ip = try Subprocess.locate("ip")
            let servers = try [("stable", "10.1.0.5", "8080"), ("canary", "10.1.0.6", "8081")].map { name, address, port in
                try LabProcess(ip, ["netns", "exec", ns.name, "/usr/bin/python3", script, "serve", name, address, port])
            }
            defer { servers.forEach { $0.stop() } }
            let backend = try Self.backend(ns)
            let to = try Self.canary(weights: weights.to.0, weights.to.1)
            let tables = [try Self.canary(weights: weights.from.0, weights.from.1),
                          ServiceTable(services: to.services + Self.others(weights.others))]
            _ = try backend.apply(tables[0], options: ServiceCompilerOptions())
            #expect(ProxyLab.eventually(within: .seconds(10)) {
                let listening = (try? ns.run("ss", ["-Hltn"]).standardOutput) ?? ""
                return listening.contains(":8080 ") && listening.contains(":8081 ")
            })

            let app = try LabProcess(ip, ["netns", "exec", ns.name, "/usr/bin/python3", script, "split", "10.96.0.20", "80", "1000000",
                                          "--deadline", "6", "--timeout", "2"])
            defer { app.stop() }
            // Rebuilds go through the CLI's path with the tables lowered beforehand (compiling
            // 1,100 services each time would leave few rebuilds in 6 s); the patches through the
            // daemon's, which recompiles only the canary.
            let wires = tables.map { Self.wire($0) }
            var applies = 0
            let start = ContinuousClock.now
            while ContinuousClock.now - start < .seconds(6) {
                let next = (applies + 1) % 2
                let report = try weights.others > 0 ? backend.apply(wires[next]) : backend.apply(tables[next], options: ServiceCompilerOptions())
                #expect(report.outcome == (weights.others > 0 ? .rebuilt : .incremental))
                applies += 1
            }
            #expect(app.waitForExit(within: .seconds(20)) != nil)
            let output = SplitClientOutput(app.standardOutput)
            let failed = output.connections(answeredBy: "error")
            let answered = output.connections(answeredBy: "stable") + output.connections(answeredBy: "canary")
            // Without the file (a kernel without CONFIG_NF_CONNTRACK_PROCFS) this check would pass blind.
            let listing = try ns.run("cat", ["/proc/net/nf_conntrack"])
            try #require(listing.status == 0 && listing.standardOutput.contains("dst=10.96.0.20 "), "conntrack table: \(listing.standardError)")
            let conntrack = listing.standardOutput.split(separator: "\n")
            let untranslated = conntrack.filter { $0.contains("dst=10.96.0.20 ") && $0.contains("src=10.96.0.20 dst=") }
            print("\(weights.testDescription): \(applies) applies in 6 s under \(answered) connections: \(failed) failed, \(untranslated.count) untranslated")
            #expect(applies >= 50, "too few switches to mean anything")
            #expect(answered > 1_000, "\(app.standardOutput) \(app.standardError)")
            #expect(failed == 0, "\(app.standardOutput); \(ns.kernelCounters())")
            #expect(untranslated.isEmpty, "conntrack entries without DNAT: \(untranslated.prefix(3))")
        }
    }

    @Test("flush with foreign nft, iptables-nft and iptables-legacy state → foreign state byte-identical, then absent")
    func flushLeavesForeignStateAlone() throws {
        try withNetworkNamespace(prefix: "tx-flush") { ns in
            let foreign = """
            table inet foreign {
            \tchain input {
            \t\ttype filter hook input priority 0; policy accept;
            \t\ttcp dport 22 accept
            \t}
            }
            """
            for command in [["nft", "-f", "-"],
                            ["iptables", "-t", "nat", "-A", "PREROUTING", "-d", "192.0.2.1", "-p", "tcp", "-j", "DNAT", "--to-destination", "192.0.2.2"],
                            ["iptables", "-t", "nat", "-N", "FOREIGN-CHAIN"],
                            ["iptables", "-t", "nat", "-A", "FOREIGN-CHAIN", "-j", "RETURN"],
                            ["iptables-legacy", "-t", "nat", "-A", "OUTPUT", "-d", "192.0.2.3", "-p", "tcp", "-j", "DNAT", "--to-destination", "192.0.2.4"]] {
                let result = try ns.run(command[0], Array(command.dropFirst()), input: command[0] == "nft" ? foreign : nil)
                try #require(result.status == 0, "\(command.joined(separator: " ")): \(result.standardError)")
            }
            let nftBefore = try Self.ruleset(ns)
            let legacyBefore = try ns.run("iptables-legacy-save").standardOutput.withoutComments

            let backend = try Self.backend(ns)
            #expect(try backend.apply(Self.example("dual-stack"), options: ServiceCompilerOptions()).outcome == .created)
            #expect(try Self.ruleset(ns) != nftBefore)
            let flushed = try backend.flush()
            #expect(flushed.outcome == .flushed)
            #expect(try Self.ruleset(ns) == nftBefore)
            #expect(try ns.run("iptables-legacy-save").standardOutput.withoutComments == legacyBefore)
            #expect(try backend.readInstalled() == nil)
            #expect(try backend.flush() == ApplyReport(backend: "nft", outcome: .absent, messages: 0))
        }
    }

    @Test("an element deleted by hand → status shows drift, next apply rebuilds and says why")
    func driftIsRebuilt() throws {
        try withNetworkNamespace(prefix: "tx-drift") { ns in
            let table = try Self.example("canary")
            let backend = try Self.backend(ns)
            _ = try backend.apply(table, options: ServiceCompilerOptions())
            let removed = try ns.run("nft", ["delete", "element", "inet", "turnout", "hairpin-endpoints4", "{ 10.1.0.5 . 10.1.0.5 }"])
            try #require(removed.status == 0, "\(removed.standardError)")

            let status = try Self.backend(ns).status(comparingWith: table, options: ServiceCompilerOptions())
            #expect(status.summary.contains { $0.hasPrefix("DRIFT") })
            #expect(status.drift == ["+ set hairpin-endpoints4: 10.1.0.5 . 10.1.0.5"])

            let report = try Self.backend(ns).apply(table, options: ServiceCompilerOptions())
            #expect(report.outcome == .rebuilt)
            #expect(report.reason?.contains("not what Turnout last wrote") == true)
            #expect(try backend.readInstalled() == Self.wire(table))
            #expect(try backend.readInstalled(TableDelta.bridgeName(of: NftablesServiceCompiler.tableName)) == nil, "the copy beside the rebuild is gone")
            #expect(try Self.backend(ns).status(comparingWith: table, options: ServiceCompilerOptions()).drift == [])
        }
    }

    @Test("a copy left by a rebuild whose last step failed (made here with nft) → status lists it, flush deletes it with the table")
    func leftoverRebuildCopyIsFlushed() throws {
        try withNetworkNamespace(prefix: "tx-copy") { ns in
            let backend = try Self.backend(ns)
            _ = try backend.apply(Self.example("canary"), options: ServiceCompilerOptions())
            let copy = try String(contentsOfFile: Repository.path("rules/canary.nft"), encoding: .utf8)
                .replacingOccurrences(of: "table inet turnout", with: "table inet turnout-bridge")
            let load = try ns.run("nft", ["-f", "-"], input: copy)
            try #require(load.status == 0, "\(load.standardError)")

            let status = try backend.status(comparingWith: nil, options: ServiceCompilerOptions())
            #expect(status.summary.contains("table inet turnout-bridge: installed"), "\(status.summary)")
            let flushed = try backend.flush()
            #expect(flushed.changes == ["delete table inet turnout", "delete table inet turnout-bridge"])
            #expect(try Self.ruleset(ns).isEmpty)
        }
    }

    @Test("no record of the last apply and a different table installed → rebuilt, not patched blindly")
    func unknownProvenanceIsRebuilt() throws {
        try withNetworkNamespace(prefix: "tx-record") { ns in
            let load = try ns.run("nft", ["-f", Repository.path("rules/canary.nft")])
            try #require(load.status == 0, "\(load.standardError)")
            let report = try Self.backend(ns).apply(Self.example("weights-1-2-3"), options: ServiceCompilerOptions())
            #expect(report.outcome == .rebuilt)
            #expect(report.reason == "no record of what Turnout last wrote in this namespace")
            // The same table installed by `nft -f` of plan's text needs no change at all.
            let again = try withNetworkNamespace(prefix: "tx-record") { other in
                let load = try other.run("nft", ["-f", Repository.path("rules/canary.nft")])
                try #require(load.status == 0, "\(load.standardError)")
                return try Self.backend(other).apply(Self.example("canary"), options: ServiceCompilerOptions())
            }
            #expect(again.outcome == .unchanged)
        }
    }

    @Test("switching modes direct → proxy → direct patches in place and converges")
    func modeSwitchConverges() throws {
        try withNetworkNamespace(prefix: "tx-mode") { ns in
            let backend = try Self.backend(ns)
            let table = try Self.example("dual-stack")
            _ = try backend.apply(table, options: ServiceCompilerOptions(mode: .direct))
            #expect(try backend.apply(table, options: ServiceCompilerOptions(mode: .proxy)).outcome == .incremental)
            #expect(try backend.readInstalled() == Self.wire(table, mode: .proxy))
            #expect(try backend.apply(table, options: ServiceCompilerOptions(mode: .direct)).outcome == .incremental)
            #expect(try backend.readInstalled() == Self.wire(table))
        }
    }
}

extension String {
    /// iptables-save output without its `#` lines, which carry timestamps.
    var withoutComments: String {
        split(separator: "\n").filter { !$0.hasPrefix("#") }.joined(separator: "\n")
    }
}

/// Two weightings of rules/canary.yaml's stable and canary endpoints that a test switches between.
struct WeightSwitch: Sendable, CustomTestStringConvertible {
    var from: (Int, Int)
    var to: (Int, Int)
    /// Services the `to` side has besides the canary (none reached by the test's traffic).
    var others = 0

    var testDescription: String {
        "\(from.0):\(from.1) ↔ \(to.0):\(to.1)" + (others > 0 ? " with \(others) more services (a rebuild each time)" : "")
    }
}
