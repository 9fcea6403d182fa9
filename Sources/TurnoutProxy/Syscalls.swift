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
}
