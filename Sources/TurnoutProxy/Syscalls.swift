import CTurnoutLinux
import Glibc
import TurnoutModel

/// The socket calls of TurnoutProxy, gathered so that every errno becomes a `SystemCallError`
/// naming the call and its argument in one place. Descriptors are created non-blocking and
/// close-on-exec; callers wait with `poll`. The corresponding C calls are named on each function.
enum Syscalls {
    /// `socket(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`.
    static func socket(family: Int32, type: Int32) throws(SystemCallError) -> Int32 {
        let fd = Glibc.socket(family, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(call: "socket(\(family == AF_INET6 ? "AF_INET6" : "AF_INET"))", errno: errno) }
        return fd
    }

    /// `setsockopt(2)` with an `int` value.
    static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32, _ label: String) throws(SystemCallError) {
        var value = value
        guard setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SystemCallError(call: "setsockopt(\(label))", errno: errno)
        }
    }

    /// `bind(2)`.
    static func bind(_ fd: Int32, to address: SocketAddress) throws(SystemCallError) {
        guard address.withSockaddr({ Glibc.bind(fd, $0, $1) }) == 0 else {
            throw SystemCallError(call: "bind(\(address))", errno: errno)
        }
    }

    /// `listen(2)`.
    static func listen(_ fd: Int32, backlog: Int32, _ address: SocketAddress) throws(SystemCallError) {
        guard Glibc.listen(fd, backlog) == 0 else { throw SystemCallError(call: "listen(\(address))", errno: errno) }
    }

    /// `connect(2)` on a non-blocking socket: true when connected at once, false when the
    /// handshake is in progress (EINPROGRESS).
    static func connect(_ fd: Int32, to address: SocketAddress) throws(SystemCallError) -> Bool {
        while true {
            if address.withSockaddr({ Glibc.connect(fd, $0, $1) }) == 0 { return true }
            switch errno {
            case EINTR: continue
            case EINPROGRESS: return false
            default: throw SystemCallError(call: "connect(\(address))", errno: errno)
            }
        }
    }

    /// `accept4(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`; nil when no connection is queued.
    static func accept(_ fd: Int32) throws(SystemCallError) -> Int32? {
        while true {
            let accepted = CTurnoutLinux_accept4(fd, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
            if accepted >= 0 { return accepted }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN: return nil
            default: throw SystemCallError(call: "accept4", errno: errno)
            }
        }
    }

    /// `poll(2)` for one descriptor: true when one of `events` is ready before `deadline`.
    static func wait(_ fd: Int32, for events: Int32, until deadline: ContinuousClock.Instant) throws(SystemCallError) -> Bool {
        while true {
            var entry = pollfd(fd: fd, events: Int16(events), revents: 0)
            let ready = poll(&entry, 1, deadline.pollMilliseconds)
            if ready > 0 { return true }
            if ready == 0 { return false }
            if errno != EINTR { throw SystemCallError(call: "poll", errno: errno) }
        }
    }

    /// The pending error of a socket (`getsockopt(SO_ERROR)`): 0 once a connect has succeeded.
    static func pendingError(_ fd: Int32) throws(SystemCallError) -> Int32 {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) == 0 else {
            throw SystemCallError(call: "getsockopt(SO_ERROR)", errno: errno)
        }
        return code
    }

    /// `getsockname(2)` (`peer: false`) or `getpeername(2)` (`peer: true`).
    static func address(of fd: Int32, peer: Bool) throws(SystemCallError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length) }
        }
        let call = peer ? "getpeername" : "getsockname"
        guard status == 0 else { throw SystemCallError(call: call, errno: errno) }
        guard let address = SocketAddress(storage: storage) else { throw SystemCallError(call: call, errno: EAFNOSUPPORT) }
        return address
    }

    /// `getsockopt(SO_ORIGINAL_DST)` on `SOL_IP`, or `IP6T_SO_ORIGINAL_DST` on `SOL_IPV6`: the
    /// level must match the socket's family (`SOL_IP` on an IPv6 socket answers ENOENT).
    /// ENOENT means conntrack has no NAT record for the connection: it was not redirected.
    static func originalDestination(_ fd: Int32, family: IPFamily) throws(SystemCallError) -> SocketAddress {
        var storage = sockaddr_storage()
        let level: Int32, option: Int32
        var length: socklen_t
        switch family {
        case .ipv4:
            (level, option, length) = (Int32(IPPROTO_IP), CTurnoutLinux_SO_ORIGINAL_DST, socklen_t(MemoryLayout<sockaddr_in>.size))
        case .ipv6:
            (level, option, length) = (Int32(IPPROTO_IPV6), CTurnoutLinux_IP6T_SO_ORIGINAL_DST, socklen_t(MemoryLayout<sockaddr_in6>.size))
        }
        let call = family == .ipv4 ? "getsockopt(SOL_IP, SO_ORIGINAL_DST)" : "getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)"
        guard withUnsafeMutableBytes(of: &storage, { getsockopt(fd, level, option, $0.baseAddress, &length) }) == 0 else {
            throw SystemCallError(call: call, errno: errno)
        }
        // Older kernels leave the family of the IPv4 answer zero.
        if storage.ss_family == 0 { storage.ss_family = sa_family_t(family == .ipv4 ? AF_INET : AF_INET6) }
        guard let address = SocketAddress(storage: storage) else { throw SystemCallError(call: call, errno: EAFNOSUPPORT) }
        return address
    }

    // MARK: - Streams (admin server)

    /// `recv(2)`: the count of bytes read into `buffer`, 0 at the end of the stream, nil when
    /// nothing is waiting (EAGAIN).
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int? {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, 0)
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN: return nil
            default: throw SystemCallError(call: "recv", errno: errno)
            }
        }
    }

    /// `send(2)` with `MSG_NOSIGNAL` (a peer that went away is EPIPE, never SIGPIPE): the count of
    /// bytes taken, nil when the send buffer is full (EAGAIN). `more` adds `MSG_MORE`: the bytes
    /// wait in the socket for what follows, and only a later send, `shutdown(2)` or `close(2)`
    /// sends them (the caller must make one of those).
    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, more: Bool = false) throws(SystemCallError) -> Int? {
        while true {
            let count = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0))
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN: return nil
            default: throw SystemCallError(call: "send", errno: errno)
            }
        }
    }

    /// `shutdown(2)` with `SHUT_WR`: the peer reads the end of the stream; reading goes on.
    static func shutdownWrite(_ fd: Int32) throws(SystemCallError) {
        guard shutdown(fd, Int32(SHUT_WR)) == 0 else { throw SystemCallError(call: "shutdown(SHUT_WR)", errno: errno) }
    }

    /// Stops a listening socket without closing its descriptor: `shutdown(SHUT_RD)` takes it
    /// out of its `SO_REUSEPORT` group and ends its listen (the corresponding C call is
    /// `shutdown(2)`). With `net.ipv4.tcp_migrate_req=1` the kernel moves the connections
    /// waiting in its accept queue to another listener of the group (a replacing proxy's);
    /// without, it resets them, as a close would. Armed accepts end with EINVAL.
    static func stopListening(_ fd: Int32) throws(SystemCallError) {
        guard shutdown(fd, Int32(SHUT_RD)) == 0 else { throw SystemCallError(call: "shutdown(listener, SHUT_RD)", errno: errno) }
    }

    // MARK: - Health checks and wake-ups

    /// `poll(2)` over several descriptors: the count ready (their `revents` set), 0 once
    /// `deadline` passes with none ready.
    static func waitForAny(_ entries: inout [pollfd], until deadline: ContinuousClock.Instant) throws(SystemCallError) -> Int {
        while true {
            let ready = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), deadline.pollMilliseconds) }
            if ready >= 0 { return Int(ready) }
            if errno != EINTR { throw SystemCallError(call: "poll", errno: errno) }
        }
    }

    // MARK: - Data plane (workers)

    /// `epoll_create1(EPOLL_CLOEXEC)`.
    static func epollCreate() throws(SystemCallError) -> Int32 {
        let fd = CTurnoutLinux_epoll_create()
        guard fd >= 0 else { throw SystemCallError(call: "epoll_create1", errno: errno) }
        return fd
    }

    /// `epoll_ctl(2)`'s operations (`EPOLL_CTL_ADD`, `_DEL`, `_MOD`; fixed ABI values).
    enum EpollOperation: Int32 {
        case add = 1, delete = 2, modify = 3
    }

    /// `epoll_ctl(2)`.
    static func epollControl(_ epoll: Int32, _ operation: EpollOperation, _ fd: Int32, events: UInt32, token: UInt64) throws(SystemCallError) {
        guard CTurnoutLinux_epoll_ctl(epoll, operation.rawValue, fd, events, token) == 0 else {
            throw SystemCallError(call: "epoll_ctl(\(operation), fd \(fd))", errno: errno)
        }
    }

    /// `epoll_wait(2)`: the count of events written to `events`, 0 on timeout or a signal.
    static func epollWait(_ epoll: Int32, into events: UnsafeMutableBufferPointer<CTurnoutLinux_epoll_event>,
                          timeoutMilliseconds: Int32) throws(SystemCallError) -> Int {
        let count = CTurnoutLinux_epoll_wait(epoll, events.baseAddress, Int32(events.count), timeoutMilliseconds)
        if count >= 0 { return Int(count) }
        if errno == EINTR { return 0 }
        throw SystemCallError(call: "epoll_wait", errno: errno)
    }

    /// `eventfd(2)`, non-blocking and close-on-exec.
    static func eventDescriptor() throws(SystemCallError) -> Int32 {
        let fd = CTurnoutLinux_eventfd()
        guard fd >= 0 else { throw SystemCallError(call: "eventfd", errno: errno) }
        return fd
    }

    /// Adds 1 to an eventfd (wakes its poller); a full counter already wakes it.
    static func signal(eventDescriptor fd: Int32) {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }

    /// Reads an eventfd back to 0.
    static func drain(eventDescriptor fd: Int32) {
        var value: UInt64 = 0
        _ = Glibc.read(fd, &value, 8)
    }

    /// `pipe2(2)` with `O_NONBLOCK | O_CLOEXEC`; `size` > 0 asks `F_SETPIPE_SZ` for it (the
    /// kernel rounds up to a power of two pages; a refusal keeps the default). Returns the ends
    /// and the pipe's real capacity (`F_GETPIPE_SZ`).
    static func pipe(size: Int32) throws(SystemCallError) -> (read: Int32, write: Int32, capacity: Int) {
        var fds: [Int32] = [-1, -1]
        guard CTurnoutLinux_pipe(&fds) == 0 else { throw SystemCallError(call: "pipe2", errno: errno) }
        if size > 0 { _ = CTurnoutLinux_set_pipe_size(fds[1], size) }
        let capacity = CTurnoutLinux_get_pipe_size(fds[1])
        return (fds[0], fds[1], capacity > 0 ? Int(capacity) : 65_536)
    }

    /// `/proc/sys/fs/pipe-max-size`; nil when unreadable.
    static func pipeMaxSize() -> Int32? {
        procInteger("/proc/sys/fs/pipe-max-size").flatMap { Int32(exactly: $0) }
    }

    /// A /proc file holding one number (a sysctl), read with `open(2)` and `read(2)`; nil when
    /// unreadable.
    static func procInteger(_ path: String) -> Int? {
        guard let text = procText(path, limit: 64) else { return nil }
        return Int(text.filter(\.isNumber))
    }

    /// The start of a /proc file (at most `limit` bytes), or nil when it cannot be read.
    private static func procText(_ path: String, limit: Int) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        var filled = 0
        while filled < limit {
            let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, limit - filled) }
            guard count > 0 else { break }
            filled += count
        }
        return filled > 0 ? String(decoding: bytes[0..<filled], as: UTF8.self) : nil
    }

    /// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds: a moment as a number an atomic can hold.
    static func monotonicNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    /// The page size (`sysconf(_SC_PAGESIZE)`).
    static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// Whether the kernel's per-uid pipe allowance leaves this process alone: it has
    /// `CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN` in its effective set (`CapEff` in
    /// /proc/self/status; the kernel's check is `pipe_is_unprivileged_user` in fs/pipe.c).
    /// Unreadable status counts as not exempt.
    static func isExemptFromPipeLimits() -> Bool {
        guard let status = procText("/proc/self/status", limit: 4096),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).trimmingPrefix(while: \.isWhitespace), radix: 16) else {
            return false
        }
        let sysAdmin: UInt64 = 1 << 21, sysResource: UInt64 = 1 << 24
        return mask & (sysAdmin | sysResource) != 0
    }

    /// What one `splice(2)` did.
    enum Spliced: Equatable {
        case moved(Int)
        /// Reading a socket: the peer finished sending (FIN).
        case endOfStream
        /// Nothing to read, or no room to write (EAGAIN).
        case wouldBlock
        /// ECONNRESET, EPIPE and the like: the connection is broken.
        case failed(Int32)
    }

    /// `splice(2)` with `SPLICE_F_MOVE | SPLICE_F_NONBLOCK`, between a socket and a pipe.
    static func splice(from: Int32, to: Int32, length: Int) -> Spliced {
        while true {
            let count = CTurnoutLinux_splice(from, to, UInt(length))
            if count > 0 { return .moved(count) }
            if count == 0 { return .endOfStream }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            default: return .failed(errno)
            }
        }
    }

    /// Binds `fd` to `source`'s address with `IP_BIND_ADDRESS_NO_PORT`, so the port is chosen
    /// at connect and only the whole 4-tuple needs to be unique.
    static func bindSource(_ fd: Int32, _ source: SocketAddress) throws(SystemCallError) {
        try setOption(fd, level: Int32(IPPROTO_IP), name: CTurnoutLinux_IP_BIND_ADDRESS_NO_PORT, value: 1, "IP_BIND_ADDRESS_NO_PORT")
        try bind(fd, to: source)
    }

    /// Closes `fd` with a reset (`SO_LINGER` 0): the peer sees ECONNRESET, never a clean end of
    /// stream it could take for a complete answer.
    static func closeWithReset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }
}
