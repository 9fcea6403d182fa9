import FoundationEssentials
import Glibc
import TurnoutModel
import TurnoutNetlink
import TurnoutRules

/// Installs, removes and inspects Turnout's nftables table (`inet turnout`) over netlink.
///
/// Every apply is built against the ruleset generation it read (a concurrent commit makes the
/// kernel refuse it; the apply then starts over). What it sends is the difference between the
/// installed table and the desired one, provided the installed table is exactly what Turnout
/// last wrote (its digest matches the record kept in `/run/turnout`); otherwise, and whenever
/// the difference cannot be patched in place, the table is rebuilt, with a copy of it standing
/// beside for the moment of the switch. A patch or a rebuild is three
/// transactions at most, each atomic (prepare, switch over, retire: see `TableDelta.Phase`), so
/// that a packet crossing a commit is still translated; the retire waits one RCU grace period
/// (``GracePeriod``) so that no packet crosses two. With ``RetireTiming/deferred`` the apply
/// returns after the switchover, once traffic follows the new table, and the retire (wait
/// included) is sent by ``settle()``, which every other call runs first.
///
/// Owns a netlink socket: use one instance from one thread at a time. A long-lived instance
/// (a daemon) also remembers the table it last wrote and skips reading the kernel back while
/// the ruleset generation has not moved. Errors are `NetlinkError` (EPERM without CAP_NET_ADMIN).
public final class NftablesBackend {
    public static let name = "nft"
    /// The tables Turnout owns; `flush` deletes these and nothing else. `turnout-capture` is
    /// installed by `turnout init`; a `-bridge` copy of either stands beside it during a rebuild
    /// (``TableDelta/Phase``), and outlives it only if the rebuild's last step failed.
    public static let ownedTables = [NftablesServiceCompiler.tableName, CaptureCompiler.tableName].flatMap { [$0, TableDelta.bridgeName(of: $0)] }
    static let family = NftablesLowering.familyNumber(.inet)

    private let socket: NetfilterSocket
    private let recordDirectory: String
    private let namespaceIdentity: UInt64
    private var lastWritten: (generation: UInt32, table: WireTable, digest: WireDigest)?
    /// The daemon path's memory of what it wrote, per service. A full apply leaves only its
    /// services and their compiled rules (`unindexed`); the index is built from them on the next
    /// apply, so a one-shot apply (the CLI) never pays for it.
    private var index: InstalledServiceIndex?
    private var unindexed: (table: ServiceTable, rules: [ServiceRules], options: ServiceCompilerOptions)?
    /// Runs just before each phase's transaction is sent. Tests land another process's commit
    /// between two phases with it, as kube-proxy or firewalld committing at that moment would;
    /// an error it throws stands for the kernel refusing the phase.
    var beforePhase: ((TableDelta.Phase) throws(NetlinkError) -> Void)?
    /// Waits between a switchover and its retire (``GracePeriod``); tests record the call.
    var awaitGracePeriod: () -> Void = { GracePeriod.wait() }

    /// When the retire phase of a patch or rebuild is sent.
    public enum RetireTiming: Sendable {
        /// Within the apply, after the grace period: the apply returns with the table exactly
        /// the desired one (the CLI, which exits right after).
        case inApply
        /// By ``NftablesBackend/settle()``: the apply returns after the switchover, so the grace
        /// period (8 ms here) is off the path of a change; the objects the retire deletes are
        /// ones no packet reaches any more. A daemon calls `settle()` soon after (another thread
        /// may, holding the instance), and every other call of the instance settles first.
        case deferred
    }

    /// When retires are sent; `.inApply` unless the owner settles them itself.
    public var retireTiming = RetireTiming.inApply

    /// A retire held back by ``RetireTiming/deferred``: the delta whose last phase it is, the
    /// generation its switchover made, and the record to write once it is in (with the digest
    /// of the table the apply left in `index` or `lastWritten`).
    private struct PendingRetire {
        var delta: TableDelta
        var generation: UInt32
        var recordPath: String
    }
    private var pendingRetire: PendingRetire?

    /// True between a deferred apply's switchover and its ``settle()``: the kernel still holds
    /// the keys, chains and sets that the retire deletes (nothing reaches them).
    public var hasPendingRetire: Bool { pendingRetire != nil }

    deinit {
        // A deferred retire not yet settled: send it rather than leave unreachable objects
        // and the previous table's record (the next apply would rebuild).
        settleFirst()
    }

