import Foundation
import Glibc
import Testing
import TurnoutControl
import TurnoutTestSupport

/// Which files a daemon uses in which network namespace, and the lock that keeps a second one
/// out: namespaces and inodes given as values, the lock on real files.
@Suite("apply --watch's files per network namespace, and its lock")
struct WatchDaemonFilesTests {
    static let names: [(name: String, inode: UInt64)] = [("lab", 4026532500), ("cni-1f2e", 4026532600), ("alias", 4026532600)]

    @Test("namespace inode → key", arguments: [
        (UInt64(4026531840), "the initial network namespace"),     // PID 1's
        (4026532500, "network namespace lab"),
        (4026532600, "network namespace alias"),                   // two names: the first in byte order
        (4026532700, "network namespace inode 4026532700"),        // no name
    ])
    func key(inode: UInt64, expected: String) {
        #expect(NetworkNamespaceKey(inode: inode, initialInode: 4026531840, names: Self.names).description == expected)
    }

    @Test("PID 1's namespace unreadable → a named namespace is still named, an unnamed one keyed by inode")
    func noInitial() {
        #expect(NetworkNamespaceKey(inode: 4026532500, initialInode: nil, names: Self.names).kind == .named("lab"))
        #expect(NetworkNamespaceKey(inode: 4026531840, initialInode: nil, names: Self.names).kind == .unnamed(inode: 4026531840))
    }

    @Test("key, path → the namespace's path", arguments: [
        (NetworkNamespaceKey.Kind.initial, "/run/turnout/watch-status.json", "/run/turnout/watch-status.json"),
        (.named("lab"), "/run/turnout/watch-status.json", "/run/turnout/watch-status-netns-lab.json"),
        (.unnamed(inode: 4026532700), "/var/lib/turnout/last-good.json", "/var/lib/turnout/last-good-netns4026532700.json"),
        (.named("lab"), "/run/turnout/apply-watch.lock", "/run/turnout/apply-watch-netns-lab.lock"),
        (.named("lab"), "/etc/turnout.d/state", "/etc/turnout.d/state-netns-lab"),   // a dot in a directory only
        (.named("lab"), "/run/.hidden", "/run/.hidden-netns-lab"),
    ])
    func path(kind: NetworkNamespaceKey.Kind, path: String, expected: String) {
        let key = switch kind {
        case .initial: NetworkNamespaceKey(inode: 1, initialInode: 1, names: [])
        case .named(let name): NetworkNamespaceKey(inode: 2, initialInode: 1, names: [(name, 2)])
        case .unnamed(let inode): NetworkNamespaceKey(inode: inode, initialInode: 1, names: [])
        }
        #expect(key.kind == kind)
        #expect(key.path(for: path) == expected)
    }

    @Test("the host's namespace → the plain default paths; this test process runs in it")
    func hostDefaults() throws {
        let files = WatchDaemonFiles(namespace: try NetworkNamespaceKey.current())
        #expect(files == WatchDaemonFiles(namespace: NetworkNamespaceKey(inode: 1, initialInode: 1, names: [])))
        #expect([files.status, files.lastGood, files.lock] == [WatchDaemonFiles.statusPath, WatchDaemonFiles.lastGoodPath, WatchDaemonFiles.lockPath])
    }

    @Test("lock taken → holder is this PID; taken again → held, naming it; released → no holder, can be taken again")
    func lock() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-lock-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { unlink(path) }
        #expect(DaemonLock.holder(of: path) == nil)   // no file yet
        do {
            let first = try DaemonLock(path: path)
            #expect(first.path == path)
            #expect(DaemonLock.holder(of: path) == getpid())
            // flock(2) locks belong to an open file, so a second open in this process conflicts
            // just as another process's would.
            #expect {
                _ = try DaemonLock(path: path)
            } throws: { error in
                guard case .held(let heldPath, let pid)? = error as? DaemonLock.Failure else { return false }
                return heldPath == path && pid == getpid()
            }
        }
        #expect(DaemonLock.holder(of: path) == nil)
        let again = try DaemonLock(path: path)
        #expect(DaemonLock.holder(of: path) == getpid())
        _ = consume again
    }

    @Test("a directory that does not exist → a system error naming the call, not a hang")
    func missingDirectory() {
        #expect {
            _ = try DaemonLock(path: "/nonexistent-turnout-\(getpid())/lock")
        } throws: { error in
            guard case .system(let failure)? = error as? DaemonLock.Failure else { return false }
            return failure.description.contains("open(/nonexistent-turnout-") && failure.errno == ENOENT
        }
    }
}
