import FoundationEssentials
import Glibc
import TurnoutModel

/// Which network namespace a process runs in, as the part of a file's name that keeps one
/// namespace's daemon files (`apply --watch`'s status, last-good table and lock) apart from
/// another's on a host where namespaces share `/run` and `/var/lib`.
///
/// `ip netns exec` and CNI plugins leave the filesystem shared, so before this, a daemon in a
/// pod's namespace and one on the host wrote the same status file, and after a restart one
/// could install the other's last-good table. The host's own namespace keeps the plain names;
/// a namespace with a name in `/run/netns` (`ip netns add`, CNI's `cni-…`) is keyed by that
/// name, which survives the daemon's restarts; any other by its inode, which does while the
/// namespace lives. A value; ``current()`` reads the kernel, ``init(inode:initialInode:names:)``
/// does not.
public struct NetworkNamespaceKey: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The initial namespace (PID 1's, and every kernel thread's): the host's, or a
        /// container's own seen from inside its PID namespace.
        case initial
        /// Bound at `/run/netns/NAME`.
        case named(String)
        /// Neither: the namespace's inode number.
        case unnamed(inode: UInt64)
    }

    public let kind: Kind

    /// Where named namespaces are bound (`ip netns`, CNI).
    public static let namedDirectory = "/run/netns"

    /// Resolves `inode` against PID 1's namespace and the named ones (name, inode). A namespace
    /// bound under several names takes the first in byte order, so every process picks the same.
    public init(inode: UInt64, initialInode: UInt64?, names: [(name: String, inode: UInt64)]) {
        if inode == initialInode {
            kind = .initial
        } else if let name = names.filter({ $0.inode == inode }).map(\.name).min(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            kind = .named(name)
        } else {
            kind = .unnamed(inode: inode)
        }
    }

    /// The calling process's namespace. Throws only when its own `/proc/self/ns/net` cannot be
    /// read; the initial namespace's link closed to it or `/run/netns` missing just means "not
    /// that one" (an unreadable initial namespace makes the host's own files inode-named).
    public static func current() throws(SystemCallError) -> NetworkNamespaceKey {
        try of(process: nil)
    }

    /// The namespace of the process `pid` (nil: the caller), as ``current()`` names it. Throws
    /// when its `/proc/PID/ns/net` cannot be read (no such process, or not the caller's to see).
    public static func of(process pid: Int32?) throws(SystemCallError) -> NetworkNamespaceKey {
        let link = "/proc/\(pid.map { "\($0)" } ?? "self")/ns/net"
        guard let own = Self.node(of: link) else {
            throw SystemCallError(call: "stat(\(link))", errno: errno)
        }
        // Only entries on the namespace filesystem's device: a stale file left in /run/netns
        // (its bind mount gone) is a tmpfs inode whose number could equal a namespace's.
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: namedDirectory)) ?? []
        let names = entries.compactMap { name -> (name: String, inode: UInt64)? in
            guard let node = Self.node(of: "\(namedDirectory)/\(name)"), node.device == own.device else { return nil }
            return (name, node.inode)
        }
        let initial = Self.initialNamespace().flatMap { $0.device == own.device ? $0.inode : nil }
        return NetworkNamespaceKey(inode: own.inode, initialInode: initial, names: names)
    }

    /// `path` for this namespace: unchanged for the initial one, else with `-netns-NAME` or
    /// `-netnsINODE` before its extension (`/run/turnout/watch-status.json` in `lab` →
    /// `/run/turnout/watch-status-netns-lab.json`).
    public func path(for path: String) -> String {
        let suffix: String
        switch kind {
        case .initial: return path
        case .named(let name): suffix = "-netns-\(name)"
        case .unnamed(let inode): suffix = "-netns\(inode)"
        }
        let slash = path.lastIndex(of: "/")
        if let dot = path.lastIndex(of: "."), slash.map({ $0 < dot }) ?? true, dot != path.startIndex, path[path.index(before: dot)] != "/" {
            return String(path[..<dot]) + suffix + String(path[dot...])
        }
        return path + suffix
    }

    public var description: String {
        switch kind {
        case .initial: "the initial network namespace"
        case .named(let name): "network namespace \(name)"
        case .unnamed(let inode): "network namespace inode \(inode)"
        }
    }

    /// The initial namespace's identity: PID 1's, or where that link is closed to this process
    /// (a PID 1 with capabilities the caller lacks fails ptrace's access check, as on this CI
    /// machine) PID 2's when it is a kernel thread (`kthreadd`), since every kernel thread runs
    /// in the initial namespace. Nil when neither can be read.
    private static func initialNamespace() -> (device: UInt64, inode: UInt64)? {
        if let node = node(of: "/proc/1/ns/net") { return node }
        guard let stat = try? String(contentsOfFile: "/proc/2/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After the command's closing parenthesis: state, ppid, pgrp, session, tty, tpgid, flags.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let kernelThread: UInt64 = 0x0020_0000   // PF_KTHREAD
        guard fields.count > 6, let flags = UInt64(fields[6]), flags & kernelThread != 0 else { return nil }
        return node(of: "/proc/2/ns/net")
    }

    private static func node(of path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }
}
