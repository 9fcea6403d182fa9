import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// Keeps what is installed (kernel rules, a proxy's snapshot) in step with a ``TableSource``,
/// and keeps the last good table when the source fails.
///
/// The rules:
/// * A burst of changes is installed once: after 100 ms without a change, at most 1 s after its
///   first change (``Debounce``).
/// * A table equal to the one installed installs nothing.
/// * The targets get the table in order (kernel first, then the proxy); a target that fails
///   leaves its previous table in place, the failure is logged and counted, and the install is
///   retried after ``retryInterval`` (a later change from the source replaces it).
/// * A source that is unreachable, or holds an invalid table, changes nothing: the last good
///   table stays installed, and logs, ``status`` and the `/stats` and `/metrics` of the proxy
///   say so. Rules are never flushed because a source failed.
/// * Every table installed is also written to `lastGoodFile`; ``start()`` installs that file
///   first, so a restarted node serves its last table before the source answers.
/// * Every install after the first logs what it changed, service by service
///   (`revision 7 changes shop/api: +10.1.0.7, 10.1.0.6 weight 9→1`; ``TableDiff/summary(services:endpoints:)``).
///
/// Runs on a thread of its own from ``start()`` to ``stop()``; the source's events are queued
/// (any thread) and handled there, so targets are called from that one thread only. `status`
/// may be read from any thread.
public final class Reconciler: Sendable {
    /// What the reconciler knows, for `turnout status`, `/stats` and `/metrics`.
    public struct Status: Sendable, Hashable, Codable {
        /// The source's location.
        public var source: String
        /// `waiting` (nothing heard yet), `up`, `unavailable` or `invalid`.
        public var sourceState: String = "waiting"
        /// Why the source is unavailable or invalid; nil while up.
        public var sourceProblem: String?
        /// The latest revision the source reported (valid or not).
        public var sourceRevision: String?
        /// The revision of the table installed now (`last-good file` after a restart, until the
        /// source answers).
        public var installedRevision: String?
        /// When the last install succeeded, in seconds since 1970 (wall clock).
        public var installedAt: Double?
        public var installs: UInt64 = 0
        /// Tables the source sent that equalled the one installed.
        public var unchanged: UInt64 = 0
        public var installFailures: UInt64 = 0
        public var invalidTables: UInt64 = 0
        /// Times the source became unavailable.
        public var outages: UInt64 = 0
        /// The last install failure, for people.
        public var lastFailure: String?
    }

    /// How long after a failed install it is tried again.
    public static let retryInterval: Duration = .seconds(2)

    public let source: any TableSource
    public let targets: [any ReconcileTarget]
    public let lastGoodFile: String?
    private let debounce: Debounce
    private let log: @Sendable (String) -> Void
    private let wakeup: Wakeup
    private let shared: Mutex<Shared>
    /// What the targets hold before the first install, when the caller installed it itself.
    private let initial: ServiceTable?
    /// Keeps `lastGoodFile` off the reconciling thread (an `fsync` may take seconds).
    private let lastGoodWriter: LastGoodWriter?

    private struct Shared {
        var status: Status
        var events: [TableSourceEvent] = []
        var stopping = false
        var thread: JoinableThread?
    }

    /// `installed` is the table the targets already hold (a proxy started with it), so that the
    /// source's first answer installs nothing when it is the same; nil when they hold nothing
    /// the reconciler should trust.
    public init(source: any TableSource, targets: [any ReconcileTarget], lastGoodFile: String?, installed: ServiceTable? = nil,
                debounce: Debounce = .standard, log: @escaping @Sendable (String) -> Void) throws(SystemCallError) {
        self.source = source
        initial = installed
        self.targets = targets
        self.lastGoodFile = lastGoodFile
        self.debounce = debounce
        self.log = log
        wakeup = try Wakeup()
        shared = Mutex(Shared(status: Status(source: source.location)))
        lastGoodWriter = try lastGoodFile.map { path throws(SystemCallError) in try LastGoodWriter(path: path, log: log) }
    }

    deinit { stop() }

    public var status: Status { shared.withLock(\.status) }

    /// Installs the last-good file if there is one (before the source is heard from), then
    /// starts the source and the reconciling thread. Throws when the source or the thread
    /// cannot start; a last-good file that cannot be read or installed is logged, not thrown
    /// (the source will provide a table).
    public func start() throws(SystemCallError) {
        let state = State(debounce: debounce)
        if let initial {
            state.installed = initial
            shared.withLock { $0.status.installedRevision = "startup" }
        }
        if let path = lastGoodFile {
            do {
                if let table = try LastGoodTable.read(path) {
                    install(table, revision: "last-good file", state: state, writeBack: false)
                }
            } catch {
                log("last-good file \(path) not used: \(error)")
            }
        }
        try source.start { [weak self] event in
            guard let self else { return }
            shared.withLock { $0.events.append(event) }
            wakeup.signal()
        }
        do throws(SystemCallError) {
            let thread = try JoinableThread(handingOver: state) { [self] state in run(state) }
            shared.withLock { $0.thread = thread }
        } catch {
            source.stop()
            throw error
        }
    }

