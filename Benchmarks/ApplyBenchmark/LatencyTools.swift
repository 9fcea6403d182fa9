import Foundation
import CTurnoutLinux
#if canImport(Glibc)
import Glibc
#endif

/// The lab's two helpers, run by the benchmark itself: `serve` inside the endpoint namespace
/// (`ip netns exec NS turnout-bench-apply serve …`), `connect-mix` in the host namespace, moving
/// between the client namespaces. Plain blocking sockets: nothing between the measured
/// `connect(2)` and the kernel but one system call.
enum LatencyTools {
    /// `serve PORT SECONDS`: accepts TCP connections on every address and closes each one when
    /// its client has: the client resets it (SO_LINGER 0) right after its timed connect, so no
    /// TIME_WAIT piles up over tens of thousands of connects. The server never resets first: a
    /// reset that beat the client's wake-up would fail its connect with ECONNRESET. A client that
    /// stays silent is dropped after a second. Exits after SECONDS, or within a second of its
    /// parent (the benchmark) going away.
    static func serve(port: UInt16, seconds: Int) -> Int32 {
        let parent = getppid()
        let deadline = ContinuousClock.now + .seconds(seconds)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { return fail("socket") }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        // accept() wakes up every second to check the deadline and the parent.
        var wake = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &wake, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = 0  // INADDR_ANY
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { return fail("bind :\(port)") }
        guard listen(listener, 4096) == 0 else { return fail("listen") }
        var reset = linger(l_onoff: 1, l_linger: 0)
        var patience = timeval(tv_sec: 1, tv_usec: 0)
        var scratch = [UInt8](repeating: 0, count: 256)
        while ContinuousClock.now < deadline && getppid() == parent {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { continue }  // EAGAIN (the wake-up), EINTR, ECONNABORTED
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &patience, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(connection, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
            // Until the client's reset (ECONNRESET) or FIN (0); any data is ignored.
            while recv(connection, &scratch, scratch.count, 0) > 0 {}
            close(connection)
        }
        close(listener)
        return 0
    }

    /// One client of `connectMix`: a network namespace and where to connect from and to.
    struct Target {
        var namespacePath: String
        var source: String
        var address: String
        var port: UInt16

        /// `NSPATH,SOURCE,ADDRESS,PORT`.
        init?(_ text: String) {
            let fields = text.split(separator: ",").map(String.init)
            guard fields.count == 4, let port = UInt16(fields[3]) else { return nil }
            (namespacePath, source, address, self.port) = (fields[0], fields[1], fields[2], port)
        }
    }

    /// `connect-mix COUNT WARMUP BLOCK DEADLINE NSPATH,SOURCE,ADDRESS,PORT…`: COUNT timed
    /// connects to every target, interleaved in blocks of BLOCK (block 1 of every target, then
    /// block 2, …; every other pass in reverse order), after WARMUP untimed ones each. Each block
    /// runs in its target's network namespace (setns on this thread; a socket keeps the
    /// namespace it was made in), so every target sees the same drift of a shared machine at a
    /// grain of milliseconds. Per connect: socket, bind to SOURCE, connect (timed with
    /// CLOCK_MONOTONIC around the call alone), close with a reset; a connect gives up after 2 s
    /// and the whole run stops at DEADLINE seconds.
    ///
    /// The benchmark gives every run a source address of its own: a 4-tuple used before may
    /// still have a conntrack entry, and a SYN that matches an existing entry is translated by
    /// that entry's NAT binding without walking a single rule, which would flatter a big table.
    /// The port is still chosen at connect time (IP_BIND_ADDRESS_NO_PORT), in sequence.
    /// Prints one line per target, in order:
    /// `connects=N failures=F p50_ns=… p90_ns=… p99_ns=… mean_ns=… max_ns=… error=…`.
    static func connectMix(count: Int, warmup: Int, block: Int, deadlineSeconds: Int, targets: [Target]) -> Int32 {
        struct Client {
            var namespace: Int32
            var source = sockaddr_in()
            var destination = sockaddr_in()
            var latencies: [Int] = []
            var failures = 0
            var firstError: String?
        }
        var clients: [Client] = []
        for target in targets {
            let namespace = open(target.namespacePath, O_RDONLY | O_CLOEXEC)
            guard namespace >= 0 else { return fail("open \(target.namespacePath)") }
            var client = Client(namespace: namespace)
            client.source.sin_family = sa_family_t(AF_INET)
            client.destination.sin_family = sa_family_t(AF_INET)
            client.destination.sin_port = target.port.bigEndian
            guard inet_pton(AF_INET, target.source, &client.source.sin_addr) == 1,
                  inet_pton(AF_INET, target.address, &client.destination.sin_addr) == 1 else { return fail("bad address in \(target)") }
            client.latencies.reserveCapacity(count)
            clients.append(client)
        }
        let deadline = ContinuousClock.now + .seconds(deadlineSeconds)

        /// One connect from `client`'s namespace; its latency in ns, or the error.
        func connectOnce(_ client: inout Client) -> Result<Int, ConnectError> {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return .failure(ConnectError(errno: errno)) }
            defer { close(fd) }
            var giveUp = timeval(tv_sec: 2, tv_usec: 0)  // a blocking connect honours SO_SNDTIMEO
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &giveUp, socklen_t(MemoryLayout<timeval>.size))
            var reset = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
            if client.source.sin_addr.s_addr != 0 {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_IP), ipBindAddressNoPort, &one, socklen_t(MemoryLayout<Int32>.size))
                let bound = withUnsafePointer(to: &client.source) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                guard bound == 0 else { return .failure(ConnectError(errno: errno)) }
            }
            var start = timespec(), end = timespec()
            clock_gettime(CLOCK_MONOTONIC, &start)
            let result = withUnsafePointer(to: &client.destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            clock_gettime(CLOCK_MONOTONIC, &end)
            guard result == 0 else { return .failure(ConnectError(errno: errno)) }
            return .success((end.tv_sec - start.tv_sec) * 1_000_000_000 + (end.tv_nsec - start.tv_nsec))
        }

        var pass = 0
        var done = 0  // timed connects made per client so far
        var warmed = 0
        while done < count && ContinuousClock.now < deadline {
            let order = pass % 2 == 0 ? Array(clients.indices) : clients.indices.reversed()
            let warming = warmed < warmup
            let size = warming ? min(block, warmup - warmed) : min(block, count - done)
            for index in order {
                guard CTurnoutLinux_setns(clients[index].namespace, CTurnoutLinux_CLONE_NEWNET) == 0 else { return fail("setns \(targets[index].namespacePath)") }
                for _ in 0..<size {
                    switch connectOnce(&clients[index]) {
                    case .success(let nanoseconds):
                        if !warming { clients[index].latencies.append(nanoseconds) }
                    case .failure(let error):
                        if !warming {
                            clients[index].failures += 1
                            if clients[index].firstError == nil { clients[index].firstError = error.description }
                        }
                    }
                }
            }
            if warming { warmed += size } else { done += size }
            pass += 1
        }

        for var client in clients {
            close(client.namespace)
            client.latencies.sort()
            let latencies = client.latencies
            func percentile(_ fraction: Double) -> Int {
                guard !latencies.isEmpty else { return 0 }
                let rank = Int((fraction * Double(latencies.count)).rounded(.up))
                return latencies[min(max(rank, 1), latencies.count) - 1]
            }
            let mean = latencies.isEmpty ? 0 : latencies.reduce(0, +) / latencies.count
            let error = (client.firstError ?? "none").replacing(" ", with: "_")
            print("connects=\(latencies.count) failures=\(client.failures) p50_ns=\(percentile(0.5)) p90_ns=\(percentile(0.9)) "
                  + "p99_ns=\(percentile(0.99)) mean_ns=\(mean) max_ns=\(latencies.last ?? 0) error=\(error)")
        }
        return 0
    }

    struct ConnectError: Error, CustomStringConvertible {
        let errno: Int32
        var description: String { String(cString: strerror(errno)) }
    }

    /// IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind the address now, pick the port at connect.
    private static let ipBindAddressNoPort: Int32 = 24

    private static func fail(_ what: String) -> Int32 {
        FileHandle.standardError.write(Data("turnout-bench-apply: \(what): \(String(cString: strerror(errno)))\n".utf8))
        return 1
    }
}

/// One client run's summary, parsed from the `connect` helper's line. Microseconds.
struct ConnectSummary {
    var connects: Int
    var failures: Int
    var p50: Double
    var p90: Double
    var p99: Double
    var mean: Double
    var max: Double
    var error: String

    /// One summary per `connects=` line of the helper's output, in order.
    static func all(parsing output: String) -> [ConnectSummary] {
        output.split(separator: "\n").filter { $0.hasPrefix("connects=") }.compactMap { ConnectSummary(parsing: String($0)) }
    }

    init?(parsing line: String) {
        var fields: [String: String] = [:]
        for pair in line.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        func micro(_ key: String) -> Double? { fields[key].flatMap(Double.init).map { $0 / 1_000 } }
        guard let connects = fields["connects"].flatMap(Int.init), let failures = fields["failures"].flatMap(Int.init),
              let p50 = micro("p50_ns"), let p90 = micro("p90_ns"), let p99 = micro("p99_ns"),
              let mean = micro("mean_ns"), let max = micro("max_ns") else { return nil }
        self.connects = connects
        self.failures = failures
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.mean = mean
        self.max = max
        error = fields["error"] ?? "none"
    }
}
