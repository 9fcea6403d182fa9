import Foundation
import Testing
@testable import TurnoutControl
import TurnoutModel
import TurnoutRules
import TurnoutTestSupport

/// The text side of the iptables backend: Turnout's rendering brought to iptables-save's form,
/// with the expected forms copied from what iptables-save 1.8.9 (nf_tables) printed here.
@Suite("Iptables rule text: rendered rules in iptables-save's canonical form")
struct IptablesRuleTextTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var rendered: String
        var saved: String
        var family: IPFamily = .ipv4
        var testDescription: String { rendered }
    }

    static let cases: [Case] = [
        Case(rendered: "-m comment --comment \"turnout\" -j TURNOUT-SERVICES",
             saved: "-m comment --comment turnout -j TURNOUT-SERVICES"),
        Case(rendered: "-d 10.96.0.20/32 -p tcp -m tcp --dport 80 -m comment --comment \"shop/checkout:http\" -j TURNOUT-SVC-X",
             saved: "-d 10.96.0.20/32 -p tcp -m tcp --dport 80 -m comment --comment \"shop/checkout:http\" -j TURNOUT-SVC-X"),
        Case(rendered: "-m statistic --mode random --probability 0.7500000000 -j TURNOUT-SEP-X",
             saved: "-m statistic --mode random --probability 0.75000000000 -j TURNOUT-SEP-X"),
        Case(rendered: "-m statistic --mode random --probability 0.3333333333 -j RETURN",
             saved: "-m statistic --mode random --probability 0.33333333349 -j RETURN"),
        Case(rendered: "-m statistic --mode random --probability 0.0000000001 -j RETURN",
             saved: "-m statistic --mode random --probability 0.00000000000 -j RETURN"),
        Case(rendered: "-j MARK --or-mark 0x400000", saved: "-j MARK --set-xmark 0x400000/0x400000"),
        Case(rendered: "-j MARK --xor-mark 0x400000", saved: "-j MARK --set-xmark 0x400000/0x0"),
        Case(rendered: "-j MARK --set-mark 0x1", saved: "-j MARK --set-xmark 0x1/0xffffffff"),
        Case(rendered: "-j MARK --and-mark 0x1", saved: "-j MARK --set-xmark 0x0/0xfffffffe"),
        Case(rendered: "-m mark ! --mark 0x400000/0x400000 -j RETURN", saved: "-m mark ! --mark 0x400000/0x400000 -j RETURN"),
        Case(rendered: "-m conntrack --ctstate ESTABLISHED,NEW -j RETURN", saved: "-m conntrack --ctstate NEW,ESTABLISHED -j RETURN"),
        Case(rendered: "-s 10.1.0.5/32 -m comment --comment \"hairpin\" -j TURNOUT-MARK-MASQ",
             saved: "-s 10.1.0.5/32 -m comment --comment hairpin -j TURNOUT-MARK-MASQ"),
        Case(rendered: "-m comment --comment \"a \\\"q\\\" b'c\" -j RETURN", saved: "-m comment --comment \"a \\\"q\\\" b\\'c\" -j RETURN"),
        Case(rendered: "-p tcp -s 10.1.0.5 -d 10.1.2.3/255.255.0.0 --dport 80 -j RETURN",
             saved: "-s 10.1.0.5/32 -d 10.1.0.0/16 -p tcp -m tcp --dport 80 -j RETURN"),
        Case(rendered: "-p tcp -m recent --name TURNOUT-SEP-A --set -j DNAT --to-destination 10.1.0.31:8080",
             saved: "-p tcp -m recent --set --name TURNOUT-SEP-A --mask 255.255.255.255 --rsource -j DNAT --to-destination 10.1.0.31:8080"),
        Case(rendered: "-m recent --name TURNOUT-SEP-A --rcheck --seconds 600 --reap -m comment --comment \"x (affinity)\" -j TURNOUT-SEP-A",
             saved: "-m recent --rcheck --seconds 600 --reap --name TURNOUT-SEP-A --mask 255.255.255.255 --rsource -m comment --comment \"x (affinity)\" -j TURNOUT-SEP-A"),
        Case(rendered: "-p tcp -m recent --name TURNOUT-SEP-B --set -j DNAT --to-destination [FD00:1::31]:8080",
             saved: "-p tcp -m recent --set --name TURNOUT-SEP-B --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource -j DNAT --to-destination [fd00:1::31]:8080",
             family: .ipv6),
        Case(rendered: "-d FD00:96:0::40 -p udp -m udp --dport 53 -j TURNOUT-SVC-X", saved: "-d fd00:96::40/128 -p udp -m udp --dport 53 -j TURNOUT-SVC-X",
             family: .ipv6),
        Case(rendered: "-p udp -j REJECT", saved: "-p udp -j REJECT --reject-with icmp-port-unreachable"),
        Case(rendered: "-p udp -j REJECT", saved: "-p udp -j REJECT --reject-with icmp6-port-unreachable", family: .ipv6),
        Case(rendered: "-d 10.96.0.1/32 -p sctp -m sctp --dport 80 -j REDIRECT --to-ports 15001",
             saved: "-d 10.96.0.1/32 -p sctp -m sctp --dport 80 -j REDIRECT --to-ports 15001"),
        Case(rendered: "-m owner ! --gid-owner 5 -m owner --uid-owner 1000 -g TURNOUT-X",
             saved: "-m owner ! --gid-owner 5 -m owner --uid-owner 1000 -g TURNOUT-X"),
    ]

    @Test("rendered rule → the text iptables-save prints", arguments: cases)
    func renderedRuleTakesSavedForm(_ rule: Case) {
        #expect(IptablesRuleText.canonical(rule.rendered, family: rule.family) == rule.saved)
    }

    @Test("saved rule → itself (the canonical form is a fixed point)", arguments: cases)
    func savedFormIsFixedPoint(_ rule: Case) {
        #expect(IptablesRuleText.canonical(rule.saved, family: rule.family) == rule.saved)
    }

    @Test("probability 0.9 → 0.89999999991, the 31-bit fraction the kernel keeps")
    func probabilityIsTheKernelsFraction() {
        #expect(IptablesRuleText.savedProbability("0.9000000000") == "0.89999999991")
        #expect(IptablesRuleText.savedProbability("1.0000000000") == "1.00000000000")
        #expect(IptablesRuleText.savedProbability("0.5") == "0.50000000000")
    }

    @Test("restore input for the canary, read back as installed → an empty plan")
    func planAgainstItselfIsEmpty() throws {
        let tables = IptablesServiceCompiler.compile(try example("canary"), family: .ipv4)
        let text = IptablesRenderer.render(tables)
        let owned = ["nat", "filter"].map { IptablesOwnedTable(parsing: text, table: $0, family: .ipv4) }
        #expect(owned[0].chains.count == 6 && owned[0].jumps.count == 3)
        #expect(owned[1].chains.map(\.name) == ["TURNOUT-NO-ENDPOINTS"] && owned[1].jumps.count == 3)
        #expect(IptablesRestorePlan(family: .ipv4, from: owned, to: owned).isEmpty)

        let created = IptablesRestorePlan(family: .ipv4, from: [], to: owned)
        #expect(created.input.components(separatedBy: "-A PREROUTING ").count == 2)
        #expect(created.messages == created.input.split(separator: "\n").count - 4)
    }

    @Test("installed: the PREROUTING jump twice; wanted: once → one -D with the installed text, no -A")
    func duplicateJumpIsDeleted() {
        let saved = """
            *nat
            :PREROUTING ACCEPT [0:0]
            :TURNOUT-SERVICES - [0:0]
            -A PREROUTING -d 192.0.2.1/32 -j DNAT --to-destination 192.0.2.2
            -A PREROUTING -m comment --comment turnout -j TURNOUT-SERVICES
            -A PREROUTING -m comment --comment turnout -j TURNOUT-SERVICES
            COMMIT
            """
        let wanted = "*nat\n:TURNOUT-SERVICES - [0:0]\n-A PREROUTING -m comment --comment \"turnout\" -j TURNOUT-SERVICES\nCOMMIT\n"
        let plan = IptablesRestorePlan(family: .ipv4,
                                       from: [IptablesOwnedTable(parsing: saved, table: "nat", family: .ipv4)],
                                       to: [IptablesOwnedTable(parsing: wanted, table: "nat", family: .ipv4)])
        #expect(plan.input == "*nat\n-D PREROUTING -m comment --comment turnout -j TURNOUT-SERVICES\nCOMMIT\n")
        #expect(plan.changes == ["iptables nat: ~ PREROUTING (-1 +0 jump rules)"])
    }

    @Test("a tool that exits 3 with two stderr lines → ToolError, one-line description with both")
    func toolErrorIsOneLine() throws {
        let runner = ToolRunner()
        #expect(throws: ToolError.self) { try runner.output("sh", ["-c", "echo first >&2; echo second >&2; exit 3"]) }
        do {
            _ = try runner.output("sh", ["-c", "echo first >&2; echo second >&2; exit 3"])
        } catch {
            #expect(error.status == 3)
            #expect(error.description == "sh failed (exit status 3): first second")
        }
        let result = try runner.run("cat", input: "through stdin")
        #expect(result.status == 0 && result.standardOutput == "through stdin")
    }

    @Test("a tool killed by a signal → status 128 + signal; no stdin given → it reads /dev/null, not ours")
    func toolStatusAndStreams() throws {
        #expect(try ToolRunner().run("sh", ["-c", "kill -TERM $$"]).status == 128 + 15)
        #expect(try ToolRunner().run("cat").standardOutput == "")
        #expect(try ToolRunner().run("sh", ["-c", "echo out; echo err >&2"]) ==
                ToolResult(tool: "sh", arguments: ["-c", "echo out; echo err >&2"], status: 0, standardOutput: "out\n", standardError: "err\n"))
    }

    @Test("a tool past its time limit → killed, ToolError .timedOut, well before the tool would end")
    func toolPastTimeLimitIsKilled() throws {
        let started = ContinuousClock.now
        #expect(throws: ToolError(tool: "sleep", arguments: ["30"], failure: .timedOut(after: .milliseconds(300)))) {
            try ToolRunner(timeLimit: .milliseconds(300)).run("sleep", ["30"])
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}

