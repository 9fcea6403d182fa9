import Foundation
import Glibc
import Synchronization
import TurnoutSocketCapture

/// A cgroup v2 directory of a test's own, for the BPF programs `turnout init --backend bpf`
/// attaches to a cgroup, with the commands that run a program inside it.
///
/// What callers must know: the cgroup is made under the cgroup v2 mount (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid host) and the BPF filesystem is mounted at
/// `/sys/fs/bpf` if it was not. Programs are started with `nsenter --net`, not `ip netns exec`:
/// the latter mounts a fresh `/sys` in which neither the cgroup nor the pins are visible.
/// Prefer `withLabCgroup`, which removes the cgroup afterwards (its processes must have ended:
/// removal waits up to 5 s for them). Requires root.
public final class LabCgroup: Sendable {
    public let path: String

    private init(path: String) { self.path = path }

    /// Makes `<cgroup v2 root>/<prefix>-<pid>-<n>`.
    public static func create(prefix: String) throws -> LabCgroup {
        guard let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].first(where: { FilesystemType(path: $0) == .cgroup2 }) else {
            throw ServiceLabError("no cgroup v2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
        }
        if FilesystemType(path: "/sys/fs/bpf") != .bpf {
            let mount = try Subprocess.run(try Subprocess.locate("mount"), ["-t", "bpf", "bpf", "/sys/fs/bpf"])
            guard mount.status == 0 else { throw ServiceLabError("mount -t bpf bpf /sys/fs/bpf: \(mount.standardError)") }
        }
        let path = "\(root)/\(prefix)-\(getpid())-\(counter.add(1, ordering: .relaxed).newValue)"
        guard mkdir(path, 0o755) == 0 else { throw ServiceLabError.system("mkdir \(path)") }
        return LabCgroup(path: path)
    }

    /// The argument vector that runs `arguments` in `namespace`, inside this cgroup (as the same
    /// PID: the shell execs), as `uid`/`gid` (real and effective) when given.
    public func command(in namespace: NetworkNamespace, uid: UInt32? = nil, gid: UInt32? = nil, _ arguments: [String]) throws -> [String] {
        var identity: [String] = []
        if uid != nil || gid != nil {
            identity = [try Subprocess.locate("setpriv")] + (uid.map { ["--reuid", "\($0)"] } ?? [])
                + (gid.map { ["--regid", "\($0)"] } ?? []) + ["--clear-groups"]
        }
        return [try Subprocess.locate("nsenter"), "--net=\(namespace.path)", "--", "/bin/sh", "-c",
                "echo $$ > '\(path)/cgroup.procs' && exec \"$@\"", "sh"] + identity + arguments
    }

    /// Runs `arguments` as ``command(in:uid:gid:_:)`` builds it and waits for it.
    public func run(in namespace: NetworkNamespace, uid: UInt32? = nil, gid: UInt32? = nil, _ arguments: [String],
                    timeLimit: Duration = .seconds(30)) throws -> ProcessResult {
        let argv = try command(in: namespace, uid: uid, gid: gid, arguments)
        return try Subprocess.run(argv[0], Array(argv.dropFirst()), timeLimit: timeLimit)
    }

    /// Runs `arguments` in `namespace` without joining any cgroup (as `turnout init` or `status`
    /// run beside a pod), with `nsenter --net` so that /sys/fs/bpf and the cgroups stay visible.
    public static func run(in namespace: NetworkNamespace, outsideAnyLabCgroup arguments: [String],
                           timeLimit: Duration = .seconds(30)) throws -> ProcessResult {
        try Subprocess.run(try Subprocess.locate("nsenter"), ["--net=\(namespace.path)", "--"] + arguments, timeLimit: timeLimit)
    }

    /// Starts `arguments` in the background, as ``command(in:uid:gid:_:)`` builds it.
    public func start(in namespace: NetworkNamespace, uid: UInt32? = nil, gid: UInt32? = nil, _ arguments: [String]) throws -> LabProcess {
        let argv = try command(in: namespace, uid: uid, gid: gid, arguments)
        return try LabProcess(argv[0], Array(argv.dropFirst()))
    }

    /// Removes the cgroup once its processes are gone (5 s at most).
    public func remove() throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while rmdir(path) != 0 {
            let code = errno
            if code == ENOENT { return }
            guard code == EBUSY, ContinuousClock.now < deadline else { throw ServiceLabError.system("rmdir \(path)", code) }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    private static let counter = Atomic<Int>(0)
}

/// Runs `body` with a new `LabCgroup`, removed afterwards even when `body` throws.
public func withLabCgroup<Result>(prefix: String, _ body: (LabCgroup) throws -> Result) throws -> Result {
    let cgroup = try LabCgroup.create(prefix: prefix)
    defer { try? cgroup.remove() }
    return try body(cgroup)
}
