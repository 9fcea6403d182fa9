import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutTestSupport

/// Three nodes (network namespaces), each running `turnout apply --watch --source etcd:…`
/// against one etcd in a hub namespace they reach over veth pairs, with an app on every node
/// connecting to the service VIP the whole time. One publish converges all three; then 50
/// weight changes are timed from the etcd write to the rule being installed on every node (the
/// figures are printed, never asserted: this machine's timing is not the test's business).
///
/// ```
///   node1 10.77.1.2 ─veth─┐
///   node2 10.77.2.2 ─veth─┼─ hub 10.77.0.1: etcd
///   node3 10.77.3.2 ─veth─┘
/// ```
/// Each node holds the service's two endpoints itself (10.1.0.5:8080 and 10.1.0.6:8081 on its
/// `lo`), so its app's connections to 10.96.0.20:80 go through its own DNAT rules.
@Suite("three nodes converging on one etcd", .serialized,
       .enabled(if: KernelLab.isEnabled && EtcdLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct ThreeNodeConvergenceTests {
    static let service = ServiceName(namespace: "shop", name: "checkout")!
    static let etcdHost = "10.77.0.1"

    static func table(stable: UInt32, canary: UInt32) throws -> ServiceTable {
        try TableDecoder.decode(CanaryTable.yaml(stable: stable, canary: canary), name: "three-nodes.yaml")
    }

    /// The weighted pick's slots for the stable endpoint (10.1.0.5) as a node's kernel holds
    /// them, read over netlink; nil while the table is not there.
    static func stableSlots(_ node: NetworkNamespace) -> Int? {
        guard let backend = try? NftablesBackend(namespacePath: node.path),
              let table = try? backend.readInstalled() else { return nil }
        // Each pick chain has its own map (`endpoint-picks4-mod10` for 90/10).
        let picks = table.sets.filter { $0.name.hasPrefix("endpoint-picks4-") }
        return picks.reduce(0) { $0 + $1.elements.count { $0.data?.starts(with: [10, 1, 0, 5]) == true } }
    }

    @Test("one publish → all three converge; 50 weight changes → every node follows each (p50/p99 printed); 500 changes in ~1 s → a few installs, final state exact; etcd down → rules kept; back → converged; the apps' connections never fail")
    func threeNodes() throws {
        let hub = try NetworkNamespace.create(prefix: "conv-hub")
        var nodes: [NetworkNamespace] = []
        var processes: [LabProcess] = []
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-conv-\(getpid())-\(UUID().uuidString)").path
        defer {
            for process in processes { process.stop() }
            for node in nodes { try? node.remove() }
            try? hub.remove()
            try? FileManager.default.removeItem(atPath: directory)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try IPBatch.run(in: hub, ["link set lo up"])
        for index in 1...3 {
            let node = try NetworkNamespace.create(prefix: "conv-n\(index)")
            nodes.append(node)
            let hubSide = "hub\(index)"
            try IPBatch.run(["link add \(hubSide) netns \(hub.name) type veth peer name eth0 netns \(node.name)"])
            try IPBatch.run(in: hub, [
                "addr add \(Self.etcdHost)/32 dev \(hubSide)",
                "link set \(hubSide) up",
                "route add 10.77.\(index).2/32 dev \(hubSide)",
            ])
            try IPBatch.run(in: node, [
                "link set lo up",
                "addr add 10.77.\(index).2/32 dev eth0",
                "link set eth0 up",
                "route add \(Self.etcdHost)/32 dev eth0",
                "addr add 10.1.0.5/32 dev lo",
                "addr add 10.1.0.6/32 dev lo",
                "route add 10.96.0.0/12 dev lo src 10.77.\(index).2",
            ])
            let server = try LabProcess(try Subprocess.locate("ip"), ["netns", "exec", node.name, "/usr/bin/python3", Repository.path("scripts/lab/tcp.py"),
                                                                        "serve", "node\(index)", "10.1.0.5", "8080"])
            let canary = try LabProcess(try Subprocess.locate("ip"), ["netns", "exec", node.name, "/usr/bin/python3", Repository.path("scripts/lab/tcp.py"),
                                                                        "serve", "node\(index)-canary", "10.1.0.6", "8081"])
            processes += [server, canary]
        }

        let etcd = try EtcdLab.start(in: hub, host: Self.etcdHost)
        defer { etcd.destroy() }
        let client = try EtcdClient(url: etcd.url)
        let layout = EtcdTableLayout.standard
        try NamespaceThread.run(in: hub.path, timeLimit: .seconds(20)) {
            _ = try EtcdPublisher.publish(try Self.table(stable: 9, canary: 1), to: client)
        }

        var daemons: [LabProcess] = []
        for (index, node) in nodes.enumerated() {
            daemons.append(try LabProcess(try Subprocess.locate("ip"), [
                "netns", "exec", node.name, Repository.turnoutBinary, "apply", "--watch", "--source", "etcd:\(etcd.url)",
                "--last-good", "\(directory)/node\(index + 1)-last-good.json", "--status-file", "\(directory)/node\(index + 1)-status.json",
            ]))
        }
        processes += daemons
        // One publish (before the nodes started): every node converges on it.
        let converged = ProxyLab.eventually(within: .seconds(20)) { nodes.allSatisfy { Self.stableSlots($0) == 9 } }
        try #require(converged, "not converged: \(nodes.map { Self.stableSlots($0) as Any }); \(daemons.map(\.standardError))")

        // Apps on every node, connecting to the VIP one connection after another for 10 s: through
        // the 50 changes and the burst.
        let apps = try nodes.map { node in
            try LabProcess(try Subprocess.locate("ip"), ["netns", "exec", node.name, "/usr/bin/python3", Repository.path("scripts/lab/tcp.py"),
                                                         "split", "10.96.0.20", "80", "1000000", "--deadline", "10", "--timeout", "2"])
        }
        processes += apps

        // 50 changes of the stable endpoint's weight: each one key put, timed until every node's
        // kernel holds the new pick (polled over netlink every 2 ms).
        var everyNode: [Duration] = []
        var perNode: [Duration] = []
        for change in 0..<50 {
            let weight = UInt32(2 + change)
            let endpoint = Endpoint(address: IPAddress("10.1.0.5")!, weight: weight)
            let key = layout.endpointKey(Self.service, endpoint)
            let value = Array(TableEncoder.json(endpoint).utf8)
            _ = try NamespaceThread.run(in: hub.path, timeLimit: .seconds(10)) { try client.put(key, value) }
            let written = ContinuousClock.now
            var pending = Set(nodes.indices)
            while !pending.isEmpty && ContinuousClock.now - written < .seconds(10) {
                for index in pending where Self.stableSlots(nodes[index]) == Int(weight) {
                    pending.remove(index)
                    perNode.append(ContinuousClock.now - written)
                }
                if !pending.isEmpty { Thread.sleep(forTimeInterval: 0.002) }
            }
            #expect(pending.isEmpty, "change \(change): nodes \(pending.map { $0 + 1 }) did not follow within 10 s")
            everyNode.append(ContinuousClock.now - written)
        }

        // A burst of 500 changes in about a second: a few installs per node, the final state exact.
        let statusFiles = nodes.indices.map { "\(directory)/node\($0 + 1)-status.json" }
        func installs() -> [UInt64] { statusFiles.map { (try? ReconcilerStatusFile.read($0))??.installs ?? 0 } }
        Thread.sleep(forTimeInterval: 0.5)  // the status files follow within 250 ms
        let installsBefore = installs()
        // Four writers of 125 puts each (one writer makes about 250 a second here); the last
        // write wins, so the expected weight is read back from etcd afterwards.
        let burstStart = ContinuousClock.now
        let writers = (0..<4).map { writer in
            BackgroundCall {
                try NamespaceThread.run(in: hub.path, timeLimit: .seconds(60)) {
                    for write in 0..<125 {
                        let endpoint = Endpoint(address: IPAddress("10.1.0.5")!, weight: UInt32(60 + (writer * 125 + write) % 40))
                        _ = try client.put(layout.endpointKey(Self.service, endpoint), Array(TableEncoder.json(endpoint).utf8))
                    }
                }
            }
        }
        for writer in writers { try writer.result(within: .seconds(90)) }
        let burst = ContinuousClock.now - burstStart
        let final = try NamespaceThread.run(in: hub.path, timeLimit: .seconds(10)) { () throws -> ServiceTable in
            let range = try client.range(prefix: layout.prefix)
            return try layout.table(from: Dictionary(uniqueKeysWithValues: range.keyValues.map { ($0.key, $0.value) }))
        }
        let finalWeight = try #require(final.services.first?.endpoints.first { "\($0.address)" == "10.1.0.5" }?.weight)
        #expect(ProxyLab.eventually(within: .seconds(10)) { nodes.allSatisfy { Self.stableSlots($0) == Int(finalWeight) } },
                "after the burst (etcd holds weight \(finalWeight)): \(nodes.map { Self.stableSlots($0) as Any })")
        Thread.sleep(forTimeInterval: 0.5)
        let burstInstalls = zip(installs(), installsBefore).map { $0 - $1 }
        // 5 for a burst of about a second; one more per extra second a loaded machine (the suites
        // run in parallel) stretches it, since the debounce installs at least once a second.
        let most = UInt64(4 + Int(burst / Debounce.standard.maxDelay))
        #expect(burstInstalls.allSatisfy { (1...most).contains($0) }, "installs per node for 500 changes in \(burst): \(burstInstalls), at most \(most)")

        // etcd stopped: every node keeps its rules and says the source is down;
        // restarted and changed: every node converges again.
        etcd.stop()
        #expect(ProxyLab.eventually(within: .seconds(10)) {
            statusFiles.allSatisfy { (try? ReconcilerStatusFile.read($0))??.sourceState == "unavailable" }
        })
        Thread.sleep(forTimeInterval: 1)
        #expect(nodes.allSatisfy { Self.stableSlots($0) == Int(finalWeight) }, "rules changed while etcd was down")
        try etcd.restart()
        try NamespaceThread.run(in: hub.path, timeLimit: .seconds(20)) {
            _ = try EtcdPublisher.publish(try Self.table(stable: 3, canary: 1), to: client)
        }
        #expect(ProxyLab.eventually(within: .seconds(15)) { nodes.allSatisfy { Self.stableSlots($0) == 3 } },
                "after etcd came back: \(nodes.map { Self.stableSlots($0) as Any })")

        // The apps: every connection answered by one of the node's own endpoints.
        var appConnections: [Int] = []
        for (index, app) in apps.enumerated() {
            _ = app.waitForExit(within: .seconds(20))
            let output = SplitClientOutput(app.standardOutput)
            let answered = output.connections(answeredBy: "node\(index + 1)")
            #expect(output.connections(answeredBy: "error") == 0 && answered > 0,
                    "node\(index + 1) app: \(app.standardOutput) \(app.standardError); the node's counters: \(nodes[index].kernelCounters())")
            appConnections.append(answered)
        }

        func percentile(_ values: [Duration], _ p: Double) -> String {
            let sorted = values.sorted()
            let value = sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
            return String(format: "%.1f ms", Double(value / .microseconds(1)) / 1000)
        }
        print("three nodes, 50 weight changes, etcd write → rule installed: every node p50 \(percentile(everyNode, 0.5)), p99 \(percentile(everyNode, 0.99)), max \(percentile(everyNode, 1)); per node p50 \(percentile(perNode, 0.5)), p99 \(percentile(perNode, 0.99)) (includes the 100 ms debounce); 500 changes in \(burst): installs per node \(burstInstalls); app connections per node, none failed: \(appConnections)")
    }
}
