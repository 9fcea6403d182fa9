import Dispatch
import Foundation
import Glibc
import Synchronization
import TurnoutModel

/// How one TCP connect from the lab's client ended, and how long it took to end that way.
///
/// `elapsed` runs from `connect(2)` to the moment the outcome was known (handshake completed,
/// reset received, or the time limit reached); reading the endpoint's greeting is not included.
public struct ConnectAttempt: Sendable, CustomStringConvertible {
    /// How the connect ended.
    public enum Outcome: Sendable, Equatable {
        /// The handshake completed; `answer` is the name the endpoint greeted with (nil if it
        /// sent no line in time).
        case connected(answer: String?)
        /// The SYN was answered with a reset (`ECONNREFUSED`): e.g. `reject with tcp reset`.
        case refused
        /// The connection was reset (`ECONNRESET`), or failed while waiting for the greeting.
        case reset
        /// Nothing answered within the time limit: a black hole.
        case timedOut
        /// Any other error, with its errno.
        case failed(errno: Int32)
    }

    /// How the connect ended.
    public var outcome: Outcome
    /// From `connect(2)` to the outcome.
    public var elapsed: Duration

    /// `elapsed` in milliseconds, for messages and limits.
    public var milliseconds: Double {
        Double(elapsed.components.seconds) * 1_000 + Double(elapsed.components.attoseconds) / 1e15
    }

    public var description: String {
        let what: String = switch outcome {
        case .connected(let answer): "connected (answer: \(answer ?? "none"))"
        case .refused: "refused"
        case .reset: "reset"
        case .timedOut: "timed out"
        case .failed(let code): "failed: \(String(cString: strerror(code)))"
        }
        return "\(what) after \(String(format: "%.2f", milliseconds)) ms"
    }

    /// The key `ServiceLab.split` counts this attempt under: the answer, or `error: …`.
    var splitKey: String {
        switch outcome {
        case .connected(let answer?): answer
        case .connected(nil): "error: no answer"
        case .refused: "error: refused"
        case .reset: "error: reset"
        case .timedOut: "error: timed out"
        case .failed(let code): "error: \(String(cString: strerror(code)))"
        }
    }
}

/// An ESTABLISHED TCP connection from the lab's client to a service, kept open on purpose.
///
/// Made by `ServiceLab.hold(to:port:reaching:)`. Every `exchange()` sends one line and returns
/// the line the endpoint answers with (its name), so a test can prove the connection still
/// reaches the same endpoint after the rules changed (conntrack keeps its translation). Not
/// thread-safe: use it from one thread. Closed by `close()` or when the last reference goes away.
public final class HeldConnection {
    /// The endpoint's name, from the greeting it sent when the connection opened.
    public let endpoint: String
    private var fd: Int32

    init(fd: Int32, endpoint: String) {
        self.fd = fd
        self.endpoint = endpoint
    }

    /// Sends `line` (without a newline; one is added) and returns the endpoint's one-line answer
    /// (its name), waiting at most `timeout`. Throws `ServiceLabError` when the connection is
    /// closed, reset or silent.
    public func exchange(_ line: String = "ping", timeout: Duration = .seconds(2)) throws -> String {
        guard fd >= 0 else { throw ServiceLabError("the held connection was already closed") }
        guard !line.contains("\n") else { throw ServiceLabError("exchange sends one line: no newline inside it") }
        let deadline = ContinuousClock.now + timeout
        try LabSocket.sendAll(fd, line + "\n", deadline: deadline)
        guard let answer = try LabSocket.readLine(fd, deadline: deadline) else {
            throw ServiceLabError("the held connection to \(endpoint) sent no answer within \(timeout)")
        }
        return answer
    }

    /// Closes the connection (an orderly FIN). Calling it again does nothing.
    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

/// A failure of the lab itself (setup, a system call, a time limit), with what failed.
public struct ServiceLabError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }

    static func system(_ call: String, _ code: Int32 = errno) -> ServiceLabError {
        ServiceLabError("\(call): \(String(cString: strerror(code)))")
    }
}

/// Runs code on a fresh thread that has entered a network namespace (`setns(2)`).
///
/// A socket belongs to the namespace of the thread that created it, for its whole life, so
/// sockets made here can be used from any thread afterwards. Only the short-lived thread ever
/// changes namespace; the caller's thread (often one of Swift's shared pool) never does.
public enum NamespaceThread {
    static let cloneNewNet: Int32 = 0x4000_0000  // CLONE_NEWNET, <linux/sched.h>

