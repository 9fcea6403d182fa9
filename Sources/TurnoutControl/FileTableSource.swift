import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// A table file or directory as a live ``TableSource``: read at start, then again whenever
/// inotify reports a change in its directory, delivered when its ``TableFileStamp`` moved.
///
/// Watches the directory, not the file: editors and `kubectl cp` replace a file by renaming
/// another over it, and a Kubernetes ConfigMap volume swaps a symlinked directory, neither of
/// which a watch on the file itself survives. Only events that end a write (`IN_CLOSE_WRITE`,
/// `IN_MOVED_TO`, `IN_DELETE`, `IN_MOVED_FROM`, `IN_ATTRIB`) count, and a changed stamp must
/// hold still for ``settleTime`` before the table is read, so a writer that truncates and writes
/// in place is not read half-way. Every ``recheckInterval`` the
/// stamp is compared anyway, so a change inotify cannot see (a file on NFS, a watch the kernel
/// dropped at `IN_Q_OVERFLOW`) is still found.
///
/// The corresponding C calls are `inotify_init1(2)`, `inotify_add_watch(2)`, `poll(2)` and
/// `read(2)`.
public final class FileTableSource: TableSource {
    public static let recheckInterval: Duration = .seconds(2)
    /// How long a changed stamp must hold still before the table is read.
    public static let settleTime: Duration = .milliseconds(30)

    public let path: String
    public var location: String { "file:\(path)" }
    private let shared: SourceThreadControl

    public init(path: String) throws(SystemCallError) {
        self.path = path
        shared = try SourceThreadControl()
    }

    deinit { stop() }

    public func start(_ deliver: @escaping @Sendable (TableSourceEvent) -> Void) throws(SystemCallError) {
        let inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard inotify >= 0 else { throw SystemCallError(call: "inotify_init1", errno: errno) }
        let watched = Self.watchedDirectory(path)
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
        // A directory that does not exist yet is not an error: the recheck finds the table once
        // it appears (and the first read reports it unavailable meanwhile).
        _ = inotify_add_watch(inotify, watched, mask)
        let watcher = Watcher(path: path, inotify: inotify, shared: shared, deliver: deliver)
        shared.adopt(try JoinableThread(handingOver: watcher) { $0.run() })
    }

    public func refresh() { shared.refresh() }

    public func stop() { shared.stop() }

    /// The directory whose entries decide the table: the path itself for a directory, else the
    /// file's directory.
    static func watchedDirectory(_ path: String) -> String {
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { return path }
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The watching thread's state.
    private final class Watcher {
        let path: String
        let inotify: Int32
        let shared: SourceThreadControl
        let deliver: @Sendable (TableSourceEvent) -> Void
        /// The stamp of what was delivered last; nil before the first delivery or while the
        /// table cannot be read.
        var delivered: TableFileStamp?
        var reportedUnavailable = false

        init(path: String, inotify: Int32, shared: SourceThreadControl, deliver: @escaping @Sendable (TableSourceEvent) -> Void) {
            self.path = path
            self.inotify = inotify
            self.shared = shared
            self.deliver = deliver
        }

        deinit { close(inotify) }

        func run() {
            var buffer = [UInt8](repeating: 0, count: 16_384)
            while true {
                let (stopping, refreshing) = shared.take()
                if stopping { return }
                if refreshing {
                    delivered = nil
                    reportedUnavailable = false
                }
                readIfChanged()
                var entries = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: shared.wakeup.descriptor, events: Int16(POLLIN), revents: 0)]
                let deadline = ContinuousClock.now + FileTableSource.recheckInterval
                let ready = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, 2, deadline.pollMilliseconds) }
                if ready < 0 && errno != EINTR {
                    // Only a kernel out of memory fails poll: wait the recheck out rather than spin.
                    usleep(useconds_t(FileTableSource.recheckInterval / .microseconds(1)))
                }
                if entries[1].revents != 0 { shared.wakeup.drain() }
                // The events themselves do not matter (the stamp decides); read them all so the
                // next poll sleeps.
                while buffer.withUnsafeMutableBytes({ read(inotify, $0.baseAddress, $0.count) }) > 0 {}
            }
        }

        private func readIfChanged() {
            guard let stamp = TableFileStamp(path) else {
                delivered = nil
                if !reportedUnavailable {
                    reportedUnavailable = true
                    let reason: String
                    do throws(TableError) {
                        _ = try TableFile.files(at: path)
                        reason = "\(path) changed while being read"
                    } catch {
                        reason = "\(error)"
                    }
                    deliver(.unavailable(reason))
                }
                return
            }
            guard stamp != delivered, let settled = Self.settled(path, from: stamp) else { return }
            reportedUnavailable = false
            delivered = settled
            let revision = settled.revision
            do throws(TableError) {
                deliver(.table(try TableFile.load(path), revision: revision))
            } catch {
                deliver(.invalid(error, revision: revision))
            }
        }

        /// The stamp once it held still for ``settleTime`` (at most a second): a writer that
        /// truncates and then writes in place is not read between the two. Nil when the table
        /// went away meanwhile (the next round reports it).
        static func settled(_ path: String, from stamp: TableFileStamp) -> TableFileStamp? {
            var stamp = stamp
            let deadline = ContinuousClock.now + .seconds(1)
            while ContinuousClock.now < deadline {
                usleep(useconds_t(FileTableSource.settleTime / .microseconds(1)))
                guard let again = TableFileStamp(path) else { return nil }
                if again == stamp { return stamp }
                stamp = again
            }
            return stamp
        }
    }
}