/// The iptables backend against the real kernel, each test in a network namespace of its own.
@Suite("Iptables backend: apply, flush and status in a network namespace",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct IptablesBackendTests {
    static let direct = ServiceCompilerOptions()

    @Test("apply rules/canary.yaml → .created; its chains and one jump per built-in chain are in iptables-save")
    func applyInstallsChainsAndJumps() throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            let report = try backend(ns).apply(try example("canary"), options: Self.direct)
            #expect(report.outcome == .created && report.backend == "iptables")
            #expect(report.messages > 0 && !report.changes.isEmpty)

            let nat = try save(ns, table: "nat"), filter = try save(ns, table: "filter")
            for chain in ["TURNOUT-SERVICES", "TURNOUT-POSTROUTING", "TURNOUT-MARK-MASQ"] {
                #expect(nat.contains(":\(chain) - [0:0]"))
            }
            #expect(nat.components(separatedBy: ":TURNOUT-SVC-").count == 2)
            #expect(nat.components(separatedBy: ":TURNOUT-SEP-").count == 3)
            #expect(nat.contains("-A TURNOUT-SERVICES -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -m comment --comment \"shop/checkout:http\" -j TURNOUT-SVC-"))
            #expect(nat.contains("-j DNAT --to-destination 10.1.0.5:8080") && nat.contains("-j DNAT --to-destination 10.1.0.6:8081"))
            #expect(jumpLines(nat) == ["-A PREROUTING -m comment --comment turnout -j TURNOUT-SERVICES",
                                       "-A OUTPUT -m comment --comment turnout -j TURNOUT-SERVICES",
                                       "-A POSTROUTING -m comment --comment turnout -j TURNOUT-POSTROUTING"])
            #expect(jumpLines(filter).count == 3 && filter.contains(":TURNOUT-NO-ENDPOINTS - [0:0]"))
        }
    }

    @Test("apply rules/X.yaml twice → second .unchanged, 0 messages, iptables-save byte-identical",
          arguments: Repository.exampleTables, [DispatchMode.direct, .proxy])
    func secondApplyIsUnchanged(name: String, mode: DispatchMode) throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            let backend = backend(ns), table = try example(name), options = ServiceCompilerOptions(mode: mode)
            let first = try backend.apply(table, options: options)
            #expect(first.outcome == .created)
            let before = try saveAll(ns)
            let second = try backend.apply(table, options: options)
            #expect(second == ApplyReport(backend: "iptables", outcome: .unchanged, messages: 0))
            #expect(try saveAll(ns) == before)
            #expect(try backend.status(comparingWith: table, options: options).drift == [])
        }
    }

    @Test("canary 90/10 → 75/25 → .incremental, only the service chain rewritten, save shows 0.75000000000")
    func changedWeightIsIncremental() throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            let backend = backend(ns)
            _ = try backend.apply(try example("canary"), options: Self.direct)
            #expect(try save(ns, table: "nat").contains("--probability 0.89999999991"))

            let report = try backend.apply(try canary(stable: 75, canary: 25), options: Self.direct)
            #expect(report.outcome == .incremental)
            #expect(report.changes.count == 1)
            #expect(report.changes.first?.hasPrefix("iptables nat: ~ TURNOUT-SVC-") == true)
            // Declare + the two cascade rules of one chain; every other chain is left alone.
            #expect(report.messages == 3)
            let nat = try save(ns, table: "nat")
            #expect(nat.contains("-m statistic --mode random --probability 0.75000000000 -m comment --comment \"shop/checkout:http -> 10.1.0.5:8080\""))
            #expect(!nat.contains("0.89999999991"))
        }
    }

    @Test("two services → one: the removed service's TURNOUT-SVC/SEP chains are gone, the other's stay")
    func removedServiceChainsAreDeleted() throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            let backend = backend(ns)
            let both = try table(CanaryTable.yaml(stable: 90, canary: 10) + "\n" + Self.otherService)
            let removedChains = ownChains(of: try table("services:\n" + Self.otherService), family: .ipv4)
                .filter { $0.hasPrefix("TURNOUT-SVC-") || $0.hasPrefix("TURNOUT-SEP-") }
            let keptChains = ownChains(of: try example("canary"), family: .ipv4).filter { $0.hasPrefix("TURNOUT-S") && $0 != "TURNOUT-SERVICES" }
            #expect(removedChains.count == 3 && keptChains.count == 3)

            _ = try backend.apply(both, options: Self.direct)
            var nat = try save(ns, table: "nat")
            #expect((removedChains + keptChains).allSatisfy { nat.contains(":\($0) - [0:0]") })

            let report = try backend.apply(try example("canary"), options: Self.direct)
            #expect(report.outcome == .incremental)
            nat = try save(ns, table: "nat")
            #expect(removedChains.allSatisfy { !nat.contains($0) })
            #expect(keptChains.allSatisfy { nat.contains(":\($0) - [0:0]") })
            #expect(report.changes.filter { $0.contains(": - TURNOUT-S") }.count == 3)
        }
    }

    @Test("apply 3 times (90/10, 75/25, 90/10) → each built-in chain holds exactly one Turnout jump")
    func jumpsNeverDuplicate() throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            let backend = backend(ns)
            for table in [try example("canary"), try canary(stable: 75, canary: 25), try example("canary")] {
                _ = try backend.apply(table, options: Self.direct)
            }
            #expect(jumpLines(try save(ns, table: "nat")).count == 3)
            #expect(jumpLines(try save(ns, table: "filter")).count == 3)
            #expect(Set(jumpLines(try save(ns, table: "nat")) + jumpLines(try save(ns, table: "filter"))).count == 6)
        }
    }

    @Test("foreign nat, filter and iptables-legacy rules → byte-identical after apply, re-apply and flush")
    func foreignStateIsUntouched() throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            try sh(ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", "192.0.2.1", "-j", "DNAT", "--to-destination", "192.0.2.2")
            try sh(ns, "iptables", "-t", "nat", "-N", "FOREIGN-CHAIN")
            try sh(ns, "iptables", "-t", "nat", "-A", "FOREIGN-CHAIN", "-p", "tcp", "--dport", "8443", "-j", "RETURN")
            try sh(ns, "iptables", "-t", "nat", "-A", "OUTPUT", "-j", "FOREIGN-CHAIN")
            try sh(ns, "iptables", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
            try sh(ns, "iptables", "-t", "filter", "-P", "FORWARD", "DROP")
            try sh(ns, "iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-d", "198.51.100.1", "-j", "DNAT", "--to-destination", "198.51.100.2")
            let before = try saveAll(ns), legacyBefore = try saveText(ns, "iptables-legacy-save")
            #expect(before.contains("FOREIGN-CHAIN") && legacyBefore.contains("198.51.100.1"))

            let backend = backend(ns)
            _ = try backend.apply(try example("canary"), options: Self.direct)
            #expect(withoutTurnout(try saveAll(ns)) == before)
            _ = try backend.apply(try canary(stable: 75, canary: 25), options: Self.direct)
            #expect(withoutTurnout(try saveAll(ns)) == before)
            #expect(try saveText(ns, "iptables-legacy-save") == legacyBefore)

            #expect(try backend.flush().outcome == .flushed)
            #expect(try saveAll(ns) == before)
            #expect(try saveText(ns, "iptables-legacy-save") == legacyBefore)
        }
    }

    @Test("apply rules/dual-stack.yaml, flush → no TURNOUT- in iptables-save or ip6tables-save; flush again → .absent, 0 messages")
    func flushRemovesEverythingAndIsIdempotent() throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            let backend = backend(ns)
            _ = try backend.apply(try example("dual-stack"), options: Self.direct)
            #expect(try saveAll(ns).contains("TURNOUT-") && saveAll(ns, ipv6: true).contains("TURNOUT-"))

            let flushed = try backend.flush()
            #expect(flushed.outcome == .flushed && flushed.messages > 0)
            #expect(try !saveAll(ns).contains("TURNOUT-"))
            #expect(try !saveAll(ns, ipv6: true).contains("TURNOUT-"))
            #expect(try backend.flush() == ApplyReport(backend: "iptables", outcome: .absent, messages: 0))
            #expect(try backend.status(comparingWith: nil, options: Self.direct).installed == false)
        }
    }

    @Test("rules/dual-stack.yaml → ip6tables gets the IPv6 services; rules/canary.yaml → ip6tables-save unchanged")
    func familiesFollowTheTablesAddresses() throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            let v6Before = try saveAll(ns, ipv6: true)
            _ = try backend(ns).apply(try example("canary"), options: Self.direct)
            #expect(try saveAll(ns, ipv6: true) == v6Before)
        }
        try withNetworkNamespace(prefix: "ipt") { ns in
            let backend = backend(ns)
            _ = try backend.apply(try example("dual-stack"), options: Self.direct)
            let v6 = try save(ns, table: "nat", ipv6: true)
            #expect(v6.contains("-A TURNOUT-SERVICES -d fd00:96::40/128 -p tcp -m tcp --dport 80"))
            #expect(v6.contains("-j DNAT --to-destination [fd00:1::21]:8080"))
            #expect(jumpLines(v6).count == 3)
            #expect(try save(ns, table: "nat").contains("-A TURNOUT-SERVICES -d 10.96.0.40/32 -p udp -m udp --dport 53"))

            // The table loses its IPv6 address: Turnout's ip6tables chains go with it.
            _ = try backend.apply(try example("canary"), options: Self.direct)
            #expect(try !saveAll(ns, ipv6: true).contains("TURNOUT-"))
        }
    }

    @Test("status: matching → no drift; a rule deleted by hand → one '-' line; re-apply → no drift")
    func statusReportsDrift() throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            let backend = backend(ns), canary = try example("canary")
            let empty = try backend.status(comparingWith: canary, options: Self.direct)
            #expect(!empty.installed && empty.drift?.isEmpty == false)

            _ = try backend.apply(canary, options: Self.direct)
            let clean = try backend.status(comparingWith: canary, options: Self.direct)
            #expect(clean.installed && clean.drift == [])
            #expect(clean.summary.contains("iptables nat: 6 TURNOUT- chains, 14 rules (3 in built-in chains)"))
            #expect(clean.summary.contains("iptables filter: 1 TURNOUT- chains, 3 rules (3 in built-in chains)"))
            #expect(clean.summary.contains("ip6tables nat: 0 TURNOUT- chains, 0 rules (0 in built-in chains)"))
            #expect(try backend.status(comparingWith: nil, options: Self.direct).drift == nil)

            let serviceChain = try #require(ownChains(of: canary, family: .ipv4).first { $0.hasPrefix("TURNOUT-SVC-") })
            let firstRule = try #require(try save(ns, table: "nat").split(separator: "\n").first { $0.hasPrefix("-A \(serviceChain) ") })
            try sh(ns, "iptables", "-t", "nat", "-D", serviceChain, "1")
            let drifted = try backend.status(comparingWith: canary, options: Self.direct)
            #expect(drifted.drift == ["+ iptables nat: \(firstRule)"])

            let repaired = try backend.apply(canary, options: Self.direct)
            #expect(repaired.outcome == .incremental)
            #expect(try backend.status(comparingWith: canary, options: Self.direct).drift == [])
        }
    }

    /// iptables-restore commits each `*table` of its input on its own. With the stale chain in
    /// `nat` the first section fails and nothing is committed; in `filter`, `nat` has already
    /// committed and the backend must put it back. A foreign `nat` rule is present in both cases:
    /// the nat table existing beforehand is what makes "put back" byte-identical (see the report
    /// on the empty table iptables-nft leaves otherwise).
    @Test("a foreign rule references TURNOUT-STALE in TABLE → apply and flush throw ToolError with stderr, iptables-save unchanged",
          arguments: ["nat", "filter"])
    func failedRestoreChangesNothing(table: String) throws {
        try withNetworkNamespace(prefix: "ipt") { ns in
            // Turnout takes TURNOUT-STALE for a stale chain of its own and deletes it, but a
            // foreign chain still jumps to it, so the kernel refuses `-X`.
            try sh(ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", "192.0.2.1", "-j", "DNAT", "--to-destination", "192.0.2.2")
            try sh(ns, "iptables", "-t", table, "-N", "TURNOUT-STALE")
            try sh(ns, "iptables", "-t", table, "-A", "TURNOUT-STALE", "-j", "RETURN")
            try sh(ns, "iptables", "-t", table, "-N", "FOREIGN-REF")
            try sh(ns, "iptables", "-t", table, "-A", "FOREIGN-REF", "-j", "TURNOUT-STALE")
            let before = try saveAll(ns)
            let backend = backend(ns)

            let error = try #require(throws: ToolError.self) {
                try backend.apply(try example("canary"), options: Self.direct)
            }
            #expect(error.tool == "iptables-restore" && error.status != nil && error.status != 0)
            #expect(error.standardError.contains("TURNOUT-STALE"))
            #expect(error.description.contains("input line") && error.description.contains("-X TURNOUT-STALE"))
            #expect(!error.description.contains("\n"))
            #expect(try saveAll(ns) == before)

            let flushError = try #require(throws: ToolError.self) { try backend.flush() }
            #expect(flushError.standardError.contains("TURNOUT-STALE"))
            #expect(try saveAll(ns) == before)
        }
    }

    @Test("400 connections to 10.96.0.20:80 after apply rules/canary.yaml → both endpoints, 90/10 within 3σ (one fresh sample on a miss)")
    func realTrafficFollowsTheWeights() throws {
        let script = Repository.path("scripts/lab/tcp.py")
        try withNetworkNamespace(prefix: "ipt") { ns in
            for address in ["10.1.0.5/32", "10.1.0.6/32"] { try sh(ns, "ip", "addr", "add", address, "dev", "lo") }
            // The first route lookup happens before DNAT, so the service range needs a route.
            try sh(ns, "ip", "route", "add", "10.96.0.0/12", "dev", "lo", "src", "127.0.0.1")
            let servers = try [("stable", "10.1.0.5", "8080"), ("canary", "10.1.0.6", "8081")].map { name, address, port in
                try BackgroundProcess(["ip", "netns", "exec", ns.name, "python3", script, "serve", name, address, port])
            }
            defer { servers.forEach { $0.stop() } }
            try waitForListeners(ns, ports: ["8080", "8081"])

            _ = try backend(ns).apply(try example("canary"), options: Self.direct)
            let count = 400
            let samples = try expectSplit(weights: ["stable": 90, "canary": 10], "iptables canary") {
                let split = try ns.run("python3", [script, "split", "10.96.0.20", "80", "\(count)"], timeLimit: .seconds(120))
                try #require(split.status == 0, "\(split.standardError)")
                return SplitClientOutput(split.standardOutput).counts
            }
            #expect(samples.allSatisfy { $0.values.reduce(0, +) == count }, "\(samples)")
        }
    }

    static let otherService = """
          - name: shop/search
            addresses: [10.96.0.30]
            ports: [{port: 80, targetPort: 9000}]
            endpoints: [{address: 10.1.0.7, weight: 1}, {address: 10.1.0.8, weight: 1}]

        """
}

