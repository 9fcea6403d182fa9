import Foundation
import Testing
@testable import TurnoutControl
import TurnoutModel
import TurnoutProxy

/// What `turnout status` prints of a proxy: counters in → the `/stats` body the admin endpoint
/// serves (its own serializer, so the reader follows the server's format) → exact lines.
@Suite("turnout status: the proxy's report")
struct ProxyStatusReportTests {
    static let admin = SocketAddress(address: IPAddress("127.0.0.1")!, port: 15000)

    /// Two endpoints of `shop/api:http`: one that served, one refused twice and was ejected once;
    /// an endpoint of a service no longer in the table; 9 connections passed through, none
    /// inbound; the circuit breaker refused 4; clients read slower than the first endpoint
    /// answered 12 times, for 41.24 s in all.
    static func statistics() -> ProxyStatistics {
        var statistics = ProxyStatistics()
        statistics.workers = 2
        statistics.io = "uring"
        statistics.generation = 3
        statistics.accepted = 130
        statistics.relays = 7
        statistics.loopRejections = 1
        var served = TrafficCount()
        served.connections = 120
        served.active = 7
        served.clientFullWaits = 12
        served.clientPausedNanoseconds = 41_240_000_000
        var refusing = TrafficCount()
        refusing.failures[ConnectFailure.refused.rawValue] = 2
        refusing.failures[ConnectFailure.timeout.rawValue] = 1
        refusing.ejections = 1
        var gone = TrafficCount()
        gone.connections = 5
        var passedThrough = TrafficCount()
        passedThrough.connections = 9
        statistics.upstreams = [
            UpstreamKey(service: UpstreamKey.passthroughService, endpoint: ""): passedThrough,
            UpstreamKey(service: UpstreamKey.inboundService, endpoint: ""): TrafficCount(),
            UpstreamKey(service: "shop/api:http", endpoint: "10.1.0.5:8080"): served,
            UpstreamKey(service: "shop/api:http", endpoint: "10.1.0.6:8080"): refusing,
            UpstreamKey(service: "shop/old:http", endpoint: "10.1.0.9:80"): gone,
        ]
        statistics.endpoints = [
            UpstreamKey(service: "shop/api:http", endpoint: "10.1.0.5:8080"): EndpointStatus(healthy: true, ejected: false),
            UpstreamKey(service: "shop/api:http", endpoint: "10.1.0.6:8080"): EndpointStatus(healthy: false, ejected: true),
        ]
        var breaker = ServiceCount()
        breaker.circuitBreakerRejections = 4
        statistics.services = ["shop/api:http": breaker, "shop/web:http": ServiceCount()]
        return statistics
    }

    static func body(_ value: JSONValue) -> [UInt8] {
        Array(value.text().utf8)
    }

