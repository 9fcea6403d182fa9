import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutTestSupport

/// The etcd source against a real etcd (``EtcdLab``), sometimes through a relay that freezes,
/// cuts or holds connections (``EtcdRelay``). Real threads and real time; every wait is bounded.
/// Serialized: each test starts its own etcd, and two at once on two cores make timing noisy.
@Suite("etcd source: range, watch, compaction, outages, stale watches",
       .serialized, .enabled(if: EtcdLab.isEnabled, Comment(rawValue: EtcdLab.skipReason)))
struct EtcdTableSourceTests {
    static let layout = EtcdTableLayout.standard

    /// Every event a source delivered, in order.
    final class Recorder: Sendable {
        let events = Locked<[TableSourceEvent]>([])

        func record(_ event: TableSourceEvent) { events.mutate { $0.append(event) } }

        var tables: [ServiceTable] {
            events.value.compactMap { event in
                if case .table(let table, _) = event { return table }
                return nil
            }
        }

        var unavailableCount: Int {
            events.value.filter { event in
                if case .unavailable = event { return true }
                return false
            }.count
        }

        /// Whether the last event is the table `expected` within `limit`.
        func waitForTable(_ expected: ServiceTable, within limit: Duration = .seconds(10)) -> Bool {
            ProxyLab.eventually(within: limit) {
                if case .table(let table, _) = events.value.last { return table == expected }
                return false
            }
        }

        /// Whether an event matching `match` arrives after the first `count` events, within `limit`.
        func waitForEvent(after count: Int, within limit: Duration = .seconds(10), _ match: @escaping (TableSourceEvent) -> Bool) -> Bool {
            ProxyLab.eventually(within: limit) { events.value.dropFirst(count).contains(where: match) }
        }
    }

    /// A client of `lab` and the canary table, published there.
    static func publishedCanary(_ lab: EtcdLab) throws -> (EtcdClient, ServiceTable) {
        let client = try EtcdClient(url: lab.url)
        let table = try canary()
        _ = try EtcdPublisher.publish(table, to: client)
        return (client, table)
    }

    static func canary() throws -> ServiceTable {
        try TableFile.load(Repository.path("rules/canary.yaml"))
    }

    /// `table` with endpoint `index` of its first service changed by `change`.
    static func changing(_ table: ServiceTable, endpoint index: Int, _ change: (inout Endpoint) -> Void) -> ServiceTable {
        var service = table.services[0]
        change(&service.endpoints[index])
        return ServiceTable(services: [service] + table.services.dropFirst())
    }

    /// A started source on `url` recording into a new recorder; stopped by the caller.
    static func started(_ url: String, checkInterval: Duration = EtcdTableSource.standardCheckInterval,
                        requestTimeout: Duration = .seconds(5)) throws -> (EtcdTableSource, Recorder) {
        var client = try EtcdClient(url: url)
        client.requestTimeout = requestTimeout
        return try started(client, checkInterval: checkInterval)
    }

    /// A started source reading through `client` (its TLS files, its user) recording into a new
    /// recorder; stopped by the caller.
    static func started(_ client: EtcdClient, checkInterval: Duration = EtcdTableSource.standardCheckInterval) throws -> (EtcdTableSource, Recorder) {
        let source = try EtcdTableSource(client: client, checkInterval: checkInterval)
        let recorder = Recorder()
        try source.start { recorder.record($0) }
        return (source, recorder)
    }

    static func put(_ client: EtcdClient, _ service: Service, _ endpoint: Endpoint) throws {
        try client.put(layout.endpointKey(service.name, endpoint), Array(TableEncoder.json(endpoint).utf8))
    }

    @Test("published table → delivered; one weight changed → the new table; an endpoint deleted → gone; a bad value → invalid naming the key; fixed → the table")
    func followsChanges() throws {
        try withEtcdLab { lab in
            let (client, table) = try Self.publishedCanary(lab)
            let (source, recorder) = try Self.started(lab.url)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))
            #expect(source.location == "etcd:\(lab.url)")

