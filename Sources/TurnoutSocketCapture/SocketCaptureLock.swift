import Glibc

/// The lock every `turnout init --backend bpf` holds while it reads and writes a host's capture
/// pins: an exclusive flock(2) on `/sys/fs/bpf/turnout` itself.
///
/// Two inits for one pod (an init container restarted while its first run still loads) would
/// otherwise interleave: each replaces the programs one by one, so the pod could end with some
/// of each run's programs and maps that disagree, or one run's cleanup could unpin what the
/// other just attached. One lock for the whole directory rather than one per capture, because
/// a capture's directory is itself made and removed under it; an init holds it for tens of
/// milliseconds. Released when `held`'s body returns or throws (the descriptor is closed), and
/// by the kernel if turnout dies holding it.
struct SocketCaptureLock: ~Copyable {
    private let descriptor: Int32

    /// Runs `body` holding the lock, after waiting at most `timeout` for another turnout to
    /// release it. The directory must exist.
    static func held<Result>(waitingAtMost timeout: Duration = .seconds(10),
                             _ body: () throws(SocketCaptureError) -> Result) throws(SocketCaptureError) -> Result {
        let lock = try SocketCaptureLock(waitingAtMost: timeout)
        let result = try body()
        _ = consume lock
        return result
    }

    private init(waitingAtMost timeout: Duration) throws(SocketCaptureError) {
        descriptor = open(SocketCapturePins.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .system("open \(SocketCapturePins.root)", errno) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            guard code == EWOULDBLOCK || code == EINTR else {
                close(descriptor)
                throw .system("flock \(SocketCapturePins.root)", code)
            }
            guard clock.now < deadline else {
                close(descriptor)
                throw .unsupported("another turnout init has held the lock on \(SocketCapturePins.root) for \(timeout); is one stuck? (`fuser \(SocketCapturePins.root)` names it)")
            }
            usleep(5_000)
        }
    }

    deinit { close(descriptor) }
}