    /// Opens the backend in the caller's network namespace, or in the one at `namespacePath`.
    public init(namespacePath: String? = nil, recordDirectory: String = "/run/turnout") throws(NetlinkError) {
        socket = try NetfilterSocket(namespacePath: namespacePath)
        self.recordDirectory = recordDirectory
        var info = stat()
        let statPath = namespacePath ?? "/proc/self/ns/net"
        guard stat(statPath, &info) == 0 else { throw NetlinkError(call: "stat(\(statPath))", errno: errno) }
        namespaceIdentity = UInt64(info.st_ino)
    }

    /// Compiles `table` and makes the kernel's `inet turnout` exactly that.
    ///
    /// A long-lived instance whose last write is still the kernel's latest commit recompiles
    /// only the services that differ from the table it last applied and sends their difference;
    /// otherwise it compiles the whole table and compares it with what is installed.
    public func apply(_ table: ServiceTable, options: ServiceCompilerOptions) throws(NetlinkError) -> ApplyReport {
        settleFirst()
        var refused: NetlinkError?
        if let generation = try usableIndexGeneration(options: options), let patch = index?.patch(to: table) {
            if patch.delta.plan == .unchanged {
                index?.commit(patch, generation: generation)
                return ApplyReport(backend: Self.name, outcome: .unchanged, messages: 0, changedServices: patch.changedServices)
            }
            do throws(NetlinkError) {
                let path = recordPath(NftablesServiceCompiler.tableName)
                let sent = try commit(patch.delta, from: generation, recordPath: path)
                index?.commit(patch, generation: sent.generation)
                lastWritten = nil  // the whole table is no longer kept; the index stands for it
                if let index, pendingRetire == nil { saveRecord(index.digest, generation: index.generation, path: path) }
                return ApplyReport(backend: Self.name, outcome: .incremental, messages: sent.messages, changes: patch.delta.changes,
                                   changedServices: patch.changedServices)
            } catch where error.errno == ERESTART {
                // Another transaction committed first: fall through to the full path, which reads.
            } catch where error.refusesContent {
                refused = error
            }
        }
        let rules = table.services.map { NftablesServiceCompiler.rules(for: $0, options: options) }
        // Lowering sorts and deduplicates every set by its wire bytes, so the IR's own sort is skipped.
        let desired = NftablesLowering.lower(NftablesServiceCompiler.assemble(rules, options: options, elementOrder: .unsorted))
        let report = try apply(desired, refusedPatch: refused)
        unindexed = (table, rules, options)
        return report
    }

    /// The generation the daemon path may patch from: nothing has committed since Turnout's last
    /// write and the options are the same; `nil` otherwise. Builds the index on first use.
    private func usableIndexGeneration(options: ServiceCompilerOptions) throws(NetlinkError) -> UInt32? {
        if index == nil, let unindexed, let lastWritten, unindexed.options == options {
            guard try socket.generation() == lastWritten.generation else { return nil }
            index = InstalledServiceIndex(table: unindexed.table, rules: unindexed.rules, options: options, written: lastWritten.table,
                                          digest: lastWritten.digest, generation: lastWritten.generation)
            self.unindexed = nil
            return lastWritten.generation
        }
        guard let index, index.options == options, try socket.generation() == index.generation else { return nil }
        return index.generation
    }

    /// Makes the kernel's copy of `desired.name` exactly `desired`.
    ///
    /// A patch the kernel refuses for any reason but a concurrent commit or a missing
    /// permission is sent again as a rebuild, once: computed again, the same patch would be
    /// refused again, and a daemon would stay stuck on that table. The report's reason says so.
    /// If the rebuild is refused too, the patch's error is thrown.
    public func apply(_ desired: WireTable) throws(NetlinkError) -> ApplyReport {
        try apply(desired, refusedPatch: nil)
    }

