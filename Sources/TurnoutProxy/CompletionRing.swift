import CTurnoutUring
import TurnoutModel

/// One io_uring and its ring of provided receive buffers: where a completion worker queues
/// socket requests (accept, connect, receive, send, poll, cancel, timeout) and reaps what
/// finished, one `io_uring_enter` for a whole batch of both.
///
/// One thread at a time: the ring is single-issuer with deferred task work (Linux 6.1). It is
/// made disabled, so a control thread can make it (and report why it could not) and hand it
/// over; the thread that calls ``enable()`` becomes its only user. Not Sendable. Queued requests reach
/// the kernel at the next ``wait(timeout:into:)``. Errors are ``SystemCallError``s naming the
/// io_uring call. Receives land in the ring's own buffers: a completion names the buffer, which
/// stays the caller's until ``giveBack(_:)``; an idle connection holds none.
final class CompletionRing {
    /// What one request (or one shot of a multishot request) came to.
    struct Completion {
        /// The token the request was queued with.
        var token: UInt64
        /// Bytes moved, a new descriptor (accept), 0 (connect done, end of stream), or `-errno`.
        var result: Int32
        /// The provided buffer holding a receive's bytes, until given back.
        var buffer: Int32?
        /// More completions of the same multishot request follow.
        var more: Bool
    }

    private let ring: OpaquePointer
    /// Bytes in each provided buffer: a receive returns at most this many.
    let bufferSize: Int
    private var reaped: UnsafeMutableBufferPointer<CTurnoutUring_completion>

