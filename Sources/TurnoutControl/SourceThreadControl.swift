import Synchronization
import TurnoutModel
import TurnoutProxy

/// How the callers of a table source (any thread) talk to its watching thread: stop, refresh,
/// and the ``Wakeup`` the thread polls beside its own descriptors.
///
/// Shared by a source and its thread (``FileTableSource``, ``EtcdTableSource``). The thread
/// calls ``take()`` after each wake-up; ``stop()`` waits for the thread.
final class SourceThreadControl: Sendable {
    private struct Requests {
        var thread: JoinableThread?
        var stopping = false
        var refreshing = false
    }

    private let requests = Mutex(Requests())
    let wakeup: Wakeup

    init() throws(SystemCallError) {
        wakeup = try Wakeup()
    }

    /// The thread to join at ``stop()``.
    func adopt(_ thread: JoinableThread) {
        requests.withLock { $0.thread = thread }
    }

    /// Asks the thread to read its source again and deliver it, changed or not.
    func refresh() {
        requests.withLock { $0.refreshing = true }
        wakeup.signal()
    }

    /// Asks the thread to end and waits for it; later calls return at once.
    func stop() {
        let thread = requests.withLock { requests in
            defer { requests.thread = nil }
            requests.stopping = true
            return requests.thread
        }
        wakeup.signal()
        thread?.join()
    }

    /// For the watching thread: whether it must end, and whether a refresh was asked (taken:
    /// the next call says false until another one is asked).
    func take() -> (stopping: Bool, refreshing: Bool) {
        requests.withLock { requests in
            defer { requests.refreshing = false }
            return (requests.stopping, requests.refreshing)
        }
    }
}