    /// ``apply(_:)`` after the daemon path's patch was refused with `refusedPatch`, if it was.
    private func apply(_ desired: WireTable, refusedPatch: NetlinkError?) throws(NetlinkError) -> ApplyReport {
        settleFirst()
        var refusedPatch = refusedPatch
        index = nil
        unindexed = nil
        let recordPath = recordPath(desired.name)
        var attempt = 0
        while true {
            attempt += 1
            let generation = try socket.generation()
            let installed: WireTable?
            let readBack: Bool
            if let lastWritten, lastWritten.generation == generation, lastWritten.table.name == desired.name {
                installed = lastWritten.table  // nothing committed since we wrote it: no need to read
                readBack = false
            } else {
                installed = try TableReader.read(family: desired.family, name: desired.name, from: socket)
                readBack = true
            }
            var delta = TableDelta(installed: installed, desired: desired)
            if let installed, delta.plan != .unchanged {
                let record = ApplyRecord.load(from: recordPath)
                if record?.digest != WireDigest(installed).description {
                    delta.plan = .rebuild(reason: record == nil
                        ? "no record of what Turnout last wrote in this namespace"
                        : "the installed table is not what Turnout last wrote (changed outside Turnout)")
                }
            }
            if let refusedPatch, delta.plan == .patch {
                delta.plan = .rebuild(reason: "the kernel refused the patch (\(refusedPatch))")
            }
            if delta.plan == .unchanged {
                // A rebuild whose retire was refused (another commit came first) left its copy
                // beside a table that is already right: only the copy goes.
                let copy = TableDelta.bridgeName(of: desired.name)
                var current = generation
                var messages = 0
                if readBack, try socket.tableExists(family: desired.family, name: copy) {
                    let batch = NetlinkBatch(generation: generation)
                    TableRemoval.append(family: desired.family, name: copy, to: batch)
                    do throws(NetlinkError) {
                        try socket.commit(batch, expectedGeneration: generation)
                    } catch where error.errno == ERESTART && attempt < 5 {
                        continue
                    }
                    current &+= 1
                    messages = batch.messageCount
                }
                let digest = WireDigest(desired)
                saveRecord(digest, generation: current, path: recordPath)
                lastWritten = (current, desired, digest)
                guard messages > 0 else { return ApplyReport(backend: Self.name, outcome: .unchanged, messages: 0) }
                return ApplyReport(backend: Self.name, outcome: .incremental, messages: messages,
                                   changes: ["delete table inet \(copy)"],
                                   reason: "the copy of an earlier rebuild was still there: its last step was refused")
            }
            let sent: (messages: Int, generation: UInt32)
            do throws(NetlinkError) {
                sent = try commit(delta, from: generation, recordPath: recordPath)
            } catch where error.errno == ERESTART && attempt < 5 {
                continue  // another transaction committed between our read and our commit
            } catch where error.refusesContent && delta.plan == .patch {
                refusedPatch = error
                continue
            } catch {
                // A rebuild refused after its patch was: the patch's error names what the kernel
                // objected to first, in the table itself rather than in its copy.
                if let refusedPatch, error.errno != ERESTART { throw refusedPatch }
                throw error
            }
            let digest = WireDigest(desired)
            lastWritten = (sent.generation, desired, digest)
            if pendingRetire == nil { saveRecord(digest, generation: sent.generation, path: recordPath) }
            let outcome: ApplyReport.Outcome
            var reason: String?
            switch delta.plan {
            case .create: outcome = .created
            case .rebuild(let why): outcome = .rebuilt; reason = why
            case .patch, .unchanged: outcome = .incremental
            }
            return ApplyReport(backend: Self.name, outcome: outcome, messages: sent.messages, changes: delta.changes, reason: reason)
        }
    }

    /// Deletes Turnout's tables (``ownedTables``) in one transaction; `.absent` with no message
    /// sent when none is installed. Foreign tables, iptables rules and connections are untouched
    /// (conntrack entries, and so established connections, outlive NAT rules).
    public func flush() throws(NetlinkError) -> ApplyReport {
        settleFirst()
        return try remove(Self.ownedTables)
    }

    /// Makes `inet turnout-capture` the capture rules of `options` (`turnout init`): one
    /// transaction for both families, so capture is never installed for one family only.
    public func applyCapture(_ options: CaptureOptions) throws(NetlinkError) -> ApplyReport {
        try apply(NftablesLowering.lower(CaptureCompiler.nftables(options)))
    }

    /// The first step of `init --cleanup`: turns `inet turnout-capture` into its drain form
    /// (``CaptureCompiler/nftablesDrain()``) in one transaction, so no new connection is captured
    /// while those already redirected keep their NAT. `.absent` when no capture is installed;
    /// `.unchanged` when a drain was already under way.
    public func drainCapture() throws(NetlinkError) -> ApplyReport {
        settleFirst()
        guard try socket.tableExists(family: Self.family, name: CaptureCompiler.tableName) else {
            return ApplyReport(backend: Self.name, outcome: .absent, messages: 0)
        }
        return try apply(NftablesLowering.lower(CaptureCompiler.nftablesDrain()))
    }

