import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutProxy
import TurnoutTestSupport

/// Health in the running proxy, with real traffic through the redirect rules of a ``ProxyLab``:
/// passive outlier ejection on connect failures (and the endpoint's return), active TCP checks
/// taking an endpoint out and bringing it back, and the panic threshold. Each scenario reads
/// what the clients got, the proxy's counters, and the `/metrics` text.
@Suite("transparent proxy: health, outlier ejection, panic", .serialized,
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct ProxyHealthScenarioTests {
    typealias Upstream = ProxyLab.Upstream

    static let label = ProxyScenarioTests.label
    static let vip = ProxyScenarioTests.vip

    static func upstreams(_ count: Int) -> [Upstream] {
        (0..<count).map { Upstream(port: 8081 + UInt16($0)) }
    }

    static func table(_ upstreams: [Upstream]) throws -> ServiceTable {
        try ProxyScenarioTests.webTable(upstreams.map { ($0.address, $0.port, 1) })
    }

    static func key(_ upstream: Upstream) -> UpstreamKey {
        UpstreamKey(service: label, endpoint: upstream.endpoint)
    }

    static func refused(_ proxy: TransparentProxy, _ upstream: Upstream) -> UInt64 {
        ProxyScenarioTests.traffic(proxy, upstream).failures[ConnectFailure.refused.rawValue]
    }

    static func metrics(_ proxy: TransparentProxy) throws -> PrometheusDocument {
        try PrometheusDocument(parsing: ProxyMetrics.render(proxy.statistics()))
    }

    /// Active checks off, so only connect failures of real traffic count.
    static func passiveOnly(ejectAfter failures: Int, ejection: Duration) throws -> ProxyConfiguration {
        var configuration = ProxyLab.configuration()
        configuration.healthCheck = nil
        configuration.outlier = try OutlierPolicy(consecutiveFailures: failures, baseEjectionTime: ejection,
                                                  maxEjectionTime: ejection * 4, maxEjectedPercent: 50)
        return configuration
    }

    /// Fast active checks (every 0.2 s, one failure marks, one pass restores); ejection
    /// effectively off, so only the checks decide.
    static func activeOnly(panicThreshold: Int = 50, connectAttempts: Int = 3) throws -> ProxyConfiguration {
        var configuration = ProxyLab.configuration()
        configuration.healthCheck = try HealthCheckPolicy(interval: .milliseconds(200), timeout: .milliseconds(100),
                                                          healthyThreshold: 1, unhealthyThreshold: 1)
        configuration.outlier = try OutlierPolicy(consecutiveFailures: 1_000_000)
        configuration.panicThreshold = try PanicThreshold(percent: panicThreshold)
        configuration.connectAttempts = connectAttempts
        return configuration
    }

    // MARK: passive outlier ejection

    @Test("2 endpoints, one killed, eject after 3 failures for 3 s → 40 connections all answered, the dead one tried exactly 3 times and ejected once (counter, gauge, log); restarted → back after 3 s and takes traffic")
    func ejectionAndReturn() throws {
        let upstreams = Self.upstreams(2)
        let (live, dead) = (upstreams[0], upstreams[1])
        try withProxyLab(upstreams: upstreams) { lab in
            // 3 s, not less: the 40 connections must all be made within the ejection, or the
            // dead endpoint is tried again, and a loaded machine can stretch them past 1 s.
            let proxy = try lab.startProxy(try Self.passiveOnly(ejectAfter: 3, ejection: .seconds(3)), table: try Self.table(upstreams))
            try lab.kill(dead)

            #expect(try lab.connections(40, to: Self.vip, port: 80) == [live.greeting: 40])
            // One at a time, so the failures are in a row: the third ejects, no later pick tries it.
            #expect(Self.refused(proxy, dead) == 3)
            let ejected = try Self.metrics(proxy)
            #expect(ejected.value("turnout_upstream_ejections_total", ["service": Self.label, "endpoint": dead.endpoint]) == 1)
            #expect(ejected.value("turnout_endpoint_ejected", ["service": Self.label, "endpoint": dead.endpoint]) == 1)
            #expect(ejected.value("turnout_endpoint_ejected", ["service": Self.label, "endpoint": live.endpoint]) == 0)
            #expect(lab.proxyLog.contains { $0.contains("\(dead.endpoint) ejected for 3.0 seconds after 3 connect failures") }, "\(lab.proxyLog)")

            try lab.startUpstream(dead)
            #expect(ProxyLab.eventually(within: .seconds(6)) { proxy.statistics().endpoints[Self.key(dead)]?.ejected == false })
            let back = try lab.connections(40, to: Self.vip, port: 80)
            #expect(back[dead.greeting, default: 0] >= 15 && back.values.reduce(0, +) == 40, "\(back)")
            #expect(Self.refused(proxy, dead) == 3)
            #expect(try Self.metrics(proxy).value("turnout_endpoint_ejected", ["service": Self.label, "endpoint": dead.endpoint]) == 0)
        }
    }

    @Test("max ejected 50% of 2 endpoints, both killed, eject after 2 → only one is ejected; the other keeps being tried (overflow), every client reset")
    func ejectionCap() throws {
        let upstreams = Self.upstreams(2)
        try withProxyLab(upstreams: upstreams) { lab in
            let proxy = try lab.startProxy(try Self.passiveOnly(ejectAfter: 2, ejection: .seconds(30)), table: try Self.table(upstreams))
            for upstream in upstreams { try lab.kill(upstream) }
            let tally = try lab.connections(20, to: Self.vip, port: 80)
            #expect(tally.keys.allSatisfy { $0.hasPrefix("error") } && tally.values.reduce(0, +) == 20, "\(tally)")
            let statuses = upstreams.map { proxy.statistics().endpoints[Self.key($0)] }
            #expect(statuses.count { $0?.ejected == true } == 1, "\(statuses)")
            let ejections = upstreams.map { ProxyScenarioTests.traffic(proxy, $0).ejections }
            #expect(ejections.reduce(0, +) == 1, "\(ejections)")
        }
    }

    // MARK: active checks

    @Test("active checks every 0.2 s: an endpoint killed with no traffic → marked unhealthy (gauge 0) and no connection tries it; restarted → healthy again and takes traffic")
    func activeCheckTakesOutAndBack() throws {
        let upstreams = Self.upstreams(2)
        let (live, dead) = (upstreams[0], upstreams[1])
        try withProxyLab(upstreams: upstreams) { lab in
            let proxy = try lab.startProxy(try Self.activeOnly(), table: try Self.table(upstreams))
            #expect(ProxyLab.eventually(within: .seconds(3)) { proxy.statistics().endpoints[Self.key(dead)]?.healthy == true })
            try lab.kill(dead)
            #expect(ProxyLab.eventually(within: .seconds(3)) { proxy.statistics().endpoints[Self.key(dead)]?.healthy == false })
            #expect(try Self.metrics(proxy).value("turnout_endpoint_healthy", ["service": Self.label, "endpoint": dead.endpoint]) == 0)

            #expect(try lab.connections(20, to: Self.vip, port: 80) == [live.greeting: 20])
            #expect(Self.refused(proxy, dead) == 0, "an unhealthy endpoint was tried")
            #expect(proxy.statistics().services[Self.label]?.panicPicks ?? 0 == 0, "1 of 2 available is not below 50%")

            try lab.startUpstream(dead)
            #expect(ProxyLab.eventually(within: .seconds(3)) { proxy.statistics().endpoints[Self.key(dead)]?.healthy == true })
            let back = try lab.connections(20, to: Self.vip, port: 80)
            #expect(back[dead.greeting, default: 0] >= 5 && back.values.reduce(0, +) == 20, "\(back)")
        }
    }

    // MARK: panic threshold

    struct PanicCase: Sendable, CustomTestStringConvertible {
        let killed: Int
        let threshold: Int
        /// Whether health is ignored: the dead endpoints get tried.
        let panic: Bool
        var testDescription: String {
            "4 endpoints, \(killed) dead, panic below \(threshold)% → " + (panic ? "panic: all tried, every client answered" : "health counts: the dead never tried")
        }
    }

    static let panicCases = [
        PanicCase(killed: 2, threshold: 50, panic: false),
        PanicCase(killed: 3, threshold: 50, panic: true),
        PanicCase(killed: 3, threshold: 20, panic: false),
    ]

    @Test("panic threshold", arguments: panicCases)
    func panicThreshold(_ example: PanicCase) throws {
        let upstreams = Self.upstreams(4)
        let (dead, live) = (upstreams.prefix(example.killed), upstreams.dropFirst(example.killed))
        try withProxyLab(upstreams: upstreams) { lab in
            // Four attempts: in panic a connection may meet all three dead endpoints first.
            let proxy = try lab.startProxy(try Self.activeOnly(panicThreshold: example.threshold, connectAttempts: 4),
                                           table: try Self.table(upstreams))
            for upstream in dead { try lab.kill(upstream) }
            #expect(ProxyLab.eventually(within: .seconds(3)) {
                let endpoints = proxy.statistics().endpoints
                return dead.allSatisfy { endpoints[Self.key($0)]?.healthy == false }
            })
            let tally = try lab.connections(40, to: Self.vip, port: 80)
            #expect(tally.keys.allSatisfy { key in live.contains { $0.greeting == key } } && tally.values.reduce(0, +) == 40, "\(tally)")
            let triedDead = dead.map { Self.refused(proxy, $0) }.reduce(0, +)
            let panicPicks = proxy.statistics().services[Self.label]?.panicPicks ?? 0
            if example.panic {
                #expect(panicPicks == 40)
                #expect(triedDead > 0, "in panic the dead endpoints are tried too")
            } else {
                #expect(panicPicks == 0)
                #expect(triedDead == 0, "health excludes the dead endpoints")
            }
            #expect(try Self.metrics(proxy).value("turnout_service_panic_picks_total", ["service": Self.label]) == Double(panicPicks))
        }
    }

    @Test("panic off (threshold 0) and every endpoint unhealthy → nothing is tried: each client is reset and counted as unavailable")
    func panicOffAllUnhealthy() throws {
        let upstreams = Self.upstreams(2)
        try withProxyLab(upstreams: upstreams) { lab in
            let proxy = try lab.startProxy(try Self.activeOnly(panicThreshold: 0), table: try Self.table(upstreams))
            for upstream in upstreams { try lab.kill(upstream) }
            #expect(ProxyLab.eventually(within: .seconds(3)) {
                let endpoints = proxy.statistics().endpoints
                return upstreams.allSatisfy { endpoints[Self.key($0)]?.healthy == false }
            })
            let tally = try lab.connections(10, to: Self.vip, port: 80)
            #expect(tally.keys.allSatisfy { $0.hasPrefix("error") } && tally.values.reduce(0, +) == 10, "\(tally)")
            #expect(upstreams.map { Self.refused(proxy, $0) } == [0, 0])
            #expect(proxy.statistics().services[Self.label]?.unavailableRejections == 10)
        }
    }
}