// MARK: - helpers

private func example(_ name: String) throws -> ServiceTable {
    try TableFile.load(Repository.path("rules/\(name).yaml"))
}

private func table(_ yaml: String) throws -> ServiceTable {
    try TableDecoder.decode(yaml, name: "test.yaml")
}

private func canary(stable: UInt32, canary: UInt32) throws -> ServiceTable {
    try table(CanaryTable.yaml(stable: stable, canary: canary))
}

private func backend(_ ns: NetworkNamespace) -> IptablesBackend {
    IptablesBackend(runner: ToolRunner(prefix: ["ip", "netns", "exec", ns.name], timeLimit: .seconds(60)))
}

/// The names of every `TURNOUT-` chain the compiler makes for `table`.
private func ownChains(of table: ServiceTable, family: IPFamily) -> [String] {
    IptablesServiceCompiler.compile(table, family: family).flatMap(\.chains).filter { !$0.isBuiltin }.map(\.name)
}

/// Runs a command in the namespace; a non-zero exit fails the test with the command's stderr.
private func sh(_ ns: NetworkNamespace, _ tool: String, _ arguments: String...) throws {
    let result = try ns.run(tool, arguments)
    try #require(result.status == 0, "\(tool) \(arguments.joined(separator: " ")): \(result.standardError)")
}

