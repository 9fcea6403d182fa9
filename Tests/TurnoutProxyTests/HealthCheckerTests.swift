#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import Testing
import TurnoutModel
import TurnoutProxy

/// The active-check runner against real loopback sockets: a listener, a port nothing listens on.
///
/// Short intervals (50 ms) make the rounds quick; no assertion is about time: each waits (at
/// most 10 s) for the snapshot that shows the expected state, and checks round numbers, which
/// the results decide.
extension HealthTests {
    @Suite("active health checker on loopback")
    struct HealthCheckerTests {
        let policy = try! HealthCheckPolicy(interval: .milliseconds(50), timeout: .milliseconds(50), healthyThreshold: 2, unhealthyThreshold: 3)
        static let loopback = SocketAddress(address: .v4(0x7f00_0001), port: 0)

        @Test("a listener → healthy; a port nothing listens on → refused, unhealthy from round 3 (unhealthyThreshold)")
        func listenerAndRefused() throws {
            let listener = try TCPListener(bindingTo: Self.loopback)
            let closed = try Self.unusedPort()
            let log = SnapshotLog()
            let checker = try HealthChecker(endpoints: [listener.address, closed], policy: policy, publish: log.append)
            defer { checker.stop() }

            let unhealthy = try #require(try log.wait(draining: listener) { $0.unhealthy.contains(closed) })
            #expect(unhealthy.round == 3, "failures in rounds 1, 2 and 3: unhealthy after the third")
            #expect(log.all.filter { $0.round < 3 }.allSatisfy { $0.isHealthy(closed) })
            #expect(unhealthy.lastResults[closed] == .failure(.refused))
            #expect(unhealthy.lastResults[listener.address] == .success)
            #expect(unhealthy.isHealthy(listener.address))
            #expect(unhealthy.endpoints == [listener.address, closed])
        }

        @Test("the listener closed → unhealthy; reopened on the same port → healthy again")
        func listenerGoesAndComesBack() throws {
            let endpoint: SocketAddress
            let log = SnapshotLog()
            let checker: HealthChecker
            do {
                let listener = try TCPListener(bindingTo: Self.loopback)
                endpoint = listener.address
                checker = try HealthChecker(endpoints: [endpoint], policy: policy, publish: log.append)
                try #require(try log.wait(draining: listener) { $0.lastResults[endpoint] == .success } != nil)
            }
            defer { checker.stop() }

            let down = try #require(try log.wait { $0.unhealthy.contains(endpoint) })
            #expect(down.lastResults[endpoint] == .failure(.refused))

            let reopened = try TCPListener(bindingTo: endpoint)
            let up = try #require(try log.wait(draining: reopened, after: down.round) { $0.isHealthy(endpoint) })
            #expect(up.lastResults[endpoint] == .success)
            let before = try #require(log.all.first { $0.round == up.round - 1 })
            #expect(before.lastResults[endpoint] == .success && !before.isHealthy(endpoint), "one success is not enough: healthyThreshold 2")
        }

        @Test("a listener whose accept queue is full (the kernel drops the SYN) → timeout, unhealthy from round 3")
        func timeout() throws {
            // Backlog 0 queues one connection; Linux drops SYNs while the queue is full.
            let listener = try TCPListener(bindingTo: Self.loopback, backlog: 0)
            let queued = try TCPConnection.connect(to: listener.address, until: .now + .seconds(5))
            let probe = #expect(throws: SystemCallError.self) {
                _ = try TCPConnection.connect(to: listener.address, until: .now + .milliseconds(200))
            }
            try #require(probe?.errno == ETIMEDOUT, "the queue is full: the SYN is dropped")

            let log = SnapshotLog()
            let checker = try HealthChecker(endpoints: [listener.address], policy: policy, publish: log.append)
            defer { checker.stop() }
            let down = try #require(try log.wait { $0.unhealthy.contains(listener.address) })
            #expect(down.round == 3)
            #expect(down.lastResults[listener.address] == .failure(.timeout))
            _ = consume queued
        }

        @Test("update → a staying endpoint keeps its state, a removed one leaves the snapshot, a new one starts healthy")
        func update() throws {
            let listener = try TCPListener(bindingTo: Self.loopback)
            let closed = try Self.unusedPort()
            let log = SnapshotLog()
            let checker = try HealthChecker(endpoints: [closed], policy: policy, publish: log.append)
            defer { checker.stop() }
            let down = try #require(try log.wait { $0.unhealthy.contains(closed) })

            checker.update(endpoints: [closed, listener.address, closed])
            let both = try #require(try log.wait(draining: listener, after: down.round) { $0.endpoints == [closed, listener.address] })
            #expect(!both.isHealthy(closed), "kept: a reset state would be healthy for two more rounds")
            #expect(both.isHealthy(listener.address))

            checker.update(endpoints: [listener.address])
            let one = try #require(try log.wait(draining: listener, after: both.round) { $0.endpoints == [listener.address] })
            #expect(one.unhealthy.isEmpty && one.lastResults[closed] == nil)
        }

        @Test("stop() with a 60 s interval → returns promptly (woken, not waiting the interval); a second stop() too")
        func stopWakesTheThread() throws {
            let policy = try HealthCheckPolicy(interval: .seconds(60), timeout: .seconds(1))
            let log = SnapshotLog()
            let checker = try HealthChecker(endpoints: [try Self.unusedPort()], policy: policy, publish: log.append)
            try #require(try log.wait { $0.round == 1 } != nil)
            let stopped = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                checker.stop()
                checker.stop()
                stopped.signal()
            }
            #expect(stopped.wait(timeout: .now() + 10) == .success)
            #expect(checker.failure == nil)
        }

        /// An address on loopback that nothing listens on: a port the kernel gave out, then closed.
        static func unusedPort() throws -> SocketAddress {
            let listener = try TCPListener(bindingTo: loopback)
            return listener.address
        }
    }
}

/// The snapshots a checker published, for a test thread to wait on.
final class SnapshotLog: Sendable {
    private let snapshots = Mutex<[EndpointHealthSnapshot]>([])

    var all: [EndpointHealthSnapshot] { snapshots.withLock { $0 } }

    @Sendable func append(_ snapshot: EndpointHealthSnapshot) {
        snapshots.withLock { $0.append(snapshot) }
    }

    /// The first snapshot after round `after` that satisfies `condition`, waiting at most
    /// `timeLimit`, and accepting (and closing at once) what `listener` queues meanwhile, so the
    /// checks never fill its backlog.
    func wait(draining listener: borrowing TCPListener, after round: UInt64 = 0, timeLimit: Duration = .seconds(10),
              until condition: (EndpointHealthSnapshot) -> Bool) throws -> EndpointHealthSnapshot? {
        let deadline = ContinuousClock.now + timeLimit
        while true {
            if let found = first(after: round, condition) { return found }
            guard ContinuousClock.now < deadline else { return nil }
            _ = try listener.accept(until: .now + .milliseconds(10))
        }
    }

    /// As above, with no listener to drain.
    func wait(after round: UInt64 = 0, timeLimit: Duration = .seconds(10),
              until condition: (EndpointHealthSnapshot) -> Bool) throws -> EndpointHealthSnapshot? {
        let deadline = ContinuousClock.now + timeLimit
        while true {
            if let found = first(after: round, condition) { return found }
            guard ContinuousClock.now < deadline else { return nil }
            var none = pollfd()
            _ = poll(&none, 0, 10)
        }
    }

    private func first(after round: UInt64, _ condition: (EndpointHealthSnapshot) -> Bool) -> EndpointHealthSnapshot? {
        all.first { $0.round > round && condition($0) }
    }
}
