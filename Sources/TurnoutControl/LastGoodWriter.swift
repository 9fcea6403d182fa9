import Synchronization
import TurnoutModel
import TurnoutProxy

/// Writes the reconciler's last good table to its file on a thread of its own, the newest table
/// winning: `fsync` under a busy disk can take seconds, and the reconciler must not wait that
/// long before it installs the next change.
///
/// ``write(_:)`` may be called from any thread and never blocks on the disk; a table handed over
/// while an earlier one is being written replaces any not yet started. ``stop()`` finishes the
/// write in progress and the one pending, then ends the thread. Failures go to `log`.
final class LastGoodWriter: Sendable {
    let path: String
    private let pending = Mutex<(table: ServiceTable?, stopping: Bool)>((nil, false))
    private let wakeup: Wakeup
    private let thread = Mutex<JoinableThread?>(nil)

    init(path: String, log: @escaping @Sendable (String) -> Void) throws(SystemCallError) {
        self.path = path
        let wakeup = try Wakeup()
        self.wakeup = wakeup
        // The thread holds the writer until stop(), which the reconciler always calls.
        let started = try JoinableThread { [path, wakeup, self] in
            while true {
                let (table, stopping) = self.pending.withLock { state in
                    defer { state.table = nil }
                    return state
                }
                if let table {
                    do throws(SystemCallError) {
                        try LastGoodTable.write(table, to: path)
                    } catch {
                        log("last-good file \(path) not written: \(error)")
                    }
                    continue
                }
                if stopping { return }
                _ = try? wakeup.wait(until: nil)
            }
        }
        thread.withLock { $0 = started }
    }

    /// Hands `table` over to be written (replacing one not yet written).
    func write(_ table: ServiceTable) {
        pending.withLock { $0.table = table }
        wakeup.signal()
    }

    /// Writes what is pending, then ends the thread.
    func stop() {
        pending.withLock { $0.stopping = true }
        wakeup.signal()
        thread.withLock { thread in
            defer { thread = nil }
            return thread
        }?.join()
    }
}
