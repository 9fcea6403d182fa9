import Glibc
import Synchronization
import TurnoutModel

/// A POSIX thread running one closure, for the proxy's long-lived loops (workers, health
/// checks, the admin server): each owns its thread, never a shared pool, so a busy one cannot
/// delay another.
///
/// `join()` waits for the closure to return; calling it twice, or from the thread itself, is
/// harmless (the second call returns at once; the thread's own call detaches it).
public final class JoinableThread: Sendable {
    private let thread: pthread_t
    private let joined = Mutex(false)

    /// Starts `body` on a new thread. Throws `pthread_create`'s errno (EAGAIN: no thread left).
    public convenience init(_ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        final class Body: Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        try self.init(handingOver: Body(body)) { $0.body() }
    }

    /// Starts a thread that takes `owned` over and runs `body(owned)`: an event loop object that
    /// is not Sendable moves to the thread that will be its only user. `sending` makes the
    /// compiler prove the caller keeps no reference it could use afterwards, so the object is
    /// confined to one thread at a time (the caller's until this call, the new one's after).
    /// Throws `pthread_create`'s errno (EAGAIN: no thread left).
    public init<Owned: AnyObject>(handingOver owned: sending Owned, _ body: @escaping @Sendable (Owned) -> Void) throws(SystemCallError) {
        let start = Unmanaged<ThreadStart>.passRetained(OwnedThreadStart(owned, body)).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { raw in
            Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, start)
        guard created == 0 else {
            Unmanaged<ThreadStart>.fromOpaque(start).release()
            throw SystemCallError(call: "pthread_create", errno: created)
        }
        self.thread = thread
    }

    /// Lets the thread finish alone: nothing waits for it, and it is gone once its closure
    /// returns. A later `join()` returns at once.
    public func detach() {
        if claim() { pthread_detach(thread) }
    }

    /// Waits for the closure to return.
    public func join() {
        guard claim() else { return }
        if pthread_equal(pthread_self(), thread) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }

    /// True for the first of `join()` and `detach()` to be called: only it may end the thread's
    /// handle (joining or detaching twice is undefined).
    private func claim() -> Bool {
        joined.withLock { done in
            defer { done = true }
            return !done
        }
    }
}

/// What a new thread runs, behind a non-generic type: `pthread_create`'s C callback cannot name a
/// generic one.
private class ThreadStart {
    func run() {}
}

private final class OwnedThreadStart<Owned: AnyObject>: ThreadStart {
    private let owned: Owned
    private let body: @Sendable (Owned) -> Void

    init(_ owned: Owned, _ body: @escaping @Sendable (Owned) -> Void) {
        self.owned = owned
        self.body = body
    }

    override func run() { body(owned) }
}