            let reweighted = Self.changing(table, endpoint: 0) { $0.weight = 50 }
            try Self.put(client, reweighted.services[0], reweighted.services[0].endpoints[0])
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(reweighted)))

            var shrunk = reweighted.services[0]
            let removed = shrunk.endpoints.removeLast()
            try client.delete(Self.layout.endpointKey(shrunk.name, removed))
            #expect(recorder.waitForTable(ServiceTable(services: [shrunk])))

            let key = Self.layout.endpointKey(shrunk.name, shrunk.endpoints[0])
            try client.put(key, Array(#"{"address":"10.1.0.5","weight":"heavy"}"#.utf8))
            #expect(recorder.waitForEvent(after: 0) { event in
                if case .invalid(let error, _) = event {
                    return error.issues.map(\.description) == ["etcd key \(key):1:32: weight: weight must be an integer, got 'heavy'"]
                }
                return false
            })
            try Self.put(client, shrunk, shrunk.endpoints[0])
            #expect(recorder.waitForTable(ServiceTable(services: [shrunk])))
            #expect(recorder.unavailableCount == 0)
        }
    }

    @Test("a burst of 500 writes in about a second → the last table delivered is exactly etcd's final state")
    func burst() throws {
        try withEtcdLab { lab in
            let client = try EtcdClient(url: lab.url)
            let addresses = (1...100).map { IPAddress("10.2.0.\($0)")! }
            var service = Service(name: ServiceName("load/burst")!, addresses: [IPAddress("10.96.5.1")!],
                                  ports: [ServicePort(name: "", port: 80, targetPort: 8080, transport: .tcp)],
                                  endpoints: addresses.map { Endpoint(address: $0) })
            _ = try EtcdPublisher.publish(ServiceTable(services: [service]), to: client, maximumOperations: 128)
            let (source, recorder) = try Self.started(lab.url)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(ServiceTable(services: [service]))))

            let start = ContinuousClock.now
            for write in 0..<500 {
                try Self.put(client, service, Endpoint(address: addresses[write % 100], weight: UInt32(write + 1)))
            }
            let elapsed = ContinuousClock.now - start
            service.endpoints = addresses.enumerated().map { Endpoint(address: $1, weight: UInt32(401 + $0)) }
            let expected = EtcdTableLayout.readBackOrder(ServiceTable(services: [service]))
            #expect(recorder.waitForTable(expected), "500 writes took \(elapsed); \(recorder.tables.count) tables delivered")
        }
    }

    @Test("etcd stopped → unavailable (once); restarted and changed at once → the changed table; stop() after that is prompt")
    func outage() throws {
        try withEtcdLab { lab in
            let (client, table) = try Self.publishedCanary(lab)
            let (source, recorder) = try Self.started(lab.url)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))

            lab.stop()
            #expect(recorder.waitForEvent(after: 1) { event in
                if case .unavailable(let reason) = event { return reason.contains(lab.url.dropFirst("http://".count)) }
                return false
            })
            Thread.sleep(forTimeInterval: 3) // several retries, with backoff
            #expect(recorder.unavailableCount == 1, "one report per outage: \(recorder.events.value.count) events")

            try lab.restart()
            let changed = Self.changing(table, endpoint: 1) { $0.weight = 0 }
            try Self.put(client, changed.services[0], changed.services[0].endpoints[1])
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(changed)))

            let stopping = ContinuousClock.now
            source.stop()
            #expect(ContinuousClock.now - stopping < .seconds(1))
        }
    }

    @Test("history compacted under a watch being opened → the canceled watch is replaced by a re-read that has every change")
    func compaction() throws {
        try withEtcdLab { lab in
            let (client, table) = try Self.publishedCanary(lab)
            let relay = try EtcdRelay(upstreamPort: lab.clientPort)
            defer { relay.stop() }
            // A check interval far beyond the test: only the compaction path can find the change.
            let (source, recorder) = try Self.started(relay.url, checkInterval: .seconds(600))
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))

            // Break the stream while new watches are held: the source re-reads (the range gets
            // through), then its watch from R+1 waits in the relay.
            relay.holdWatches(true)
            relay.cut()
            #expect(ProxyLab.eventually(within: .seconds(5)) { relay.waitingWatches == 1 })
            let first = Self.changing(table, endpoint: 0) { $0.weight = 7 }
            try Self.put(client, first.services[0], first.services[0].endpoints[0])
            let second = Self.changing(first, endpoint: 1) { $0.weight = 3 }
            let revision = try client.put(Self.layout.endpointKey(second.services[0].name, second.services[0].endpoints[1]),
                                          Array(TableEncoder.json(second.services[0].endpoints[1]).utf8))
            try lab.compact(to: revision)
            relay.holdWatches(false)
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(second), within: .seconds(5)))
            #expect(recorder.unavailableCount == 0)
        }
    }

    @Test("a watch gone silent (its connection frozen) while etcd answers → found stale by the periodic check, re-read")
    func staleWatch() throws {
        try withEtcdLab { lab in
            let (client, table) = try Self.publishedCanary(lab)
            let relay = try EtcdRelay(upstreamPort: lab.clientPort)
            defer { relay.stop() }
            let (source, recorder) = try Self.started(relay.url, checkInterval: .milliseconds(300))
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))
            Thread.sleep(forTimeInterval: 1) // a few checks that find nothing wrong
            #expect(recorder.events.value.count == 1, "a healthy watch is left alone")

            relay.freeze()
            let changed = Self.changing(table, endpoint: 0) { $0.weight = 11 }
            try Self.put(client, changed.services[0], changed.services[0].endpoints[0])
            // Found by the second check that sees the mismatch: about 0.6 s. (A check caught by the
            // freeze in flight times out after 5 s and re-reads too: the bound allows for it.)
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(changed), within: .seconds(8)))
            #expect(recorder.unavailableCount == 0)
        }
    }

    @Test("etcd paused (SIGSTOP) → unavailable when the check times out; stop() meanwhile returns at once; resumed → the table")
    func paused() throws {
        try withEtcdLab { lab in
            let (_, table) = try Self.publishedCanary(lab)
            let (source, recorder) = try Self.started(lab.url, checkInterval: .milliseconds(200), requestTimeout: .seconds(1))
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))

            lab.pause()
            #expect(recorder.waitForEvent(after: 1, within: .seconds(5)) { event in
                if case .unavailable(let reason) = event { return reason.contains("timed out") }
                return false
            })
            lab.resume()
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table), within: .seconds(10)))

            // A request in flight when stop() comes is interrupted, not waited out.
            let (second, _) = try Self.started(lab.url, checkInterval: .milliseconds(100), requestTimeout: .seconds(5))
            Thread.sleep(forTimeInterval: 0.5)
            lab.pause()
            Thread.sleep(forTimeInterval: 0.5) // a check is now waiting for the paused etcd
            let stopping = ContinuousClock.now
            second.stop()
            let took = ContinuousClock.now - stopping
            lab.resume()
            // Well under the 5 s request timeout that waiting it out would take; not tighter, since
            // a loaded machine can delay the source's thread's wakeup by hundreds of milliseconds.
            #expect(took < .seconds(2), "stop() took \(took)")
        }
    }

    @Test("refresh() → the unchanged table delivered again; etcd down from the start → unavailable, then the table once it is up")
    func refreshAndLateStart() throws {
        try withEtcdLab { lab in
            let (_, table) = try Self.publishedCanary(lab)
            let (source, recorder) = try Self.started(lab.url)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))
            source.refresh()
            #expect(ProxyLab.eventually(within: .seconds(5)) { recorder.tables.count == 2 })

            source.stop()
            lab.stop()
            let (late, lateRecorder) = try Self.started(lab.url)
            defer { late.stop() }
            #expect(lateRecorder.waitForEvent(after: 0) { event in
                if case .unavailable = event { return true }
                return false
            })
            try lab.restart()
            #expect(lateRecorder.waitForTable(EtcdTableLayout.readBackOrder(table)))
        }
    }

    @Test("the reconciler fed by etcd: the published table installed once; etcd down → status unavailable, the table kept; back with a change → installed")
    func reconciled() throws {
        try withEtcdLab { lab in
            let (client, table) = try Self.publishedCanary(lab)
            let source = try TableSourceURL.open("etcd:\(lab.url)")
            #expect(source.location == "etcd:\(lab.url)")
            let target = ReconcilerTests.RecordingTarget()
            let reconciler = try Reconciler(source: source, targets: [target], lastGoodFile: nil) { _ in }
            try reconciler.start()
            defer { reconciler.stop() }
            #expect(ProxyLab.eventually(within: .seconds(10)) { target.tables == [EtcdTableLayout.readBackOrder(table)] })

            lab.stop()
            #expect(ProxyLab.eventually(within: .seconds(10)) { reconciler.status.sourceState == "unavailable" })
            #expect(target.tables.count == 1, "nothing installed or removed while etcd is down")

            try lab.restart()
            let changed = Self.changing(table, endpoint: 0) { $0.weight = 1 }
            try Self.put(client, changed.services[0], changed.services[0].endpoints[0])
            #expect(ProxyLab.eventually(within: .seconds(10)) { target.tables.last == EtcdTableLayout.readBackOrder(changed) })
            #expect(reconciler.status.sourceState == "up")
        }
    }
}
