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
/// Owned by one worker thread; not Sendable. Pipes beyond `limit` are closed when returned.
/// A pipe is returned only when empty: one that still holds bytes belongs to a broken relay
/// and is closed instead.
struct PipePool: ~Copyable {
    private var spare: [Pipe] = []
    let limit: Int
    let size: Int32
    /// Pipes in use by relays, for the statistics.
    private(set) var lent = 0

    init(limit: Int, size: Int32) {
        self.limit = limit
        self.size = size
    }

    deinit { for pipe in spare { close(pipe.read); close(pipe.write) } }

    /// Pipes made smaller than asked for: the kernel refused the size (the uid is past
    /// `fs.pipe-user-pages-soft`, or the size is above `fs.pipe-max-size`).
    private(set) var undersized = 0

    mutating func take() throws(SystemCallError) -> Pipe {
        let pipe: Pipe
        if let reused = spare.popLast() {
            pipe = reused
        } else {
            let made = try Syscalls.pipe(size: size)
            pipe = Pipe(read: made.read, write: made.write, capacity: made.capacity)
            if size > 0 && pipe.capacity < Int(size) { undersized += 1 }
        }
        lent += 1
        return pipe
    }

    mutating func give(_ pipe: Pipe, empty: Bool) {
        lent -= 1
        if empty && spare.count < limit {
            spare.append(pipe)
        } else {
            close(pipe.read)
            close(pipe.write)
        }
    }
}