    @Test("counters of two workers → header, connections, an aligned row per endpoint, the slow readers' waits, the breaker's refusals; quiet services and the unused inbound row left out")
    func summary() throws {
        let body = Self.body(ProxyAdmin.statistics(Self.statistics(), source: "rules/shop.yaml"))
        let report = try ProxyStatusReport(statsJSON: body, ready: true)
        #expect(report.summary(at: Self.admin, now: 0) == [
            "proxy at 127.0.0.1:15000: ready; 2 workers (uring); table generation 3 from rules/shop.yaml",
            "  connections: 130 accepted, 7 open; refused: 1 loops, 0 unknown destinations; accept pauses (fd limit): 0",
            "  service        endpoint       connections  open  connect failures          state",
            "  passthrough                             9     0  0                         -",
            "  shop/api:http  10.1.0.5:8080          120     7  0                         healthy",
            "  shop/api:http  10.1.0.6:8080            0     0  3 (2 refused, 1 timeout)  unhealthy, ejected (ejected 1×)",
            "  shop/old:http  10.1.0.9:80              5     0  0                         not in the table",
            "  shop/api:http 10.1.0.5:8080: flow control waited 0× for the upstream to read, 12× (41.2 s in all) for clients to read",
            "  shop/api:http: 4 refused by the circuit breaker, 0 refused with no endpoint available, 0 sent in panic",
        ])
    }

    @Test("an endpoint whose relays waited 3 times (1.5 s) for the upstream and 5 times (0.25 s) for clients → its /stats entry has upstreamFullWaits 3, clientFullWaits 5 and the seconds")
    func flowControlWaits() throws {
        var statistics = ProxyStatistics()
        var count = TrafficCount()
        count.upstreamFullWaits = 3
        count.clientFullWaits = 5
        count.upstreamPausedNanoseconds = 1_500_000_000
        count.clientPausedNanoseconds = 250_000_000
        statistics.upstreams = [UpstreamKey(service: "shop/api:http", endpoint: "10.1.0.5:8080"): count]
        let body = Self.body(ProxyAdmin.statistics(statistics, source: "t.yaml"))
        let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
        let entry = try #require((object?["upstreams"] as? [[String: Any]])?.first)
        #expect(entry["upstreamFullWaits"] as? Int == 3)
        #expect(entry["clientFullWaits"] as? Int == 5)
        #expect(entry["upstreamPausedSeconds"] as? Double == 1.5)
        #expect(entry["clientPausedSeconds"] as? Double == 0.25)
    }

    @Test("a /stats body from a proxy older than the flow-control counters → read as no waits: no such line, the rest as before; one without the paused seconds → the waits without them")
    func olderProxyWithoutWaits() throws {
        let body = Self.body(ProxyAdmin.statistics(Self.statistics(), source: "rules/shop.yaml"))
        var object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        let upstreams = try #require(object["upstreams"] as? [[String: Any]])
        object["upstreams"] = upstreams.map { $0.filter { $0.key != "upstreamFullWaits" && $0.key != "clientFullWaits" } }
        let older = try JSONSerialization.data(withJSONObject: object)
        #expect(!String(decoding: older, as: UTF8.self).contains("FullWaits"))
        let report = try ProxyStatusReport(statsJSON: Array(older), ready: true)
        let current = try ProxyStatusReport(statsJSON: body, ready: true)
        #expect(report.summary(at: Self.admin, now: 0) == current.summary(at: Self.admin, now: 0).filter { !$0.contains("flow control") })

        object["upstreams"] = upstreams.map { $0.filter { !$0.key.hasSuffix("PausedSeconds") } }
        let withoutSeconds = try ProxyStatusReport(statsJSON: Array(try JSONSerialization.data(withJSONObject: object)), ready: true)
        #expect(withoutSeconds.summary(at: Self.admin, now: 0).filter { $0.contains("flow control") }
                == ["  shop/api:http 10.1.0.5:8080: flow control waited 0× for the upstream to read, 12× for clients to read"])
    }

    @Test("not ready, no upstream yet → NOT READY and a line saying nothing was routed")
    func notReady() throws {
        var statistics = ProxyStatistics()
        statistics.workers = 1
        statistics.generation = 1
        let report = try ProxyStatusReport(statsJSON: Self.body(ProxyAdmin.statistics(statistics, source: "t.yaml")), ready: false)
        #expect(report.summary(at: Self.admin, now: 0) == [
            "proxy at 127.0.0.1:15000: NOT READY (draining, or no table yet); 1 worker; table generation 1 from t.yaml",
            "  connections: 0 accepted, 0 open; refused: 0 loops, 0 unknown destinations; accept pauses (fd limit): 0",
            "  no connection routed to an endpoint yet",
        ])
    }

    @Test("a proxy watching etcd whose source is down → the reconciler's lines, as `apply --watch` status prints them")
    func sourceLines() throws {
        var status = Reconciler.Status(source: "etcd:http://10.0.0.2:2379")
        status.sourceState = "unavailable"
        status.sourceProblem = "cannot connect"
        status.installedRevision = "41"
        status.installedAt = 1_000
        status.installs = 2
        status.outages = 1
        var statistics = ProxyStatistics()
        statistics.workers = 1
        let object = ProxyAdmin.statistics(statistics, source: status.source, sourceStatus: status)
        let report = try ProxyStatusReport(statsJSON: Self.body(object), ready: true)
        #expect(Array(report.summary(at: Self.admin, now: 1_030).suffix(3)) == [
            "  proxy's source etcd:http://10.0.0.2:2379: unavailable (cannot connect)",
            "  proxy's installed revision 41, 30.0 s ago (2 installs, 0 unchanged)",
            "  proxy's 0 install failures, 0 invalid tables, 1 outages",
        ])
    }

    @Test("a body that is not a proxy's /stats → ValueError naming what is wrong", arguments: [
        (#"{"hello": 1}"#, "/stats: field .source is missing"),
        (#"{"source": 3}"#, "/stats: field .source:"),
        ("<html>", "/stats: not JSON"),
    ])
    func notAProxy(_ body: String, _ message: String) {
        #expect {
            _ = try ProxyStatusReport(statsJSON: Array(body.utf8), ready: true)
        } throws: { error in
            "\(error)".hasPrefix(message)
        }
    }
}
