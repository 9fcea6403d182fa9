/// A worker's pipes for splicing: its ``PipePool`` and what a shortage of pipes costs, counted
/// and logged once.
///
/// Owned by one worker thread; not Sendable. Shared by both kinds of worker (epoll and
/// io_uring), whose bulk directions splice the same way.
struct WorkerPipes: ~Copyable {
    private var pool: PipePool
    private let counters: WorkerCounters
    private let worker: Int
    private let log: @Sendable (String) -> Void
    private var loggedUndersized = false
    private var loggedFailure = false

    init(worker: Int, configuration: ProxyConfiguration, account: PipeAccount, counters: WorkerCounters,
         log: @escaping @Sendable (String) -> Void) {
        pool = PipePool(limit: configuration.pipePoolLimit, account: account)
        self.counters = counters
        self.worker = worker
        self.log = log
    }

    /// A pipe from the pool; nil when none can be had, and the direction copies instead: the
    /// budget is spent, the kernel made an undersized pipe (the uid's allowance is spent, by
    /// this proxy or another of its processes), or no descriptor is left. Counted; the last two
    /// are logged once. A pipe the kernel made smaller than asked but at least its default size
    /// is used (and counted, and logged once, as undersized).
    mutating func take() -> Pipe? {
        do throws(PipePool.Shortage) {
            let (pipe, undersized) = try pool.take()
            if undersized { undersizedPipe(capacity: pipe.capacity, kept: true) }
            return pipe
        } catch {
            counters.copyFallbacks.wrappingAdd(1, ordering: .relaxed)
            switch error {
            case .budget:
                break
            case .undersized(let capacity):
                undersizedPipe(capacity: capacity, kept: false)
            case .failed(let failure):
                if !loggedFailure {
                    loggedFailure = true
                    log("worker \(worker): \(failure): bulk relays copy instead of splicing while no pipe can be made (logged once)")
                }
            }
            return nil
        }
    }

    /// Returns `pipe`; one that still holds bytes (`empty` false) is closed.
    mutating func give(_ pipe: Pipe, empty: Bool) {
        pool.give(pipe, empty: empty)
    }

    private mutating func undersizedPipe(capacity: Int, kept: Bool) {
        counters.undersizedPipes.wrappingAdd(1, ordering: .relaxed)
        guard !loggedUndersized else { return }
        loggedUndersized = true
        log("worker \(worker): the kernel made a \(capacity)-byte pipe: this uid's pipe allowance (fs.pipe-user-pages-soft) "
            + "is spent, by this proxy or another process of the uid; "
            + (kept ? "it is used, and no larger pipe is asked for" : "bulk relays copy instead of splicing")
            + " until pipes are free (logged once)")
    }
}
