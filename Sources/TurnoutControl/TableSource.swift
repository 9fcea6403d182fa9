import TurnoutModel

/// Where a live table comes from: a file or directory (``FileTableSource``) or etcd
/// (``EtcdTableSource``), behind one small interface the ``Reconciler`` drives.
///
/// Once started, a source watches on a thread of its own and reports what it sees to the
/// `deliver` callback, on that thread: the callback must be quick and must not block (the
/// reconciler queues the event and returns). A source reports whole tables, decoded and
/// validated, or why it has none; it does not debounce (the reconciler does) and never decides
/// what is installed. `stop()` may be called from any thread; no event is delivered after it
/// returns.
public protocol TableSource: AnyObject, Sendable {
    /// The source as the user named it: `file:/etc/turnout/table.yaml`, `etcd:http://10.0.0.1:2379`.
    var location: String { get }

    /// Starts watching. The first event comes once the source was read (or failed to be).
    /// Throws only when the watch itself cannot start (no thread, no inotify descriptor).
    func start(_ deliver: @escaping @Sendable (TableSourceEvent) -> Void) throws(SystemCallError)

    /// Reads the source again now and delivers what it holds, changed or not (SIGHUP).
    func refresh()

    /// Stops watching and waits for the source's thread.
    func stop()
}

/// What a ``TableSource`` saw.
public enum TableSourceEvent: Sendable {
    /// The source holds this table now. `revision` names the version for status and logs (etcd's
    /// revision; a file's modification time and size).
    case table(ServiceTable, revision: String)
    /// The source holds something that is not a valid table; the error names the file or key,
    /// the line and the field. The last good table stays installed.
    case invalid(TableError, revision: String)
    /// The source could not be read (etcd down, a file missing): why. The source retries on its
    /// own; the last good table stays installed.
    case unavailable(String)
}
