import Foundation
import Synchronization

/// Decides whether kernel tests (network namespaces, real netfilter) run in this process.
///
/// They run when the process is root, or when `TURNOUT_REQUIRE_NETNS=1` is set (`.ci/run` sets
/// it). In the second case a process that is not root still runs them, and they fail on the
/// first `ip netns add` with a message saying why: a CI that is meant to exercise the kernel
/// must never pass by skipping (DESIGN.md §8). Use it as
/// `.enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason))`.
public enum KernelLab {
    /// The environment variable that turns "skip without root" into "fail without root".
    public static let requireVariable = "TURNOUT_REQUIRE_NETNS"

    /// True when the effective user is root, who may create network namespaces.
    public static var isRoot: Bool { geteuid() == 0 }

    /// True when `TURNOUT_REQUIRE_NETNS=1`: kernel tests must run, and fail if they cannot.
    public static var isRequired: Bool { ProcessInfo.processInfo.environment[requireVariable] == "1" }

    /// Whether kernel tests run at all: as root, or whenever they are required.
    public static var isEnabled: Bool { isRoot || isRequired }

    /// Why kernel tests were skipped, for the test report.
    public static var skipReason: String {
        "kernel test: needs root to create network namespaces (run as root, e.g. `sudo scripts/test`; "
            + "\(requireVariable)=1 makes these tests fail instead of skipping)"
    }
}

/// A throwaway network namespace (`ip netns add`) with its own loopback, interfaces and netfilter
/// tables, for tests that touch the kernel without touching the host.
///
/// Names are `<prefix>-<pid>-<counter>`, unique across the parallel tests of one process and
/// across concurrent test processes. Prefer `withNetworkNamespace { ns in … }`, which always
/// removes the namespace; with `create` the caller must call `remove()` (a namespace still
/// present when the last reference goes away is removed then, as a backstop). A process that is
/// killed leaves its namespaces behind: `ip netns list | grep <prefix>-<pid>-` finds them.
/// Requires root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and `ip` from iproute2.
public final class NetworkNamespace: Sendable {
    /// The namespace's name as `ip netns` knows it.
    public let name: String

    /// The namespace's bind mount (`/run/netns/NAME`): open it to enter the namespace, e.g.
    /// `NetfilterSocket(namespacePath:)`.
    public var path: String { "/run/netns/\(name)" }

    /// A directory for files that belong with this namespace (an apply record directory, say):
    /// not made here (whoever writes there creates it), and deleted with the namespace, so test
    /// runs leave nothing in the temporary directory.
    public var scratchDirectory: String { NSTemporaryDirectory() + "turnout-ns-\(name)" }

    /// Set once the namespace is deleted, so `remove()` is idempotent and `deinit` knows.
    private let isRemoved = Atomic<Bool>(false)

    /// Numbers the namespaces of this process; with the pid it makes every name unique.
    private static let counter = Atomic<Int>(0)

    private init(name: String) {
        self.name = name
    }

    /// Creates a namespace named `<prefix>-<pid>-<counter>` and brings its `lo` up.
    ///
    /// `prefix` must be non-empty and made of letters, digits, `-` and `_`. Throws
    /// `NetworkNamespaceError` (with `ip`'s stderr) when the namespace cannot be made; a half-made
    /// namespace is removed before the error is thrown.
    public static func create(prefix: String = "turnout-test") throws -> NetworkNamespace {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_"))
        guard !prefix.isEmpty, prefix.unicodeScalars.allSatisfy({ allowed.contains($0) }) else {
            throw NetworkNamespaceError.invalidPrefix(prefix)
        }
        let number = counter.add(1, ordering: .relaxed).newValue
        let name = "\(prefix)-\(getpid())-\(number)"

        let added = try Subprocess.run(try Subprocess.locate("ip"), ["netns", "add", name], timeLimit: .seconds(30))
        guard added.status == 0 else {
            throw NetworkNamespaceError.commandFailed(command: "ip netns add \(name)", result: added, hint: rootHint)
        }
        let namespace = NetworkNamespace(name: name)
        do {
            let up = try namespace.run("ip", ["link", "set", "lo", "up"])
            guard up.status == 0 else {
                throw NetworkNamespaceError.commandFailed(command: "ip link set lo up (in \(name))", result: up, hint: nil)
            }
        } catch {
            try? namespace.remove()
            throw error
        }
        return namespace
    }

    /// Runs `executable arguments…` inside the namespace (`ip netns exec NAME …`).
    ///
    /// `executable` is a name found on `PATH` or in the sbin directories, or an absolute path.
    /// A non-zero exit status is returned, not thrown: the caller asserts on it. Throws only when
    /// the program cannot be found or started, or exceeds `timeLimit`.
    public func run(_ executable: String, _ arguments: [String] = [], input: String? = nil,
                    timeLimit: Duration = .seconds(60)) throws -> ProcessResult {
        let program = executable.hasPrefix("/") ? executable : try Subprocess.locate(executable)
        return try Subprocess.run(try Subprocess.locate("ip"), ["netns", "exec", name, program] + arguments,
                                  input: input, timeLimit: timeLimit)
    }

