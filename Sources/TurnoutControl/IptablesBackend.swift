import TurnoutModel
import TurnoutRules

/// Installs, removes and inspects Turnout's service rules with the iptables tools, for hosts
/// that must stay on iptables (`--backend iptables`).
///
/// Turnout owns every chain named `TURNOUT-…` in the `nat` and `filter` tables, and the rules of
/// built-in chains that jump to one. It reads them with `iptables-save -t nat|filter` (and
/// `ip6tables-save`), compares them with what the compiler wants in iptables-save's canonical
/// text, and when they differ sends one `iptables-restore --noflush` per family that rewrites
/// only the chains that changed. Foreign chains, foreign rules, policies and other tables are
/// never named in that input, so they stay as they were.
///
/// A family is touched only when the table has a service address of it or Turnout's chains are
/// already installed in it: a v4-only table leaves ip6tables alone, and one that lost its last
/// IPv6 address has its ip6tables chains removed. iptables-restore commits each table of its
/// input as one transaction; when a later table or family fails, what was already committed is
/// put back as it was read, so a failed `apply` or `flush` leaves every rule as it was. (One
/// trace can remain: a `nat` or `filter` table that iptables-nft created for the rolled-back
/// rules stays, empty, with its built-in chains at policy ACCEPT.)
/// Needs CAP_NET_ADMIN; errors are ``ToolError`` carrying the tool's stderr.
public struct IptablesBackend: Sendable {
    /// The backend's name in reports: `iptables`.
    public static let name = "iptables"
    /// The tables Turnout uses, in the order they are read and written.
    static let tables = ["nat", "filter"]
    /// `--wait 5`: where `iptables` is the legacy variant, another writer may hold the xtables
    /// lock for a moment; waiting beats failing. iptables-nft accepts and ignores it.
    static let restoreArguments = ["--noflush", "--wait", "5"]

    public var runner: ToolRunner

    public init(runner: ToolRunner = ToolRunner()) {
        self.runner = runner
    }

    /// Makes the installed rules those of `table`; sends nothing when they already are.
    ///
    /// Outcome `.unchanged` (0 messages), `.created` when nothing of Turnout's was installed,
    /// else `.incremental`. `messages` counts restore input lines, `changes` names each chain
    /// that was created, rewritten or removed and each built-in chain whose jumps changed.
    public func apply(_ table: ServiceTable, options: ServiceCompilerOptions) throws(ToolError) -> ApplyReport {
        try converge(.services) { family in desired(table, family: family, options: options) }
    }

    /// Makes Turnout's capture chains (`TURNOUT-CAPTURE-`, `turnout init`) those of `options`,
    /// in both families or, with IPv6 off, IPv4 only (leftover IPv6 capture is removed). The
    /// families are committed one after the other; if the second fails, the first is put back,
    /// so capture is never left installed in one family only. Outcomes as for `apply`.
    public func applyCapture(_ options: CaptureOptions) throws(ToolError) -> ApplyReport {
        try converge(.capture) { family in Self.desiredCapture(options, family: family) }
    }

    /// The `iptables-restore --noflush` input `applyCapture` sends to a namespace without
    /// capture rules, per family (jumps inserted first with `-I`): what `init --dry-run` prints.
    public static func captureRestoreInput(_ options: CaptureOptions) -> [(family: IPFamily, input: String)] {
        options.families.map { family in
            (family, IptablesRestorePlan(family: family, from: [], to: desiredCapture(options, family: family),
                                         jumpsFirst: IptablesOwnership.capture.jumpsFirst).input)
        }
    }

    private static func desiredCapture(_ options: CaptureOptions, family: IPFamily) -> [IptablesOwnedTable] {
        guard let rules = CaptureCompiler.iptables(options, family: family) else { return [] }
        return [IptablesOwnedTable(parsing: IptablesRenderer.render([rules]), table: "nat", family: family, ownership: .capture)]
    }

    /// The first step of `init --cleanup`: in each family with capture installed, replaces the
    /// capture chains and their jumps with ``CaptureCompiler/iptablesDrainChain`` (see
    /// ``CaptureCompiler/iptablesDrain(family:)``), so no new connection is captured while those
    /// already redirected keep their NAT. `.absent` when no capture is installed.
    public func drainCapture() throws(ToolError) -> ApplyReport {
        let installed = try readInstalled(.capture)
        let capturing = IPFamily.allCases.filter { family in installed[family]!.contains { !$0.isEmpty } }
        guard !capturing.isEmpty else { return ApplyReport(backend: Self.name, outcome: .absent, messages: 0) }
        return try converge(.capture, installed: installed) { family in
            capturing.contains(family) ? [Self.drainTable(family)] : []
        }
    }

