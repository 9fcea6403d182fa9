import Glibc
import TurnoutModel

/// A kernel pipe: the buffer `splice(2)` moves bytes through on their way from one socket to
/// the other.
struct Pipe {
    let read: Int32
    let write: Int32
    /// Its capacity in bytes (`F_GETPIPE_SZ`).
    let capacity: Int
}

/// A worker's spare pipes. A relay takes one when bytes start to flow in a direction and
/// gives it back once it is empty, so an idle connection holds no pipe (2 descriptors saved
/// per direction) and busy ones reuse pipes instead of creating them.
///
/// Owned by one worker thread; not Sendable. Every pipe it makes is charged to the proxy's
/// ``PipeAccount`` (shared by the workers) until it is closed, spare or lent. Pipes beyond
/// `limit` spares are closed when returned. A pipe is returned only when empty: one that still
/// holds bytes belongs to a broken relay and is closed instead.
struct PipePool: ~Copyable {
    /// Why ``take()`` had no pipe to give.
    enum Shortage: Error, Equatable {
        /// The ``PipeBudget`` is spent.
        case budget
        /// The kernel made the pipe smaller than its default 64 KiB (the uid's allowance is
        /// spent); it was closed again, since copying moves more per system call than an
        /// 8 KiB pipe.
        case undersized(capacity: Int)
        /// `pipe2(2)` failed (no descriptor left).
        case failed(SystemCallError)
    }

    private var spare: [Pipe] = []
    let limit: Int
    let account: PipeAccount
    /// Pipes in use by relays, for the statistics.
    private(set) var lent = 0

    init(limit: Int, account: PipeAccount) {
        self.limit = limit
        self.account = account
    }

    deinit { for pipe in spare { discard(pipe) } }

    /// A spare pipe, or a new one charged to the account. `undersized`: the kernel made it
    /// smaller than asked but not below its default (the uid's allowance had room for a 64 KiB
    /// pipe, not for the resize): kept, since it splices as well as the kernel's default.
    mutating func take() throws(Shortage) -> (pipe: Pipe, undersized: Bool) {
        if let reused = spare.popLast() {
            lent += 1
            return (reused, false)
        }
        // The clock is read only here, on the way to a new pipe: a spare costs no system call.
        let now = Syscalls.monotonicNanoseconds()
        guard let grant = account.reserve(now: now) else { throw .budget }
        let made: (read: Int32, write: Int32, capacity: Int)
        do {
            made = try Syscalls.pipe(size: grant.request)
        } catch {
            account.release(grant.bytes)
            throw .failed(error)
        }
        account.settle(grant, capacity: made.capacity)
        let pipe = Pipe(read: made.read, write: made.write, capacity: made.capacity)
        let undersized = made.capacity < grant.bytes
        if undersized {
            let usable = made.capacity >= account.defaultBytes
            if !usable { discard(pipe) }
            // The allowance is spent or nearly so: ask the kernel for nothing beyond what is
            // held now, for a while.
            account.kernelRefused(now: now)
            guard usable else { throw .undersized(capacity: made.capacity) }
        }
        lent += 1
        return (pipe, undersized)
    }

    mutating func give(_ pipe: Pipe, empty: Bool) {
        lent -= 1
        if empty && spare.count < limit {
            spare.append(pipe)
        } else {
            discard(pipe)
        }
    }

    private func discard(_ pipe: Pipe) {
        close(pipe.read)
        close(pipe.write)
        account.release(pipe.capacity)
    }
}
