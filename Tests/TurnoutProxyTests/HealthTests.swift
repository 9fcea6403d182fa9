import Testing
import TurnoutControl
import TurnoutModel
import TurnoutProxy
import TurnoutTestSupport

/// Endpoint health, one nested suite per piece (so `--filter Health` selects them all): active
/// check thresholds, passive outlier ejection, the panic threshold and the exclusion set.
@Suite("Endpoint health")
enum HealthTests {}

/// The active-check state machine: flips only after the threshold of results in a row.
extension HealthTests {
    @Suite("active health check thresholds")
    struct ActiveHealthCheckTests {
        struct Case: CustomTestStringConvertible, Sendable {
            let healthyThreshold: Int
            let unhealthyThreshold: Int
            /// One character per check: `s` success, `f` failure.
            let results: String
            /// The health after each check: `H` healthy, `U` unhealthy.
            let health: String
            var testDescription: String { "healthy \(healthyThreshold), unhealthy \(unhealthyThreshold): \(results) → \(health)" }
        }

        static let cases: [Case] = [
            Case(healthyThreshold: 2, unhealthyThreshold: 3, results: "fff", health: "HHU"),
            Case(healthyThreshold: 2, unhealthyThreshold: 3, results: "ffsfff", health: "HHHHHU"),
            Case(healthyThreshold: 2, unhealthyThreshold: 3, results: "fffss", health: "HHUUH"),
            Case(healthyThreshold: 2, unhealthyThreshold: 3, results: "fffsfss", health: "HHUUUUH"),
            Case(healthyThreshold: 2, unhealthyThreshold: 3, results: "ssssff", health: "HHHHHH"),
            Case(healthyThreshold: 1, unhealthyThreshold: 1, results: "fsfs", health: "UHUH"),
            Case(healthyThreshold: 3, unhealthyThreshold: 1, results: "fssfsss", health: "UUUUUUH"),
        ]

        @Test("a sequence of check results → the health after each, flipping only at the threshold", arguments: cases)
        func thresholds(_ example: Case) throws {
            let policy = try HealthCheckPolicy(healthyThreshold: example.healthyThreshold, unhealthyThreshold: example.unhealthyThreshold)
            var check = ActiveHealthCheck(policy: policy)
            var health = ""
            for character in example.results {
                let wasHealthy = check.isHealthy
                let result: HealthCheckResult = character == "s" ? .success : .failure(.refused)
                let flipped = check.record(result)
                #expect(flipped == (check.isHealthy != wasHealthy))
                #expect(check.lastResult == result)
                health.append(check.isHealthy ? "H" : "U")
            }
            #expect(health == example.health)
        }

        @Test("a new endpoint → healthy, no streak, no result yet")
        func startsHealthy() {
            let check = ActiveHealthCheck(policy: .standard)
            #expect(check.isHealthy && check.streak == 0 && check.lastResult == nil)
        }

        @Test("defaults → 5 s interval, 1 s timeout, healthy after 2, unhealthy after 3")
        func defaults() throws {
            for policy in [HealthCheckPolicy.standard, try HealthCheckPolicy()] {
                #expect(policy.interval == .seconds(5) && policy.timeout == .seconds(1))
                #expect(policy.healthyThreshold == 2 && policy.unhealthyThreshold == 3)
            }
        }

        @Test("zero or negative values, or a timeout above the interval → ValueError",
              arguments: [(Duration.zero, Duration.seconds(1), 2, 3), (.seconds(5), .zero, 2, 3), (.seconds(5), .seconds(-1), 2, 3),
                          (.seconds(1), .seconds(2), 2, 3), (.seconds(5), .seconds(1), 0, 3), (.seconds(5), .seconds(1), 2, -1)])
        func invalid(_ interval: Duration, _ timeout: Duration, _ healthy: Int, _ unhealthy: Int) {
            #expect(throws: ValueError.self) {
                try HealthCheckPolicy(interval: interval, timeout: timeout, healthyThreshold: healthy, unhealthyThreshold: unhealthy)
            }
        }
    }
}

/// Passive outlier ejection, with time given explicitly.
extension HealthTests {
    @Suite("outlier ejection")
    struct OutlierEjectionTests {
        let start = ContinuousClock.now
        /// 3 failures, 10 s base, 35 s cap, 50%: small numbers that make the arithmetic visible.
        let policy = try! OutlierPolicy(consecutiveFailures: 3, baseEjectionTime: .seconds(10), maxEjectionTime: .seconds(35), maxEjectedPercent: 50)

        func ejection(_ endpoints: [String] = ["a", "b", "c", "d"]) -> OutlierEjection<String> {
            OutlierEjection(endpoints: endpoints, policy: policy)
        }