    /// The last step of `init --cleanup`: deletes `inet turnout-capture` if it is still exactly
    /// the drain form, in a transaction bound to the generation in which that was read. A table
    /// that changed meanwhile (a new `turnout init` installed capture again) is left alone:
    /// the outcome is then `.unchanged` and the report says why.
    public func removeDrainedCapture() throws(NetlinkError) -> ApplyReport {
        settleFirst()
        let drain = NftablesLowering.lower(CaptureCompiler.nftablesDrain())
        return try remove([CaptureCompiler.tableName]) { installed throws(NetlinkError) in
            try TableReader.read(family: Self.family, name: installed, from: socket).map { TableDelta(installed: $0, desired: drain).plan == .unchanged } ?? true
        }
    }

    /// Deletes those of `tables` that exist (and pass `stillRemovable`), in one transaction
    /// bound to the generation they were read in.
    private func remove(_ tables: [String], stillRemovable: (String) throws(NetlinkError) -> Bool = { _ in true }) throws(NetlinkError) -> ApplyReport {
        var attempt = 0
        while true {
            attempt += 1
            let generation = try socket.generation()
            var present: [String] = []
            for name in tables where try socket.tableExists(family: Self.family, name: name) {
                guard try stillRemovable(name) else {
                    return ApplyReport(backend: Self.name, outcome: .unchanged, messages: 0,
                                       reason: "table inet \(name) changed while draining (capture installed again?); left in place")
                }
                present.append(name)
            }
            guard !present.isEmpty else { return ApplyReport(backend: Self.name, outcome: .absent, messages: 0) }
            let batch = NetlinkBatch(generation: generation)
            for name in present { TableRemoval.append(family: Self.family, name: name, to: batch) }
            do throws(NetlinkError) {
                try socket.commit(batch, expectedGeneration: generation)
            } catch where error.errno == ERESTART && attempt < 5 {
                continue
            }
            for name in present {
                ApplyRecord.remove(at: ApplyRecord.path(directory: recordDirectory, table: name, namespaceIdentity: namespaceIdentity))
            }
            lastWritten = nil
            index = nil
            unindexed = nil
            return ApplyReport(backend: Self.name, outcome: .flushed, messages: batch.messageCount,
                               changes: present.map { "delete table inet \($0)" })
        }
    }

    /// What is installed, whether it is what Turnout last wrote, and how it differs from `table`.
    public func status(comparingWith table: ServiceTable?, options: ServiceCompilerOptions) throws(NetlinkError) -> InstalledStatus {
        settleFirst()
        let name = NftablesServiceCompiler.tableName
        let installed = try TableReader.read(family: Self.family, name: name, from: socket)
        var summary: [String] = []
        if let installed {
            summary.append("table inet \(name): \(installed.chains.count) chains, \(installed.ruleCount) rules, \(installed.sets.count) sets and maps, \(installed.elementCount) elements")
            let record = ApplyRecord.load(from: ApplyRecord.path(directory: recordDirectory, table: name, namespaceIdentity: namespaceIdentity))
            switch record {
            case nil: summary.append("no record of Turnout's last apply in this namespace")
            case let record? where record.digest == WireDigest(installed).description:
                summary.append("matches what Turnout last applied (digest \(record.digest.prefix(12)))")
            case .some: summary.append("DRIFT: differs from what Turnout last applied; the next apply rebuilds it")
            }
        } else {
            summary.append("table inet \(name): not installed")
        }
        for other in Self.ownedTables where other != name {
            if try socket.tableExists(family: Self.family, name: other) { summary.append("table inet \(other): installed") }
        }
        var drift: [String]?
        if let table {
            let desired = NftablesLowering.lower(NftablesServiceCompiler.compile(table, options: options))
            drift = TableComparison.lines(installed: installed, desired: desired)
        }
        return InstalledStatus(backend: Self.name, installed: installed != nil, summary: summary, drift: drift)
    }

    /// The table as the kernel holds it now, for tests and `status`.
    public func readInstalled(_ name: String = NftablesServiceCompiler.tableName) throws(NetlinkError) -> WireTable? {
        settleFirst()
        return try TableReader.read(family: Self.family, name: name, from: socket)
    }

    private func recordPath(_ table: String) -> String {
        ApplyRecord.path(directory: recordDirectory, table: table, namespaceIdentity: namespaceIdentity)
    }