    /// Deletes the namespace (`ip netns del`) and its ``scratchDirectory``. Calling it again does
    /// nothing.
    ///
    /// Retries once, since a deletion racing a process that is still leaving the namespace can
    /// fail transiently; throws `NetworkNamespaceError` if the namespace is still there after that.
    public func remove() throws {
        guard !isRemoved.load(ordering: .acquiring) else { return }
        removeTurnoutFiles()
        let ip = try Subprocess.locate("ip")
        var result = try Subprocess.run(ip, ["netns", "del", name], timeLimit: .seconds(30))
        if result.status != 0 && exists {
            Thread.sleep(forTimeInterval: 0.1)
            result = try Subprocess.run(ip, ["netns", "del", name], timeLimit: .seconds(30))
        }
        guard result.status == 0 || !exists else {
            throw NetworkNamespaceError.commandFailed(command: "ip netns del \(name)", result: result, hint: nil)
        }
        isRemoved.store(true, ordering: .releasing)
        try? FileManager.default.removeItem(atPath: scratchDirectory)
    }

    /// The files turnout keeps per namespace on the shared filesystem: apply records
    /// (`/run/turnout/nft-TABLE-netnsINODE.state`), `apply --watch`'s status and lock
    /// (`…-netns-NAME.json`, `.lock`) and its last-good table in `/var/lib/turnout`. Removed
    /// before the namespace is, while it still holds its inode number: a namespace made later
    /// (by a test running beside this one) may get the same number, and its record is its own.
    private func removeTurnoutFiles() {
        var info = stat()
        let inode = stat(path, &info) == 0 ? "-netns\(info.st_ino)." : nil
        let named = "-netns-\(name)."
        for directory in ["/run/turnout", "/var/lib/turnout"] {
            for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            where file.contains(named) || inode.map(file.contains) == true {
                unlink("\(directory)/\(file)")
            }
        }
    }

    /// Whether `ip netns` still lists this namespace (its bind mount under /run/netns exists).
    public var exists: Bool {
        FileManager.default.fileExists(atPath: "/run/netns/\(name)")
    }

    deinit {
        // Backstop for callers of `create` that forgot `remove()` or threw before reaching it.
        if !isRemoved.load(ordering: .acquiring) { try? remove() }
    }

    private static var rootHint: String? {
        if KernelLab.isRoot { return nil }
        return "not running as root, which `ip netns add` needs"
            + (KernelLab.isRequired ? "; the test fails rather than skips because \(KernelLab.requireVariable)=1" : "")
    }
}

/// Runs `body` with a fresh network namespace and removes the namespace afterwards, also when
/// `body` throws.
///
/// An error from `body` wins over an error from the removal (which is then printed to stderr, so
/// a leaked namespace is never silent); a removal error alone is thrown.
public func withNetworkNamespace<Result>(prefix: String = "turnout-test",
                                         _ body: (NetworkNamespace) throws -> Result) throws -> Result {
    let namespace = try NetworkNamespace.create(prefix: prefix)
    let result: Result
    do {
        result = try body(namespace)
    } catch {
        removeAfterFailure(namespace)
        throw error
    }
    try namespace.remove()
    return result
}

/// The `async` form of `withNetworkNamespace`, for bodies that await (servers, clients).
public func withNetworkNamespace<Result>(prefix: String = "turnout-test",
                                         isolation: isolated (any Actor)? = #isolation,
                                         _ body: (NetworkNamespace) async throws -> Result) async throws -> Result {
    let namespace = try NetworkNamespace.create(prefix: prefix)
    let result: Result
    do {
        result = try await body(namespace)
    } catch {
        removeAfterFailure(namespace)
        throw error
    }
    try namespace.remove()
    return result
}

private func removeAfterFailure(_ namespace: NetworkNamespace) {
    do {
        try namespace.remove()
    } catch {
        FileHandle.standardError.write(Data("warning: could not remove network namespace \(namespace.name): \(error)\n".utf8))
    }
}

/// Why a network namespace could not be created, used or removed.
///
/// `description` carries the failed command, its exit status and stderr, and a hint when the
/// cause is known (not root), ready to be shown as a test failure.
public enum NetworkNamespaceError: Error, CustomStringConvertible {
    case invalidPrefix(String)
    case commandFailed(command: String, result: ProcessResult, hint: String?)

    public var description: String {
        switch self {
        case .invalidPrefix(let prefix):
            return "invalid network namespace prefix \"\(prefix)\": use letters, digits, - and _"
        case .commandFailed(let command, let result, let hint):
            var text = "\(command) exited with status \(result.status)"
            let stderr = result.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
            if !stderr.isEmpty { text += ": \(stderr)" }
            if let hint { text += " (\(hint))" }
            return text
        }
    }
}