    /// Runs `body` inside the namespace at `path` (`/run/netns/NAME`) and returns its result.
    /// Waits at most `timeLimit`; past it throws (the thread is abandoned, never waited on).
    public static func run<Value: Sendable>(in path: String, timeLimit: Duration,
                                     _ body: @escaping @Sendable () throws -> Value) throws -> Value {
        let slot = ResultSlot<Value>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            slot.put(Result {
                try enter(path)
                return try body()
            })
            done.signal()
        }
        thread.start()
        let seconds = Double(timeLimit.components.seconds) + Double(timeLimit.components.attoseconds) / 1e18
        guard done.wait(timeout: .now() + seconds) == .success, let result = slot.take() else {
            throw ServiceLabError("an operation inside \(path) did not finish within \(timeLimit)")
        }
        return try result.get()
    }

    /// Moves the calling thread into the network namespace at `path`.
    static func enter(_ path: String) throws {
        // Glibc declares setns only under _GNU_SOURCE, which Swift's Glibc module lacks, and this
        // target may depend on no C target of ours: look the libc symbol up instead.
        typealias SetNamespace = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(nil, "setns") else { throw ServiceLabError("libc has no setns") }
        let setNamespace = unsafeBitCast(symbol, to: SetNamespace.self)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ServiceLabError.system("open(\(path))") }
        defer { close(fd) }
        guard setNamespace(fd, cloneNewNet) == 0 else { throw ServiceLabError.system("setns(\(path))") }
    }
}

/// One value handed from a worker thread to the thread that waits for it.
/// One result handed from a worker thread to the thread waiting for it.
final class ResultSlot<Value: Sendable>: Sendable {
    private let slot = Mutex<Result<Value, any Error>?>(nil)
    func put(_ result: Result<Value, any Error>) { slot.withLock { $0 = result } }
    func take() -> Result<Value, any Error>? { slot.withLock { $0 } }
}

/// Non-blocking TCP client and listener calls with deadlines: nothing here can block forever.
enum LabSocket {
    /// An IPv4 or IPv6 socket address, parsed from text.
    struct Address {
        var storage = sockaddr_storage()
        var length: socklen_t
        var family: Int32

        init(_ text: String, port: UInt16) throws {
            if text.contains(":") {
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                address.sin6_port = port.bigEndian
                guard inet_pton(AF_INET6, text, &address.sin6_addr) == 1 else { throw ServiceLabError("'\(text)' is not an IPv6 address") }
                family = AF_INET6
                length = socklen_t(MemoryLayout<sockaddr_in6>.size)
                withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
            } else {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = port.bigEndian
                guard inet_pton(AF_INET, text, &address.sin_addr) == 1 else { throw ServiceLabError("'\(text)' is not an IPv4 address") }
                family = AF_INET
                length = socklen_t(MemoryLayout<sockaddr_in>.size)
                withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
            }
        }

        /// The wildcard address of `family` (0.0.0.0 or ::) on `port`.
        static func any(family: Int32, port: UInt16) throws -> Address {
            try Address(family == AF_INET6 ? "::" : "0.0.0.0", port: port)
        }

        func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
            withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
        }
    }

    /// Connects to `address`:`port` within `timeout`. On `.connected` the open socket is
    /// returned too (the caller closes it); on every other outcome it is already closed.
    static func connect(_ address: String, port: UInt16, timeout: Duration) throws -> (ConnectAttempt, fd: Int32?) {
        let target = try Address(address, port: port)
        let fd = socket(target.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServiceLabError.system("socket") }
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + timeout
        var code: Int32 = 0
        if target.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 {
            code = errno
            if code == EINPROGRESS {
                code = waitForConnect(fd, deadline: deadline)
            }
        }
        let elapsed = clock.now - start
        let outcome: ConnectAttempt.Outcome = switch code {
        case 0: .connected(answer: nil)
        case ECONNREFUSED: .refused
        case ECONNRESET: .reset
        case ETIMEDOUT: .timedOut
        default: .failed(errno: code)
        }
        if code != 0 {
            close(fd)
            return (ConnectAttempt(outcome: outcome, elapsed: elapsed), nil)
        }
        return (ConnectAttempt(outcome: outcome, elapsed: elapsed), fd)
    }

    /// Waits until a non-blocking connect finishes; returns its errno (0: connected), or
    /// ETIMEDOUT when the deadline passes first. Also used by `CaptureLab`, which makes its own
    /// sockets (owned by a given uid, bound to a given source) before connecting them.
    static func waitForConnect(_ fd: Int32, deadline: ContinuousClock.Instant) -> Int32 {
        while true {
            let remaining = deadline.pollMilliseconds
            if remaining <= 0 { return ETIMEDOUT }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&entry, 1, remaining)
            if ready < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if ready == 0 { continue }  // re-check the deadline
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { return errno }
            return error
        }
    }

    /// Reads until a newline (returned without it) or end of stream (returns what came, or nil
    /// if nothing did). Returns nil at the deadline; throws on a socket error such as a reset.
    static func readLine(_ fd: Int32, deadline: ContinuousClock.Instant) throws -> String? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            if let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
                return String(decoding: bytes[..<newline], as: UTF8.self)
            }
            let remaining = deadline.pollMilliseconds
            if remaining <= 0 { return nil }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, remaining)
            if ready < 0 && errno != EINTR { throw ServiceLabError.system("poll") }
            if ready <= 0 { continue }
            let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count > 0 {
                bytes += buffer[..<count]
            } else if count == 0 {
                return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
            } else if errno != EAGAIN && errno != EINTR {
                throw ServiceLabError.system("recv")
            }
        }
    }

    /// Sends all of `text` before the deadline, without ever raising SIGPIPE.
    static func sendAll(_ fd: Int32, _ text: String, deadline: ContinuousClock.Instant) throws {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if sent > 0 {
                bytes = bytes.dropFirst(sent)
                continue
            }
            if sent < 0 && errno != EAGAIN && errno != EINTR { throw ServiceLabError.system("send") }
            let remaining = deadline.pollMilliseconds
            if remaining <= 0 { throw ServiceLabError("send did not finish in time") }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&entry, 1, remaining)
        }
    }

    /// A non-blocking listener on the wildcard address of `family`, port `port` (IPv6 only for
    /// AF_INET6, so an IPv4 listener can share the port).
    /// Wildcard TCP listeners on IPv4 and IPv6 for each of `ports`, made inside the namespace at
    /// `path`: the port each one serves and its descriptor. On failure none is left open.
    static func listeners(in path: String, ports: [UInt16]) throws -> [(port: UInt16, fd: Int32)] {
        try NamespaceThread.run(in: path, timeLimit: .seconds(10)) { () throws -> [(port: UInt16, fd: Int32)] in
            var made: [(port: UInt16, fd: Int32)] = []
            do {
                for port in ports {
                    for family in [AF_INET, AF_INET6] { made.append((port, try listen(family: family, port: port))) }
                }
            } catch {
                for listener in made { close(listener.fd) }
                throw error
            }
            return made
        }
    }

    static func listen(family: Int32, port: UInt16) throws -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServiceLabError.system("socket") }
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        do {
            guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size) == 0 else { throw ServiceLabError.system("setsockopt(SO_REUSEADDR)") }
            if family == AF_INET6 {
                guard setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, size) == 0 else { throw ServiceLabError.system("setsockopt(IPV6_V6ONLY)") }
            }
            let address = try Address.any(family: family, port: port)
            guard address.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
                throw ServiceLabError.system("bind(\(family == AF_INET6 ? "[::]" : "0.0.0.0"):\(port))")
            }
            guard Glibc.listen(fd, 1024) == 0 else { throw ServiceLabError.system("listen") }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }
}