    /// A ring with `entries` submission slots and `buffers` receive buffers of `bufferSize`
    /// bytes. The corresponding C calls are `io_uring_setup(2)` with
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` and `io_uring_register(2)`
    /// with `IORING_REGISTER_PBUF_RING`. Fails with ENOSYS or EPERM where io_uring is absent or
    /// refused (a container runtime's default seccomp profile, `kernel.io_uring_disabled`) and
    /// with EINVAL before Linux 6.1.
    init(entries: UInt32, buffers: UInt32, bufferSize: Int) throws(SystemCallError) {
        var error: Int32 = 0
        guard let ring = CTurnoutUring_create(entries, buffers, UInt32(bufferSize), &error) else {
            throw SystemCallError(call: "io_uring_setup", errno: -error)
        }
        self.ring = ring
        self.bufferSize = bufferSize
        reaped = .allocate(capacity: 256)
    }

    /// Makes the calling thread the ring's only submitter; every later call must come from it.
    /// The corresponding C call is `io_uring_register(2)` with `IORING_REGISTER_ENABLE_RINGS`.
    func enable() throws(SystemCallError) {
        let result = CTurnoutUring_enable(ring)
        guard result == 0 else { throw SystemCallError(call: "io_uring_register(IORING_REGISTER_ENABLE_RINGS)", errno: -result) }
    }

    /// Why this process cannot have a ring (no io_uring, refused, a kernel before 6.1), or nil
    /// when it can: a small ring is made and dropped.
    static func unavailability() -> SystemCallError? {
        do {
            try CompletionRing(entries: 2, buffers: 1, bufferSize: 64).enable()
            return nil
        } catch {
            return error
        }
    }

    deinit {
        CTurnoutUring_destroy(ring)
        reaped.deallocate()
    }

    // MARK: - queueing

    /// A multishot `accept4(2)` on a listening socket: one completion per connection (the new
    /// descriptor, non-blocking, close-on-exec) until one without ``Completion/more``.
    func accept(_ fd: Int32, token: UInt64) throws(SystemCallError) {
        try queued(CTurnoutUring_accept(ring, fd, token), "io_uring accept")
    }

    /// `connect(2)`, ended with ECANCELED when it takes longer than `timeout`. The ring keeps
    /// its own copy of `address` until the kernel has read it.
    func connect(_ fd: Int32, to address: SocketAddress, timeout: Duration, token: UInt64) throws(SystemCallError) {
        let result = address.withSockaddr { CTurnoutUring_connect(ring, fd, $0, $1, Self.nanoseconds(timeout), token) }
        try queued(result, "io_uring connect(\(address))")
    }

    /// A multishot `recv(2)` into the provided buffers: a completion per arrival, 0 at the end of
    /// stream, `-ENOBUFS` (without ``Completion/more``) when every buffer is in use.
    func receive(_ fd: Int32, token: UInt64) throws(SystemCallError) {
        try queued(CTurnoutUring_receive(ring, fd, token), "io_uring recv")
    }

    /// `send(2)` with `MSG_NOSIGNAL` (and `MSG_MORE` when `more`). `bytes` must stay valid until
    /// the completion.
    func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, more: Bool, token: UInt64) throws(SystemCallError) {
        try queued(CTurnoutUring_send(ring, fd, bytes.baseAddress, UInt32(bytes.count), more ? 1 : 0, token), "io_uring send")
    }

    /// One readiness report of `fd` for `events` (`POLLIN`, `POLLOUT`, `POLLRDHUP` bits).
    func poll(_ fd: Int32, events: UInt32, token: UInt64) throws(SystemCallError) {
        try queued(CTurnoutUring_poll(ring, fd, events, token), "io_uring poll")
    }

    /// Readiness of `fd` for `events`, reported now if it is ready and then at each wakeup that
    /// concerns them (``Completion/more`` set) until cancelled. io_uring adds `POLLRDHUP` to
    /// every poll, so a one-shot poll for room on a socket whose peer shut its writes down
    /// reports at once, full or not; this one, once it reported that, waits for a wakeup.
    func pollMultishot(_ fd: Int32, events: UInt32, token: UInt64) throws(SystemCallError) {
        try queued(CTurnoutUring_poll_multishot(ring, fd, events, token), "io_uring poll (multishot)")
    }

    /// Cancels every request on `fd`; each still reports its completion. Needed before
    /// `close(2)`: a request holds the socket open, so a multishot receive would otherwise keep
    /// a closed socket alive.
    func cancel(_ fd: Int32) throws(SystemCallError) {
        try queued(CTurnoutUring_cancel(ring, fd), "io_uring cancel")
    }

    /// Cancels the request queued with `token`; it still reports its completion.
    func cancel(token: UInt64) throws(SystemCallError) {
        try queued(CTurnoutUring_cancel_request(ring, token), "io_uring cancel")
    }

    /// A completion with `-ETIME` after `delay`.
    func timeout(after delay: Duration, token: UInt64) throws(SystemCallError) {
        try queued(CTurnoutUring_timeout(ring, Self.nanoseconds(delay), token), "io_uring timeout")
    }

    /// Hands what was queued to the kernel now, without reaping: a ``cancel(_:)`` must reach it
    /// before the descriptor is closed, since a new socket may get the same number at once.
    /// The corresponding C call is `io_uring_enter(2)` without `IORING_ENTER_GETEVENTS`.
    func submit() throws(SystemCallError) {
        try queued(CTurnoutUring_submit(ring), "io_uring_enter")
    }

    private func queued(_ result: Int32, _ call: @autoclosure () -> String) throws(SystemCallError) {
        guard result == 0 else { throw SystemCallError(call: call(), errno: -result) }
    }

    // MARK: - reaping

    /// Submits what was queued, waits until something completes or `timeout` passes (zero:
    /// no wait; nil: no timeout, so the kernel arms no timer for the wait), and hands each
    /// completion to `body` in order. Returns how many there were. The corresponding C call is
    /// `io_uring_enter(2)` with `IORING_ENTER_GETEVENTS`.
    @discardableResult
    func wait(timeout: Duration?, _ body: (Completion) -> Void) throws(SystemCallError) -> Int {
        var total = 0
        var wait = timeout.map(Self.nanoseconds) ?? UInt64.max
        while true {
            let count = CTurnoutUring_wait(ring, reaped.baseAddress, Int32(reaped.count), wait)
            guard count >= 0 else { throw SystemCallError(call: "io_uring_enter", errno: -count) }
            for completion in reaped[0..<Int(count)] {
                body(Completion(token: completion.token, result: completion.result,
                                buffer: completion.buffer >= 0 ? completion.buffer : nil, more: completion.more != 0))
            }
            total += Int(count)
            // A full batch may have left more behind: reap them without waiting again.
            guard count == Int32(reaped.count) else { return total }
            wait = 0
        }
    }

    /// The first `count` bytes of provided buffer `id`; valid until ``giveBack(_:)``.
    func bytes(of id: Int32, count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: CTurnoutUring_buffer(ring, id), count: count)
    }

    /// Returns buffer `id` to the kernel for later receives.
    func giveBack(_ id: Int32) {
        CTurnoutUring_give_back(ring, id)
    }

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }
}