    /// The last step of `init --cleanup`: removes the drain chain if capture is still exactly in
    /// its drain form. If it changed meanwhile (a new `turnout init` installed capture again),
    /// nothing is touched: the outcome is `.unchanged` and the report says why.
    public func removeDrainedCapture() throws(ToolError) -> ApplyReport {
        let installed = try readInstalled(.capture)
        for family in IPFamily.allCases where installed[family]!.contains(where: { !$0.isEmpty }) {
            let plan = IptablesRestorePlan(family: family, from: installed[family]!, to: [Self.drainTable(family)],
                                           jumpsFirst: IptablesOwnership.capture.jumpsFirst)
            guard plan.isEmpty else {
                return ApplyReport(backend: Self.name, outcome: .unchanged, messages: 0,
                                   reason: "\(family.iptablesLabel): capture changed while draining (installed again?); left in place")
            }
        }
        return try remove(.capture, installed: installed)
    }

    private static func drainTable(_ family: IPFamily) -> IptablesOwnedTable {
        IptablesOwnedTable(parsing: IptablesRenderer.render([CaptureCompiler.iptablesDrain(family: family)]), table: "nat",
                           family: family, ownership: .capture)
    }

    private func converge(_ ownership: IptablesOwnership, installed known: [IPFamily: [IptablesOwnedTable]]? = nil,
                          desired: (IPFamily) -> [IptablesOwnedTable]) throws(ToolError) -> ApplyReport {
        let installed = if let known { known } else { try readInstalled(ownership) }
        let plans = IPFamily.allCases.map { family in
            IptablesRestorePlan(family: family, from: installed[family]!, to: desired(family), jumpsFirst: ownership.jumpsFirst)
        }
        guard plans.contains(where: { !$0.isEmpty }) else {
            return ApplyReport(backend: Self.name, outcome: .unchanged, messages: 0)
        }
        try run(plans, ownership: ownership, restoringOnFailure: installed)
        let wasEmpty = installed.values.allSatisfy { $0.allSatisfy(\.isEmpty) }
        return ApplyReport(backend: Self.name, outcome: wasEmpty ? .created : .incremental,
                           messages: plans.reduce(0) { $0 + $1.messages }, changes: plans.flatMap(\.changes))
    }

    /// Removes every `TURNOUT-` chain and every built-in rule that jumps to one.
    ///
    /// Outcome `.flushed`, or `.absent` with 0 messages when nothing of Turnout's is installed,
    /// so flushing twice is harmless.
    public func flush() throws(ToolError) -> ApplyReport {
        try remove(.all)
    }

    private func remove(_ ownership: IptablesOwnership, installed known: [IPFamily: [IptablesOwnedTable]]? = nil) throws(ToolError) -> ApplyReport {
        let installed = if let known { known } else { try readInstalled(ownership) }
        let plans = IPFamily.allCases.map { family in
            IptablesRestorePlan(family: family, from: installed[family]!, to: [])
        }
        guard plans.contains(where: { !$0.isEmpty }) else {
            return ApplyReport(backend: Self.name, outcome: .absent, messages: 0)
        }
        try run(plans, ownership: ownership, restoringOnFailure: installed)
        return ApplyReport(backend: Self.name, outcome: .flushed,
                           messages: plans.reduce(0) { $0 + $1.messages }, changes: plans.flatMap(\.changes))
    }

    /// What is installed, one summary line per family and table
    /// (`iptables nat: 6 TURNOUT- chains, 14 rules (3 in built-in chains)`), and, when `table`
    /// is given, the rule lines that differ from it: `- ` installed only, `+ ` wanted only,
    /// each as iptables-save prints it. Empty drift means the kernel matches the table.
    public func status(comparingWith table: ServiceTable?, options: ServiceCompilerOptions) throws(ToolError) -> InstalledStatus {
        let installed = try readInstalled(.services)
        var summary: [String] = [], drift: [String] = []
        for family in IPFamily.allCases {
            for owned in installed[family]! {
                summary.append("\(family.iptablesLabel) \(owned.name): \(owned.chains.count) TURNOUT- chains, "
                               + "\(owned.ruleCount) rules (\(owned.jumps.count) in built-in chains)")
            }
            if let table {
                let wanted = desired(table, family: family, options: options)
                for name in Self.tables {
                    drift += Self.drift(installed: installed[family]!.first { $0.name == name } ?? IptablesOwnedTable(name: name),
                                        wanted: wanted.first { $0.name == name } ?? IptablesOwnedTable(name: name),
                                        label: "\(family.iptablesLabel) \(name):")
                }
            }
        }
        let isInstalled = installed.values.contains { $0.contains { !$0.isEmpty } }
        return InstalledStatus(backend: Self.name, installed: isInstalled, summary: summary, drift: table == nil ? nil : drift)
    }