/// The lab's endpoint servers: one thread polls every listener and connection of every endpoint.
///
/// Protocol: on accept the server sends `NAME\n`; for every line it receives afterwards it sends
/// `NAME\n` again; it closes when the client does. Listeners are created by the caller (inside
/// each endpoint's namespace) and owned by the server from then on; `stop()` closes them all.
final class AnswerServer: Sendable {
    struct Listener: Sendable {
        var fd: Int32
        var name: String
    }

    private let listeners: [Listener]
    private let thread = ServerThread(label: "the endpoint servers")

    init(listeners: [Listener]) {
        self.listeners = listeners
    }

    func start() {
        thread.start { [self] in run() }
    }

    /// Stops the loop, waits at most 5 s for it, and closes every socket (see `ServerThread`).
    func stop() throws {
        try thread.stop { for listener in listeners { close(listener.fd) } }
    }

    private func run() {
        var connections: [Int32: String] = [:]
        var buffer = [UInt8](repeating: 0, count: 4096)
        defer {
            for fd in connections.keys { close(fd) }
            for listener in listeners { close(listener.fd) }
        }
        while !thread.isStopping {
            let open = Array(connections)
            var entries = listeners.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
                + open.map { pollfd(fd: $0.key, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&entries, nfds_t(entries.count), 20)
            if ready <= 0 { continue }
            for (index, listener) in listeners.enumerated() where entries[index].revents != 0 {
                while true {  // the listener is non-blocking: accept until EAGAIN
                    let fd = accept(listener.fd, nil, nil)
                    if fd < 0 { break }
                    _ = send(fd, listener.name + "\n", listener.name.utf8.count + 1, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                    connections[fd] = listener.name
                }
            }
            for (offset, (fd, name)) in open.enumerated() where entries[listeners.count + offset].revents != 0 {
                let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if count > 0 {
                    let lines = buffer[..<count].reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
                    for _ in 0..<lines {
                        _ = send(fd, name + "\n", name.utf8.count + 1, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                    }
                } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                    close(fd)
                    connections[fd] = nil
                }
            }
        }
    }
}

/// The life of a lab server's polling thread: started at most once, asked to stop once, waited
/// for at most 5 s. The server's loop checks `isStopping` at least every 20 ms and closes its
/// sockets on the way out.
final class ServerThread: Sendable {
    private let label: String
    private let stopping = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(label: String) {
        self.label = label
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    func start(_ loop: @escaping @Sendable () -> Void) {
        started.store(true, ordering: .releasing)
        let finished = finished
        Thread {
            loop()
            finished.signal()
        }.start()
    }

    /// Asks the loop to stop and waits for it. When it never ran, `neverStarted` runs instead
    /// (nobody else owns the sockets then). Only the first call does anything. Throws if the
    /// loop did not stop in time (its sockets are then left to the process's exit).
    func stop(ifNeverStarted neverStarted: () -> Void) throws {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        guard started.load(ordering: .acquiring) else {
            neverStarted()
            return
        }
        guard finished.wait(timeout: .now() + 5) == .success else {
            throw ServiceLabError("\(label) did not stop within 5 s")
        }
    }
}