    /// Sends `delta` phase by phase (``TableDelta/Phase``): the first transaction bound to
    /// `generation`, each next one to the generation the one before made, with a grace period
    /// (``GracePeriod``) between a switchover and the retire after it. Returns the messages
    /// sent and the generation after the last phase sent. With ``RetireTiming/deferred`` it
    /// stops before that retire and leaves it pending for ``settle()``; the caller then writes
    /// no record.
    ///
    /// A switchover refused after its prepare landed is undone by one more transaction, so a
    /// refused apply still leaves the ruleset as it was. If that fails too, or the retire phase
    /// is refused, the table is left between the old and the new one, which still translates
    /// every connection; the backend then forgets what it wrote and deletes the record, so that
    /// the next apply reads the kernel and rebuilds. The phase's error is thrown either way
    /// (ERESTART included, on which the full path starts over).
    private func commit(_ delta: TableDelta, from generation: UInt32, recordPath: String) throws(NetlinkError) -> (messages: Int, generation: UInt32) {
        var messages = 0
        var current = generation
        for (number, phase) in delta.phases.enumerated() {
            // A packet that took the old rules' path before the switchover must be out of the
            // hooks before the retire deletes what that path still looks up.
            let afterSwitchover = phase == .retire && delta.phases[..<number].contains(.switchover)
            if afterSwitchover && retireTiming == .deferred {
                pendingRetire = PendingRetire(delta: delta, generation: current, recordPath: recordPath)
                break
            }
            messages += try commit(phase, of: delta, at: current, undoable: number > 0, waitFirst: afterSwitchover, recordPath: recordPath)
            current &+= 1
        }
        return (messages, current)
    }

    /// Sends one phase of `delta` bound to `generation` (after a grace period if `waitFirst`);
    /// returns its message count. On failure after an earlier phase landed (`undoable`), forgets
    /// what was written and, for a switchover, undoes its prepare, as
    /// ``commit(_:from:recordPath:)`` says.
    private func commit(_ phase: TableDelta.Phase, of delta: TableDelta, at generation: UInt32, undoable: Bool, waitFirst: Bool,
                        recordPath: String) throws(NetlinkError) -> Int {
        let batch = NetlinkBatch(generation: generation)
        delta.append(phase, to: batch)
        if waitFirst { awaitGracePeriod() }
        do throws(NetlinkError) {
            try beforePhase?(phase)
            try socket.commit(batch, expectedGeneration: generation)
        } catch {
            guard undoable else { throw error }
            lastWritten = nil
            index = nil
            unindexed = nil
            var undone = false
            if phase == .switchover {
                let undo = NetlinkBatch(generation: generation)
                delta.appendUndoingPrepare(to: undo)
                undone = (try? socket.commit(undo, expectedGeneration: generation)) != nil
            }
            if !undone { unlink(recordPath) }
            throw error
        }
        return batch.messageCount
    }

    /// Sends the retire that a ``RetireTiming/deferred`` apply held back, after one grace period
    /// (``GracePeriod``), and writes the apply's record; returns the messages sent (0: nothing
    /// was pending). Blocks for the grace period (8 ms here) and one commit.
    ///
    /// If the retire fails (ERESTART: another process committed since the switchover), the error
    /// is thrown, the table is left between old and new, which still translates every
    /// connection, and the backend forgets what it wrote and deletes the record: the next apply
    /// reads the kernel back and rebuilds (or, when only a rebuild's copy is left beside a table
    /// that is already right, deletes just the copy). Nothing is pending afterwards either way.
    @discardableResult
    public func settle() throws(NetlinkError) -> Int {
        guard let pending = pendingRetire else { return 0 }
        pendingRetire = nil
        let messages = try commit(.retire, of: pending.delta, at: pending.generation, undoable: true, waitFirst: true,
                                  recordPath: pending.recordPath)
        let generation = pending.generation &+ 1
        lastWritten?.generation = generation
        index?.generation = generation
        if let digest = index?.digest ?? lastWritten?.digest { saveRecord(digest, generation: generation, path: pending.recordPath) }
        return messages
    }

    /// ``settle()`` before any other call. A retire that fails only means the call starts
    /// from a table it must read back (settle() forgot what was written), so it goes on; a
    /// failure that lasts shows in the call's own error.
    private func settleFirst() {
        _ = try? settle()
    }

    private func saveRecord(_ digest: WireDigest, generation: UInt32, path: String) {
        // The record only saves a rebuild later; failing to write it must not fail the apply.
        try? ApplyRecord(digest: digest.description, generation: generation).save(to: path)
    }
}

private extension NetlinkError {
    /// The kernel refused a transaction for what it holds (a full map, an object it rejects):
    /// not ERESTART (another commit came first, and the apply starts over) and not a missing
    /// permission. A patch so refused is sent again as a rebuild, once; computed again, the
    /// same patch would be refused again.
    var refusesContent: Bool { errno != ERESTART && !isPermissionDenied }
}