    // MARK: - state

    /// Turnout's part of `nat` and `filter` for both families, as iptables-save prints it.
    private func readInstalled(_ ownership: IptablesOwnership) throws(ToolError) -> [IPFamily: [IptablesOwnedTable]] {
        var state: [IPFamily: [IptablesOwnedTable]] = [:]
        for family in IPFamily.allCases {
            var tables: [IptablesOwnedTable] = []
            for name in Self.tables {
                let saved = try runner.output(family.iptablesSave, ["-t", name])
                tables.append(IptablesOwnedTable(parsing: saved, table: name, family: family, ownership: ownership))
            }
            state[family] = tables
        }
        return state
    }

    /// What the compiler wants in `family`: nothing when the table has no address of it.
    private func desired(_ table: ServiceTable, family: IPFamily, options: ServiceCompilerOptions) -> [IptablesOwnedTable] {
        let hasAddress = table.services.contains { $0.addresses.contains { $0.family == family } }
        guard hasAddress else { return Self.tables.map { IptablesOwnedTable(name: $0) } }
        let text = IptablesRenderer.render(IptablesServiceCompiler.compile(table, family: family, options: options))
        return Self.tables.map { IptablesOwnedTable(parsing: text, table: $0, family: family) }
    }

    // MARK: - writing

    /// Runs each non-empty plan. When one fails, every family touched so far (the failing one
    /// included: its earlier tables may have committed) is brought back to `before`.
    private func run(_ plans: [IptablesRestorePlan], ownership: IptablesOwnership,
                     restoringOnFailure before: [IPFamily: [IptablesOwnedTable]]) throws(ToolError) {
        var touched: [IPFamily] = []
        for plan in plans where !plan.isEmpty {
            touched.append(plan.family)
            do {
                _ = try runner.output(plan.family.iptablesRestore, Self.restoreArguments, input: plan.input)
            } catch {
                var failure = error
                var context: [String] = []
                if let number = Self.failedLine(in: error.standardError), let line = plan.inputLine(number) {
                    context.append("input line \(number): \(line)")
                }
                context.append(restore(touched, ownership: ownership, to: before))
                failure.context = context.joined(separator: "; ")
                throw failure
            }
        }
    }

    /// Puts Turnout's chains of `families` back to `before`; says how that went, for the error.
    private func restore(_ families: [IPFamily], ownership: IptablesOwnership, to before: [IPFamily: [IptablesOwnedTable]]) -> String {
        do throws(ToolError) {
            let now = try readInstalled(ownership)
            var restored = false
            for family in families {
                let plan = IptablesRestorePlan(family: family, from: now[family]!, to: before[family]!, jumpsFirst: ownership.jumpsFirst)
                guard !plan.isEmpty else { continue }
                _ = try runner.output(family.iptablesRestore, Self.restoreArguments, input: plan.input)
                restored = true
            }
            return restored ? "the tables already committed were restored; nothing changed" : "nothing changed"
        } catch {
            return "restoring the previous rules failed too: \(error)"
        }
    }

    /// The input line iptables-restore blames: `line 5: …`, `line 5 failed` (nf_tables) or
    /// `Error occurred at line: 5` (legacy and parse errors).
    static func failedLine(in standardError: String) -> Int? {
        for marker in ["Error occurred at line: ", "line "] {
            var rest = Substring(standardError)
            while let range = rest.firstRange(of: marker) {
                let digits = rest[range.upperBound...].prefix { $0.isNumber }
                if let number = Int(digits) { return number }
                rest = rest[range.upperBound...]
            }
        }
        return nil
    }

    // MARK: - drift

    static func drift(installed: IptablesOwnedTable, wanted: IptablesOwnedTable, label: String) -> [String] {
        var lines: [String] = []
        for chain in wanted.chains {
            guard let old = installed.chain(named: chain.name) else {
                lines.append("+ \(label) :\(chain.name)")
                lines += chain.rules.map { "+ \(label) \($0.savedLine)" }
                continue
            }
            let diff = LineDiff(old.rules.map(\.savedLine), chain.rules.map(\.savedLine))
            lines += diff.removed.map { "- \(label) \($0)" } + diff.added.map { "+ \(label) \($0)" }
        }
        for chain in installed.chains where wanted.chain(named: chain.name) == nil {
            lines.append("- \(label) :\(chain.name)")
            lines += chain.rules.map { "- \(label) \($0.savedLine)" }
        }
        let jumps = JumpDiff(installed: installed.jumps, wanted: wanted.jumps)
        lines += jumps.removed.map { "- \(label) \($0.savedLine)" } + jumps.added.map { "+ \(label) \($0.savedLine)" }
        return lines
    }
}
