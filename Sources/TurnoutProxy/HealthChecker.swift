import Glibc
import Synchronization
import TurnoutModel

/// What active health checks knew after one round: the endpoints marked unhealthy and each
/// endpoint's latest result.
///
/// Immutable and `Sendable`: ``HealthChecker`` makes a new one per round and hands it over; a
/// worker keeps the latest and reads it from any thread. An address it does not know (not
/// checked, or added since) counts as healthy, as a new endpoint starts healthy.
public struct EndpointHealthSnapshot: Sendable, Hashable {
    /// Rounds completed when this was taken, 1 for the first.
    public let round: UInt64
    /// The endpoints being checked, in the order the checker was given them.
    public let endpoints: [SocketAddress]
    /// The endpoints whose active checks failed their ``HealthCheckPolicy/unhealthyThreshold``
    /// in a row and have not passed the healthy threshold since.
    public let unhealthy: Set<SocketAddress>
    /// Each endpoint's latest result; an endpoint with none yet (no check could start) is absent.
    public let lastResults: [SocketAddress: HealthCheckResult]

    /// No endpoint, nothing unhealthy: what to use before the first round.
    public static let empty = EndpointHealthSnapshot(round: 0, endpoints: [], unhealthy: [], lastResults: [:])

    public init(round: UInt64, endpoints: [SocketAddress], unhealthy: Set<SocketAddress>, lastResults: [SocketAddress: HealthCheckResult]) {
        self.round = round
        self.endpoints = endpoints
        self.unhealthy = unhealthy
        self.lastResults = lastResults
    }

    /// False only for an endpoint marked unhealthy.
    public func isHealthy(_ address: SocketAddress) -> Bool {
        !unhealthy.contains(address)
    }
}

/// Runs active TCP checks of a set of endpoints on one thread of its own: every interval, a
/// non-blocking connect to each endpoint (success: the handshake completes before the timeout;
/// the connection is closed at once, no byte sent), all of a round's connects in flight together
/// under one `poll(2)`.
///
/// After every round it calls `publish` with an ``EndpointHealthSnapshot``, on the checker's
/// thread: the callback must be quick and must not block (store the snapshot and return). The
/// first round starts at once; each next one `interval` after the previous one started, or at
/// once if that round took longer. At most ``maxConcurrentChecks`` connects are in flight, so a
/// large endpoint set does not run the process out of descriptors; each connect gets the full
/// timeout from its own start.
///
/// A check that cannot start for a local reason (no descriptor, no ephemeral port: `socket(2)`
/// failing, or EADDRNOTAVAIL) records no result: the endpoint is not to blame.
///
/// Thread-safe: ``update(endpoints:)`` and ``stop()`` may be called from any thread. The
/// thread runs until ``stop()`` or the checker goes away; ``stop()`` wakes it at once and joins
/// it, which takes at most the `publish` call in progress. If `poll(2)` itself fails (which only
/// a kernel out of memory does) the thread ends, and ``failure`` says why.
public final class HealthChecker: Sendable {
    /// The most connects in flight at once.
    public static let maxConcurrentChecks = 256

    public let policy: HealthCheckPolicy
    private let control: Control
    private let thread: JoinableThread

    /// Starts the thread checking `endpoints` (duplicates once) under `policy`. Throws when the
    /// wake-up or the thread cannot be made (`eventfd(2)`, `pthread_create(3)`).
    public init(endpoints: [SocketAddress], policy: HealthCheckPolicy,
                publish: @escaping @Sendable (EndpointHealthSnapshot) -> Void) throws(SystemCallError) {
        self.policy = policy
        control = try Control()
        let runner = Runner(control: control, policy: policy, endpoints: endpoints, publish: publish)
        // The runner moves to the new thread, which is its only user from here on.
        thread = try JoinableThread(handingOver: runner) { $0.run() }
    }

    deinit { stop() }

    /// Replaces the endpoints to check, from the next round on. Endpoints that stay keep their
    /// state (health, streak, last result); new ones start healthy; removed ones are forgotten.
    /// A round in progress finishes with the old list.
    public func update(endpoints: [SocketAddress]) {
        control.requests.withLock { $0.endpoints = endpoints }
        control.wake()
    }

    /// Ends the thread and waits for it (a round in progress is abandoned, its connects closed).
    /// Only the first call waits; later ones, and a call from the `publish` callback (which runs
    /// on that thread), return at once.
    public func stop() {
        control.requests.withLock { $0.stopping = true }
        control.wake()
        thread.join()
    }

    /// Why the thread ended on its own (a failed `poll(2)`); nil while it runs or after ``stop()``.
    public var failure: SystemCallError? {
        control.requests.withLock(\.failure)
    }
}

extension HealthChecker {
    /// What the caller's threads ask of the checker's thread, and the ``Wakeup`` that wakes it.
    private final class Control: Sendable {
        struct Requests: Sendable {
            /// A new endpoint list not yet taken by the thread.
            var endpoints: [SocketAddress]?
            var stopping = false
            var failure: SystemCallError?
        }

        let requests = Mutex(Requests())
        /// Polled by the checker's thread; the thread re-reads the requests after every
        /// wake-up, so one pending wake-up covers any number of requests.
        let wakeup: Wakeup

        init() throws(SystemCallError) {
            wakeup = try Wakeup()
        }

        var isStopping: Bool { requests.withLock(\.stopping) }

        func wake() { wakeup.signal() }
    }