        /// Fails `endpoint` `count` times at `time`; answers the last outcome.
        @discardableResult
        func fail(_ ejection: inout OutlierEjection<String>, _ endpoint: String, times count: Int, at time: ContinuousClock.Instant) -> OutlierEjection<String>.FailureOutcome {
            var outcome = OutlierEjection<String>.FailureOutcome.ignored
            for _ in 0..<count { outcome = ejection.recordConnectFailure(endpoint: endpoint, at: time) }
            return outcome
        }

        @Test("defaults → 5 failures, 30 s base, 300 s cap, 50% at most")
        func defaults() throws {
            for policy in [OutlierPolicy.standard, try OutlierPolicy()] {
                #expect(policy.consecutiveFailures == 5 && policy.baseEjectionTime == .seconds(30))
                #expect(policy.maxEjectionTime == .seconds(300) && policy.maxEjectedPercent == 50)
            }
        }

        @Test("0 failures, a zero base, a cap below the base, or a percent outside 0...100 → ValueError",
              arguments: [(0, Duration.seconds(30), Duration.seconds(300), 50), (5, .zero, .seconds(300), 50),
                          (5, .seconds(30), .seconds(10), 50), (5, .seconds(30), .seconds(300), 101), (5, .seconds(30), .seconds(300), -1)])
        func invalid(_ failures: Int, _ base: Duration, _ max: Duration, _ percent: Int) {
            #expect(throws: ValueError.self) {
                try OutlierPolicy(consecutiveFailures: failures, baseEjectionTime: base, maxEjectionTime: max, maxEjectedPercent: percent)
            }
        }

        @Test("3 failures in a row → counted 1, 2, then ejected for the 10 s base; back at exactly +10 s")
        func ejectAfterThreshold() {
            var outliers = ejection()
            #expect(outliers.recordConnectFailure(endpoint: "a", at: start) == .counted(consecutiveFailures: 1))
            #expect(outliers.recordConnectFailure(endpoint: "a", at: start) == .counted(consecutiveFailures: 2))
            #expect(outliers.recordConnectFailure(endpoint: "a", at: start) == .ejected(until: start + .seconds(10)))
            #expect(outliers.isEjected("a", at: start + .milliseconds(9_999)))
            #expect(outliers.ejectedEndpoints(at: start + .seconds(5)) == ["a"])
            #expect(!outliers.isEjected("a", at: start + .seconds(10)))
            #expect(!outliers.isEjected("b", at: start) && !outliers.isEjected("unknown", at: start))
            #expect(outliers.ejectionsTotal == 1 && outliers.timesEjected("a", at: start) == 1)
        }

        @Test("f f s f f → not ejected (a success resets the count); one more f → ejected")
        func successResets() {
            var outliers = ejection()
            fail(&outliers, "a", times: 2, at: start)
            outliers.recordConnectSuccess(endpoint: "a", at: start)
            #expect(outliers.consecutiveFailures("a") == 0)
            #expect(fail(&outliers, "a", times: 2, at: start) == .counted(consecutiveFailures: 2))
            #expect(!outliers.isEjected("a", at: start))
            #expect(fail(&outliers, "a", times: 1, at: start) == .ejected(until: start + .seconds(10)))
        }

        @Test("the k-th ejection in a row → base × k, capped at 35 s", arguments: [(1, 10), (2, 20), (3, 30), (4, 35), (5, 35), (6, 35)])
        func growsAndCaps(_ ejections: Int, _ seconds: Int64) throws {
            var outliers = ejection()
            var now = start
            var length = Duration.zero
            for _ in 0..<ejections {
                // Each failure burst comes the instant the endpoint returns: no time to decay.
                guard case .ejected(let until) = fail(&outliers, "a", times: 3, at: now) else {
                    Issue.record("not ejected")
                    return
                }
                length = now.duration(to: until)
                now = until
            }
            #expect(length == .seconds(seconds))
        }

        @Test("returns → taken once, in return order, counted")
        func returns() {
            var outliers = ejection()
            fail(&outliers, "b", times: 3, at: start + .seconds(1))
            fail(&outliers, "a", times: 3, at: start)
            #expect(outliers.takeReturns(at: start + .seconds(9)).isEmpty)
            #expect(outliers.takeReturns(at: start + .seconds(20)) == ["a", "b"])
            #expect(outliers.takeReturns(at: start + .seconds(30)).isEmpty)
            #expect(outliers.returnsTotal == 2)
            #expect(outliers.consecutiveFailures("a") == 0)
        }