/// A save tool's output without its `#` lines, which carry timestamps.
private func saveText(_ ns: NetworkNamespace, _ tool: String, _ arguments: [String] = []) throws -> String {
    let result = try ns.run(tool, arguments)
    try #require(result.status == 0, "\(tool): \(result.standardError)")
    return result.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
        .filter { !$0.hasPrefix("#") }.joined(separator: "\n")
}

private func save(_ ns: NetworkNamespace, table: String, ipv6: Bool = false) throws -> String {
    try saveText(ns, ipv6 ? "ip6tables-save" : "iptables-save", ["-t", table])
}

private func saveAll(_ ns: NetworkNamespace, ipv6: Bool = false) throws -> String {
    try saveText(ns, ipv6 ? "ip6tables-save" : "iptables-save")
}

/// The rules of built-in chains that jump to a TURNOUT- chain.
private func jumpLines(_ saved: String) -> [String] {
    saved.split(separator: "\n").map(String.init).filter { line in
        line.hasPrefix("-A ") && !line.hasPrefix("-A TURNOUT-") && line.contains(" -j TURNOUT-")
    }
}

/// iptables-save text with every line of Turnout's removed: what must equal the state before.
private func withoutTurnout(_ saved: String) -> String {
    saved.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
        !(line.hasPrefix(":TURNOUT-") || line.hasPrefix("-A TURNOUT-") || line.contains(" -j TURNOUT-"))
    }.joined(separator: "\n")
}

/// Waits (at most 10 s) until the namespace has TCP listeners on `ports`.
private func waitForListeners(_ ns: NetworkNamespace, ports: [String]) throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        let listening = try ns.run("ss", ["-Hltn"]).standardOutput
        if ports.allSatisfy({ listening.contains(":\($0) ") }) { return }
        Thread.sleep(forTimeInterval: 0.05)
    }
    Issue.record("no listener on \(ports) after 10 s")
}

/// A long-running child (a lab server), stopped by its PID.
private final class BackgroundProcess {
    private let process: Process

    init(_ commandLine: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Subprocess.locate(commandLine[0]))
        process.arguments = Array(commandLine.dropFirst())
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