    /// The checker's thread: its loop and everything only it touches.
    private final class Runner {
        private let control: Control
        private let policy: HealthCheckPolicy
        private let publish: @Sendable (EndpointHealthSnapshot) -> Void
        private var endpoints: [SocketAddress] = []
        private var checks: [SocketAddress: ActiveHealthCheck] = [:]
        private var round: UInt64 = 0

        init(control: Control, policy: HealthCheckPolicy, endpoints: [SocketAddress],
             publish: @escaping @Sendable (EndpointHealthSnapshot) -> Void) {
            self.control = control
            self.policy = policy
            self.publish = publish
            replaceEndpoints(endpoints)
        }

        func run() {
            do throws(SystemCallError) {
                var nextRound = ContinuousClock.now
                while try pause(until: nextRound) {
                    if let update = control.requests.withLock({ requests in
                        defer { requests.endpoints = nil }
                        return requests.endpoints
                    }) {
                        replaceEndpoints(update)
                    }
                    let started = ContinuousClock.now
                    guard let results = try checkAll() else { return }
                    for (address, result) in results { checks[address]?.record(result) }
                    round += 1
                    publish(snapshot())
                    nextRound = max(started + policy.interval, .now)
                }
            } catch {
                control.requests.withLock { $0.failure = error }
            }
        }

        /// Waits until `deadline` or a stop; true to go on.
        private func pause(until deadline: ContinuousClock.Instant) throws(SystemCallError) -> Bool {
            while !control.isStopping {
                guard ContinuousClock.now < deadline else { return true }
                var entries = [pollfd(fd: control.wakeup.descriptor, events: Int16(POLLIN), revents: 0)]
                if try Syscalls.waitForAny(&entries, until: deadline) > 0 { control.wakeup.drain() }
            }
            return false
        }

        /// One round: a result per endpoint whose check could start; nil when a stop came.
        private func checkAll() throws(SystemCallError) -> [SocketAddress: HealthCheckResult]? {
            var waiting = endpoints[...]
            var inFlight: [(address: SocketAddress, fd: Int32, deadline: ContinuousClock.Instant)] = []
            var results: [SocketAddress: HealthCheckResult] = [:]
            defer { for check in inFlight { close(check.fd) } }
            while true {
                while inFlight.count < HealthChecker.maxConcurrentChecks, let address = waiting.popFirst() {
                    switch start(address) {
                    case .finished(let result): results[address] = result
                    case .connecting(let fd): inFlight.append((address, fd, .now + policy.timeout))
                    }
                }
                guard let deadline = inFlight.map(\.deadline).min() else { return results }
                var entries = [pollfd(fd: control.wakeup.descriptor, events: Int16(POLLIN), revents: 0)]
                entries += inFlight.map { pollfd(fd: $0.fd, events: Int16(POLLOUT), revents: 0) }
                _ = try Syscalls.waitForAny(&entries, until: deadline)
                if entries[0].revents != 0 { control.wakeup.drain() }
                if control.isStopping { return nil }
                let now = ContinuousClock.now
                var stillWaiting: [(address: SocketAddress, fd: Int32, deadline: ContinuousClock.Instant)] = []
                for (check, entry) in zip(inFlight, entries.dropFirst()) {
                    if entry.revents != 0 {
                        results[check.address] = finish(check.fd, check.address)
                        close(check.fd)
                    } else if now >= check.deadline {
                        results[check.address] = .failure(.timeout)
                        close(check.fd)
                    } else {
                        stillWaiting.append(check)
                    }
                }
                inFlight = stillWaiting
            }
        }

        private enum Start {
            /// Done at once (nil: no result, the check could not start).
            case finished(HealthCheckResult?)
            case connecting(Int32)
        }

        private func start(_ address: SocketAddress) -> Start {
            let fd: Int32
            do throws(SystemCallError) {
                fd = try Syscalls.socket(family: address.socketFamily, type: Int32(SOCK_STREAM.rawValue))
            } catch {
                return .finished(nil)
            }
            do throws(SystemCallError) {
                if try Syscalls.connect(fd, to: address) {
                    close(fd)
                    return .finished(.success)
                }
                return .connecting(fd)
            } catch {
                close(fd)
                return .finished(Self.result(of: error))
            }
        }

        /// The outcome of a connect that `poll` reported on.
        private func finish(_ fd: Int32, _ address: SocketAddress) -> HealthCheckResult? {
            guard let code = try? Syscalls.pendingError(fd) else { return nil }
            return code == 0 ? .success : Self.result(of: SystemCallError(call: "connect(\(address))", errno: code))
        }

        /// A failed connect's result; nil for a local shortage that says nothing of the endpoint.
        private static func result(of error: SystemCallError) -> HealthCheckResult? {
            switch error.errno {
            case ECONNREFUSED: .failure(.refused)
            case ETIMEDOUT: .failure(.timeout)
            case ENETUNREACH, EHOSTUNREACH: .failure(.unreachable)
            case EADDRNOTAVAIL, EMFILE, ENFILE, ENOBUFS, ENOMEM: nil
            default: .failure(.other(error))
            }
        }

        private func replaceEndpoints(_ list: [SocketAddress]) {
            var seen = Set<SocketAddress>()
            endpoints = list.filter { seen.insert($0).inserted }
            checks = Dictionary(uniqueKeysWithValues: endpoints.map { ($0, checks[$0] ?? ActiveHealthCheck(policy: policy)) })
        }

        private func snapshot() -> EndpointHealthSnapshot {
            EndpointHealthSnapshot(round: round, endpoints: endpoints,
                                   unhealthy: Set(endpoints.filter { checks[$0]?.isHealthy == false }),
                                   lastResults: checks.compactMapValues(\.lastResult))
        }
    }
}