        @Test("failures while ejected → ignored: they neither extend nor renew the ejection")
        func ignoredWhileEjected() {
            var outliers = ejection()
            fail(&outliers, "a", times: 3, at: start)
            #expect(fail(&outliers, "a", times: 5, at: start + .seconds(5)) == .ignored)
            #expect(!outliers.isEjected("a", at: start + .seconds(10)))
            #expect(outliers.ejectionsTotal == 1)
            #expect(outliers.recordConnectFailure(endpoint: "unknown", at: start) == .ignored)
        }

        @Test("n endpoints, max p% → at most this many ejected at once, the rest overflow",
              arguments: [(4, 50, 2), (3, 50, 1), (2, 50, 1), (1, 50, 0), (10, 10, 1), (5, 10, 0), (3, 100, 3), (3, 0, 0)])
        func maxEjectedPercent(_ count: Int, _ percent: Int, _ ejectable: Int) throws {
            let policy = try OutlierPolicy(consecutiveFailures: 1, baseEjectionTime: .seconds(10), maxEjectionTime: .seconds(10), maxEjectedPercent: percent)
            let endpoints = (0..<count).map { "e\($0)" }
            var outliers = OutlierEjection(endpoints: endpoints, policy: policy)
            for endpoint in endpoints { outliers.recordConnectFailure(endpoint: endpoint, at: start) }
            #expect(outliers.ejectedEndpoints(at: start).count == ejectable)
            #expect(outliers.ejectionsTotal == UInt64(ejectable))
            #expect(outliers.ejectionOverflowsTotal == UInt64(count - ejectable))
        }

        @Test("4 endpoints, 2 ejected → the third overflows; once one returns, 3 more failures eject it")
        func overflowThenRoom() {
            var outliers = ejection()
            fail(&outliers, "a", times: 3, at: start)
            fail(&outliers, "b", times: 3, at: start + .seconds(1))
            #expect(fail(&outliers, "c", times: 3, at: start + .seconds(2)) == .overflow)
            #expect(!outliers.isEjected("c", at: start + .seconds(2)))
            #expect(outliers.ejectionOverflowsTotal == 1 && outliers.consecutiveFailures("c") == 0)
            #expect(fail(&outliers, "c", times: 3, at: start + .seconds(10)) == .ejected(until: start + .seconds(20)))
            #expect(outliers.ejectedEndpoints(at: start + .seconds(10)) == ["b", "c"])
        }

        @Test("ejected 3 times, then back: times ejected 3, 2 after one base in service, then 1, then 0",
              arguments: [(9, 3), (10, 2), (19, 2), (20, 1), (30, 0), (1_000, 0)])
        func decay(_ secondsBack: Int64, _ expected: Int) {
            var outliers = ejection()
            fail(&outliers, "a", times: 3, at: start)                      // until +10
            fail(&outliers, "a", times: 3, at: start + .seconds(10))       // until +30
            fail(&outliers, "a", times: 3, at: start + .seconds(30))       // until +60
            let back = start + .seconds(60)
            #expect(outliers.timesEjected("a", at: back) == 3)
            #expect(outliers.timesEjected("a", at: back + .seconds(secondsBack)) == expected)
        }

        @Test("after one decay step (2 left), the next ejection lasts 3 × base; after full decay, 1 × base")
        func decayShortensNextEjection() {
            var outliers = ejection()
            fail(&outliers, "a", times: 3, at: start)
            fail(&outliers, "a", times: 3, at: start + .seconds(10))
            fail(&outliers, "a", times: 3, at: start + .seconds(30))
            let back = start + .seconds(60)
            #expect(fail(&outliers, "a", times: 3, at: back + .seconds(15)) == .ejected(until: back + .seconds(15 + 30)))
            let backAgain = back + .seconds(45)
            #expect(fail(&outliers, "a", times: 3, at: backAgain + .seconds(100)) == .ejected(until: backAgain + .seconds(110)))
        }

        @Test("update → endpoints that stay keep their ejection, removed ones are forgotten, new ones start clean")
        func update() {
            var outliers = ejection(["a", "b"])
            fail(&outliers, "a", times: 3, at: start)
            fail(&outliers, "b", times: 2, at: start)
            outliers.update(endpoints: ["a", "e"])
            #expect(outliers.endpoints == ["a", "e"])
            #expect(outliers.isEjected("a", at: start + .seconds(1)))
            #expect(outliers.consecutiveFailures("b") == 0 && !outliers.isEjected("b", at: start))
            #expect(outliers.consecutiveFailures("e") == 0)
            outliers.update(endpoints: ["e"])
            #expect(outliers.takeReturns(at: start + .seconds(60)).isEmpty, "a removed while ejected is not a return")
        }

