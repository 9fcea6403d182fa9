import Synchronization
import TurnoutModel

/// The data plane (`turnout proxy`): N workers taking captured connections, each routed by its
/// original destination and spliced to the endpoint a balancer picked.
///
/// `init` binds every worker's listeners (errors such as EADDRINUSE surface here, before
/// anything runs) and starts the workers. `reload(_:)` publishes a new table to all workers at
/// once; established connections keep their endpoint. `statistics()` sums every worker's
/// counters. `stop()` closes everything and joins the threads. All methods may be called from
/// any thread.
public final class TransparentProxy: Sendable {
    public let configuration: ProxyConfiguration
    private let cell: SnapshotCell
    private let workers: [(counters: WorkerCounters, signal: WorkerSignal)]
    private let threads: Mutex<[JoinableThread]>
    private let reloadsRefused = Atomic<UInt64>(0)
    private let reloadLock = Mutex(())

    /// Starts the proxy with `table`. `log` receives the workers' rare log lines (descriptor
    /// shortage, unexpected errors), from any thread. If a worker cannot bind its listeners,
    /// those already started are stopped and the error is thrown.
    public init(configuration: ProxyConfiguration, table: ServiceTable,
                log: @escaping @Sendable (String) -> Void) throws(SystemCallError) {
        self.configuration = configuration
        cell = SnapshotCell(ProxySnapshot(table: table, generation: 1))
        var workers: [(counters: WorkerCounters, signal: WorkerSignal)] = []
        var started: [JoinableThread] = []
        do throws(SystemCallError) {
            for index in 0..<max(1, configuration.workers) {
                let worker = try ProxyWorker(index: index, configuration: configuration, cell: cell, log: log)
                workers.append((worker.counters, worker.signal))
                // The worker moves to its thread, which is its only user from here on.
                started.append(try JoinableThread(handingOver: worker) { $0.run() })
            }
        } catch {
            for worker in workers { worker.signal.stop() }
            for thread in started { thread.join() }
            throw error
        }
        self.workers = workers
        threads = Mutex(started)
    }

    deinit { stop() }

    /// The snapshot in use.
    public var snapshot: ProxySnapshot { cell.snapshot }

    /// Publishes `table` to every worker: connections accepted from now on are routed by it.
    /// Returns its generation.
    @discardableResult
    public func reload(_ table: ServiceTable) -> UInt64 {
        reloadLock.withLock { _ in
            let previous = cell.snapshot
            let next = ProxySnapshot(table: table, generation: previous.generation + 1, previous: previous)
            cell.publish(next)
            return next.generation
        }
    }

    /// Counts a table that was refused (invalid), for `/stats` and `/metrics`.
    public func recordRefusedReload() {
        reloadsRefused.wrappingAdd(1, ordering: .relaxed)
    }

    /// Every worker's counters, summed now.
    public func statistics() -> ProxyStatistics {
        var statistics = ProxyStatistics()
        for worker in workers { worker.counters.add(to: &statistics) }
        statistics.workers = workers.count
        statistics.generation = cell.snapshot.generation
        statistics.reloadsRefused = reloadsRefused.load(ordering: .relaxed)
        return statistics
    }

    /// Stops every worker (their relays are closed) and waits for their threads.
    public func stop() {
        let running = threads.withLock { threads in
            defer { threads = [] }
            return threads
        }
        guard !running.isEmpty else { return }
        for worker in workers { worker.signal.stop() }
        for thread in running { thread.join() }
    }
}
