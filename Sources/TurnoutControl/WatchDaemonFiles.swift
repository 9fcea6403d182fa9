/// Where `turnout apply --watch` keeps its files in one network namespace: the status that
/// `turnout status` reads, the last-good table it installs first at its next start, and the
/// lock (``DaemonLock``) that keeps a second daemon out of the namespace.
///
/// The host's namespace uses the plain paths below; any other namespace the same paths with
/// its ``NetworkNamespaceKey`` in the name, so daemons in namespaces sharing a filesystem never
/// read each other's files. `--status-file` and `--last-good` override the first two; the lock
/// is always the namespace's, since what it protects is the namespace's table. A value.
public struct WatchDaemonFiles: Sendable, Hashable {
    public static let statusPath = "/run/turnout/watch-status.json"
    public static let lastGoodPath = "/var/lib/turnout/last-good.json"
    public static let lockPath = "/run/turnout/apply-watch.lock"

    public var status: String
    public var lastGood: String
    public var lock: String

    public init(namespace: NetworkNamespaceKey) {
        status = namespace.path(for: Self.statusPath)
        lastGood = namespace.path(for: Self.lastGoodPath)
        lock = namespace.path(for: Self.lockPath)
    }
}