        @Test("a failure at an earlier time → read as the latest time seen")
        func timeBackwards() {
            var outliers = ejection()
            fail(&outliers, "a", times: 2, at: start + .seconds(5))
            #expect(outliers.recordConnectFailure(endpoint: "a", at: start) == .ejected(until: start + .seconds(15)))
        }
    }
}

/// The panic threshold and the exclusion set a balancer picks with.
extension HealthTests {
    @Suite("panic threshold and endpoint exclusion")
    struct PanicThresholdTests {
        struct Case: CustomTestStringConvertible, Sendable {
            let count: Int
            let unavailable: Set<Int>
            let threshold: Int
            let panic: Bool
            let excluded: Set<Int>
            var testDescription: String {
                "\(count) endpoints, \(unavailable.sorted()) unavailable, threshold \(threshold)% → \(panic ? "panic, " : "")exclude \(excluded.sorted())"
            }
        }

        static let cases: [Case] = [
            Case(count: 4, unavailable: [], threshold: 50, panic: false, excluded: []),
            Case(count: 4, unavailable: [0, 1], threshold: 50, panic: false, excluded: [0, 1]),
            Case(count: 4, unavailable: [0, 1, 2], threshold: 50, panic: true, excluded: []),
            Case(count: 3, unavailable: [2], threshold: 50, panic: false, excluded: [2]),
            Case(count: 3, unavailable: [0, 2], threshold: 50, panic: true, excluded: []),
            Case(count: 1, unavailable: [0], threshold: 50, panic: true, excluded: []),
            Case(count: 4, unavailable: [3], threshold: 100, panic: true, excluded: []),
            Case(count: 4, unavailable: [0, 1, 2, 3], threshold: 0, panic: false, excluded: [0, 1, 2, 3]),
            Case(count: 0, unavailable: [], threshold: 50, panic: false, excluded: []),
            Case(count: 2, unavailable: [5, -1], threshold: 50, panic: false, excluded: []),
        ]

        @Test("available share below the threshold → panic, nothing excluded; else the unavailable excluded", arguments: cases)
        func threshold(_ example: Case) throws {
            let availability = EndpointAvailability(endpointCount: example.count, unavailable: example.unavailable,
                                                    panicThreshold: try PanicThreshold(percent: example.threshold))
            #expect(availability.isPanic == example.panic)
            #expect(availability.exclusion() == example.excluded)
        }

        @Test("default → 50%, as Envoy; outside 0...100 → ValueError")
        func defaults() {
            #expect(PanicThreshold.standard.percent == 50)
            #expect(throws: ValueError.self) { try PanicThreshold(percent: 101) }
            #expect(throws: ValueError.self) { try PanicThreshold(percent: -1) }
        }

        @Test("4 endpoints, 0 unavailable, already tried → tried excluded too, up to all four; out of range ignored",
              arguments: [([1], [0, 1]), ([1, 2], [0, 1, 2]), ([1, 2, 3], [0, 1, 2, 3]), ([0, 1, 2, 3], [0, 1, 2, 3]), ([7], [0])] as [(Set<Int>, Set<Int>)])
        func triedMerged(_ tried: Set<Int>, _ excluded: Set<Int>) {
            let availability = EndpointAvailability(endpointCount: 4, unavailable: [0])
            #expect(availability.exclusion(tried: tried) == excluded)
        }

        @Test("in panic (3 of 4 unavailable), tried → only the tried excluded; every one tried → all excluded",
              arguments: [([0], [0]), ([0, 3], [0, 3]), ([0, 1, 2, 3], [0, 1, 2, 3])] as [(Set<Int>, Set<Int>)])
        func triedInPanic(_ tried: Set<Int>, _ excluded: Set<Int>) {
            let availability = EndpointAvailability(endpointCount: 4, unavailable: [0, 1, 2])
            #expect(availability.isPanic)
            #expect(availability.exclusion(tried: tried) == excluded)
        }

        @Test("canary route, 10.1.0.6:8081 unhealthy → exclude index 1; a balancer then picks only 0")
        func overRoute() throws {
            let table = RouteTable(try TableFile.load(Repository.path("rules/canary.yaml")))
            let route = try #require(table.route(for: address("10.96.0.20:80")))
            let availability = EndpointAvailability(route: route) { $0.address == address("10.1.0.6:8081") }
            #expect(!availability.isPanic && availability.exclusion() == [1])
            var balancer = WeightedRoundRobin(route: route)
            #expect((0..<20).allSatisfy { _ in balancer.pick(excluding: availability.exclusion()) == 0 })
            #expect(balancer.pick(excluding: availability.exclusion(tried: [0])) == nil, "nothing else left: give up")
        }
    }
}
