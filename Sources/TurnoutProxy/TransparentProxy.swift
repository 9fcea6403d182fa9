import Glibc
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
    /// How the workers wait on their sockets: ``ProxyConfiguration/IOEngine/uring`` or
    /// ``ProxyConfiguration/IOEngine/epoll`` (what `auto` came to).
    public let io: ProxyConfiguration.IOEngine
    private let cell: SnapshotCell
    private let healthCell: EndpointHealthCell
    /// Nil when active checks are off.
    private let checker: HealthChecker?
    private let workers: [(counters: WorkerCounters, signal: WorkerSignal)]
    private let pipes: PipeAccount
    private let threads: Mutex<[JoinableThread]>
    private let reloadLock = Mutex(())

    /// Starts the proxy with `table`. `log` receives the workers' rare log lines (descriptor
    /// shortage, unexpected errors), from any thread. If a worker cannot bind its listeners,
    /// those already started are stopped and the error is thrown; so is io_uring's refusal
    /// when ``ProxyConfiguration/io`` asks for it (`auto` falls back to epoll, and logs why).
    ///
    /// Sets SIGPIPE to be ignored, process-wide: `splice(2)` into a socket whose peer reset it
    /// raises SIGPIPE (it has no `MSG_NOSIGNAL`), whose default action would kill the process
    /// for one bad connection. The splice then fails with EPIPE and only that relay ends (nginx
    /// and HAProxy ignore SIGPIPE for the same reason). Child processes started with
    /// `posix_spawn` and default dispositions (``SpawnedProcess`` in TurnoutControl) are not affected.
    public init(configuration: ProxyConfiguration, table: ServiceTable,
                log: @escaping @Sendable (String) -> Void) throws(SystemCallError) {
        signal(SIGPIPE, SIG_IGN)
        self.configuration = configuration
        let io = try Self.engine(configuration.io, log: log)
        self.io = io
        let first = ProxySnapshot(table: table, generation: 1, outlierPolicy: configuration.outlier)
        cell = SnapshotCell(first)
        let healthCell = EndpointHealthCell()
        self.healthCell = healthCell
        if let policy = configuration.healthCheck {
            checker = try HealthChecker(endpoints: Self.checkedEndpoints(first), policy: policy) { healthCell.publish($0) }
        } else {
            checker = nil
        }
        let pipes = PipeAccount(limit: configuration.pipeBudget.resolved(), preferredSize: configuration.pipeSize,
                                pageSize: Syscalls.pageSize)
        self.pipes = pipes
        var workers: [(counters: WorkerCounters, signal: WorkerSignal)] = []
        var started: [JoinableThread] = []
        do throws(SystemCallError) {
            for index in 0..<max(1, configuration.workers) {
                // A worker moves to its thread, which is its only user from here on.
                if io == .uring {
                    let worker = try RingWorker(index: index, configuration: configuration, cell: cell, health: healthCell,
                                                pipes: pipes, log: log)
                    workers.append((worker.counters, worker.signal))
                    started.append(try JoinableThread(handingOver: worker) { $0.run() })
                } else {
                    let worker = try ProxyWorker(index: index, configuration: configuration, cell: cell, health: healthCell,
                                                 pipes: pipes, log: log)
                    workers.append((worker.counters, worker.signal))
                    started.append(try JoinableThread(handingOver: worker) { $0.run() })
                }
            }
        } catch {
            for worker in workers { worker.signal.stop() }
            for thread in started { thread.join() }
            checker?.stop()
            throw error
        }
        self.workers = workers
        threads = Mutex(started)
    }

    deinit { stop() }

    /// Why this process cannot have io_uring workers (no io_uring, refused, a kernel before
    /// 6.1), or nil when it can: a small ring is made and dropped.
    public static func uringUnavailability() -> SystemCallError? {
        CompletionRing.unavailability()
    }

    /// What `requested` comes to here: io_uring when asked for or when `auto` finds it
    /// available, epoll otherwise. Throws io_uring's refusal only when it was asked for.
    private static func engine(_ requested: ProxyConfiguration.IOEngine,
                               log: @Sendable (String) -> Void) throws(SystemCallError) -> ProxyConfiguration.IOEngine {
        switch requested {
        case .epoll:
            return .epoll
        case .uring:
            if let refusal = CompletionRing.unavailability() { throw refusal }
            return .uring
        case .auto:
            guard let refusal = CompletionRing.unavailability() else { return .uring }
            log("io_uring is not available (\(refusal)): the workers use epoll")
            return .epoll
        }
    }

    /// The snapshot in use.
    public var snapshot: ProxySnapshot { cell.snapshot }

    /// Publishes `table` to every worker: connections accepted from now on are routed by it.
    /// Returns its generation.
    @discardableResult
    public func reload(_ table: ServiceTable) -> UInt64 {
        reloadLock.withLock { _ in
            let previous = cell.snapshot
            let next = ProxySnapshot(table: table, generation: previous.generation + 1,
                                     outlierPolicy: configuration.outlier, previous: previous)
            cell.publish(next)
            checker?.update(endpoints: Self.checkedEndpoints(next))
            return next.generation
        }
    }

    /// Every worker's counters, summed now.
    public func statistics() -> ProxyStatistics {
        var statistics = ProxyStatistics()
        for worker in workers { worker.counters.add(to: &statistics) }
        statistics.workers = workers.count
        statistics.io = io.rawValue
        statistics.generation = cell.snapshot.generation
        statistics.pipeBytes = Int64(pipes.bytesHeld)
        statistics.pipeBytesPeak = Int64(pipes.bytesPeak)
        statistics.pipeBudget = pipes.limit.map(Int64.init)
        let snapshot = cell.snapshot
        let health = healthCell.snapshot
        let now = ContinuousClock.now
        for route in snapshot.routes.routes {
            let ejected = snapshot.outliers[route.id].ejected(at: now).endpoints
            for endpoint in route.endpoints {
                statistics.endpoints[UpstreamKey(service: route.label, endpoint: "\(endpoint.address)")] =
                    EndpointStatus(healthy: health.isHealthy(endpoint.address), ejected: ejected.contains(endpoint.address))
            }
        }
        return statistics
    }

    /// Connections open now over all workers, in any phase (one relaxed load per worker).
    public var openConnections: Int {
        workers.reduce(0) { $0 + Int($1.counters.relays.load(ordering: .relaxed)) }
    }

    /// Connections accepted since the start, over all workers (one relaxed load per worker).
    public var acceptedConnections: UInt64 {
        workers.reduce(0) { $0 + $1.counters.accepted.load(ordering: .relaxed) }
    }

    /// Stops listening and keeps relaying: each worker shuts its listeners down
    /// (`shutdown(SHUT_RD)`, which takes them out of their `SO_REUSEPORT` groups), so new
    /// connections go to the other listeners of the group only (a replacing proxy's), while
    /// every open connection goes on. Connections waiting in an accept queue move with
    /// `net.ipv4.tcp_migrate_req=1` and are reset without it. Returns once every worker has
    /// done so, or false after `limit` (a worker stuck in a long batch). Cannot be undone.
    @discardableResult
    public func closeListeners(waitingAtMost limit: Duration = .seconds(2)) -> Bool {
        for worker in workers { worker.signal.closeListeners() }
        let deadline = ContinuousClock.now + limit
        while !workers.allSatisfy({ $0.signal.haveListenersClosed }) {
            guard ContinuousClock.now < deadline else { return false }
            usleep(1_000)
        }
        return true
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
        checker?.stop()
    }

    /// Every endpoint some route may pick, once each: what the active checks watch.
    private static func checkedEndpoints(_ snapshot: ProxySnapshot) -> [SocketAddress] {
        var seen = Set<SocketAddress>()
        return snapshot.routes.routes.flatMap { $0.endpoints.map(\.address) }.filter { seen.insert($0).inserted }
    }
}
