import Foundation
import TurnoutBenchmarkSupport
import TurnoutControl

/// A network namespace the benchmark created: `/run/netns/NAME`.
struct Namespace {
    let name: String
    /// Its inode number: what Turnout keys its apply record (`/run/turnout/…-netnsINODE.state`) by.
    let inode: UInt64
    var path: String { "/run/netns/\(name)" }
}

/// Something the benchmark could not set up; the run stops and says so.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Creates and deletes the benchmark's network namespaces, all named `PREFIX-N`, so
/// scripts/bench/apply can delete whatever is left by prefix on exit (even after a crash).
final class Namespaces {
    let prefix: String
    let ip: String
    let settle: Duration
    /// Apply records of the library backends go here, never to `/run/turnout`.
    let recordDirectory: String
    private var counter = 0
    private(set) var live: [Namespace] = []

    init(prefix: String, settleMilliseconds: Int) throws {
        guard let ip = ChildProcess.executable("ip") else { throw BenchError("ip is not installed (apt-get install iproute2)") }
        self.prefix = prefix
        self.ip = ip
        settle = .milliseconds(settleMilliseconds)
        recordDirectory = NSTemporaryDirectory() + "\(prefix)-records"
    }

    /// A new, empty network namespace (loopback down, no rules).
    func create() throws -> Namespace {
        counter += 1
        let name = "\(prefix)-\(counter)"
        try run(["netns", "add", name])
        var info = stat()
        guard stat("/run/netns/\(name)", &info) == 0 else { throw BenchError("stat /run/netns/\(name): errno \(errno)") }
        let namespace = Namespace(name: name, inode: UInt64(info.st_ino))
        live.append(namespace)
        return namespace
    }

    /// Runs `ip ARGUMENTS…`; a failure stops the benchmark with ip's message.
    func run(_ arguments: [String]) throws {
        let (outcome, _) = ChildProcess.run([ip] + arguments, timeoutSeconds: 60)
        switch outcome {
        case .finished: return
        case .timedOut: throw BenchError("ip \(arguments.joined(separator: " ")): timed out")
        case .failed(let status, let message): throw BenchError("ip \(arguments.joined(separator: " ")): exit \(status): \(message)")
        }
    }

    /// `ip netns exec NAME COMMAND…` as an argument vector.
    func exec(in namespace: Namespace, _ command: [String]) -> [String] {
        [ip, "netns", "exec", namespace.name] + command
    }

    /// Deletes the namespace. When it may hold a large nftables table, that table is deleted
    /// first (one transaction, untimed) and the kernel gets `settle` to finish its deferred
    /// cleanup, so it does not run inside the next timed step on this 2-core machine.
    func retire(_ namespace: Namespace, flushNftables: Bool = true) {
        if flushNftables, let backend = try? NftablesBackend(namespacePath: namespace.path, recordDirectory: recordDirectory) {
            _ = try? backend.flush()
        }
        _ = ChildProcess.run([ip, "netns", "delete", namespace.name], timeoutSeconds: 60)
        removeRecords(of: namespace)
        live.removeAll { $0.name == namespace.name }
        if flushNftables { Thread.sleep(forTimeInterval: settle.seconds) }
    }

    /// Deletes every namespace still alive (the end of a part, or an error).
    func retireAll() {
        for namespace in live { retire(namespace, flushNftables: false) }
        try? FileManager.default.removeItem(atPath: recordDirectory)
    }

    /// The CLI keeps its apply records in /run/turnout, keyed by the namespace's inode: remove
    /// ours, so a later namespace that reuses the inode never finds a stale record.
    private func removeRecords(of namespace: Namespace) {
        for directory in ["/run/turnout", recordDirectory] {
            guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            for file in files where file.hasSuffix("-netns\(namespace.inode).state") {
                try? FileManager.default.removeItem(atPath: "\(directory)/\(file)")
            }
        }
    }
}

extension Duration {
    var seconds: Double { Samples.milliseconds(self) / 1_000 }
    var milliseconds: Double { Samples.milliseconds(self) }
}