    /// Stops the source and the thread; what is installed stays installed.
    public func stop() {
        let thread = shared.withLock { shared in
            defer { shared.thread = nil }
            shared.stopping = true
            return shared.thread
        }
        source.stop()
        wakeup.signal()
        thread?.join()
        lastGoodWriter?.stop()
    }

    /// The reconciling thread's own state.
    private final class State {
        var debounce: Debounce
        /// The source's latest valid table, not yet installed.
        var pending: (table: ServiceTable, revision: String)?
        var retryAt: ContinuousClock.Instant?
        var installed: ServiceTable?

        init(debounce: Debounce) {
            self.debounce = debounce
        }
    }

    private func run(_ state: State) {
        while true {
            let deadline = [state.debounce.due, state.retryAt].compactMap { $0 }.min()
            _ = try? wakeup.wait(until: deadline)
            let (events, stopping) = shared.withLock { shared in
                defer { shared.events.removeAll() }
                return (shared.events, shared.stopping)
            }
            if stopping { return }
            let now = ContinuousClock.now
            for event in events { handle(event, state: state, now: now) }
            let due = [state.debounce.due, state.retryAt].compactMap { $0 }.min()
            if let due, now >= due, let pending = state.pending {
                state.debounce.fired()
                state.retryAt = nil
                state.pending = nil
                if !install(pending.table, revision: pending.revision, state: state, writeBack: true) {
                    state.pending = pending
                    state.retryAt = now + Self.retryInterval
                }
            }
        }
    }

    private func handle(_ event: TableSourceEvent, state: State, now: ContinuousClock.Instant) {
        switch event {
        case .table(let table, let revision):
            let wasDown = shared.withLock { shared in
                defer {
                    shared.status.sourceState = "up"
                    shared.status.sourceProblem = nil
                    shared.status.sourceRevision = revision
                }
                return shared.status.sourceState == "unavailable" || shared.status.sourceState == "invalid"
            }
            if wasDown { log("\(source.location): back at revision \(revision)") }
            state.pending = (table, revision)
            state.retryAt = nil
            state.debounce.changed(at: now)
        case .invalid(let error, let revision):
            // The source moved past any valid table still pending: install nothing.
            state.pending = nil
            state.retryAt = nil
            state.debounce.fired()
            let installed = shared.withLock { shared in
                shared.status.sourceState = "invalid"
                shared.status.sourceProblem = "\(error)"
                shared.status.sourceRevision = revision
                shared.status.invalidTables += 1
                return shared.status.installedRevision
            }
            log("\(source.location) revision \(revision) is not a valid table; keeping \(installed ?? "nothing installed"): \(error)")
        case .unavailable(let reason):
            let (isNew, installed) = shared.withLock { shared in
                let isNew = shared.status.sourceState != "unavailable"
                shared.status.sourceState = "unavailable"
                shared.status.sourceProblem = reason
                if isNew { shared.status.outages += 1 }
                return (isNew, shared.status.installedRevision)
            }
            // Logged once per outage: a source retrying every second must not flood the log.
            if isNew { log("\(source.location) unavailable; keeping \(installed ?? "nothing installed"): \(reason)") }
        }
    }

    /// Installs `table` into every target unless it is already installed; true when it is
    /// installed now.
    @discardableResult
    private func install(_ table: ServiceTable, revision: String, state: State, writeBack: Bool) -> Bool {
        if state.installed == table {
            shared.withLock { shared in
                shared.status.unchanged += 1
                shared.status.installedRevision = revision
            }
            return true
        }
        for target in targets {
            do {
                let line = try target.install(table)
                log("revision \(revision) → \(target.name): \(line)")
            } catch {
                shared.withLock { shared in
                    shared.status.installFailures += 1
                    shared.status.lastFailure = "\(target.name): \(error)"
                }
                log("revision \(revision) → \(target.name) failed, keeping what was installed: \(error)")
                return false
            }
        }
        // What changed, for people: the targets' lines say how it was installed, not what it
        // was. The first install has nothing to compare with (its targets' lines count it).
        // Tables that differ only in their services' order have an empty diff: nothing to say.
        if let previous = state.installed, case let diff = TableDiff(from: previous, to: table), !diff.isEmpty {
            log("revision \(revision) changes \(diff.summary())")
        }
        state.installed = table
        let now = WallClock.now()
        shared.withLock { shared in
            shared.status.installs += 1
            shared.status.installedRevision = revision
            shared.status.installedAt = now
        }
        if writeBack { lastGoodWriter?.write(table) }
        return true
    }
}
