import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// One admin request as the handler sees it: always `GET` or `HEAD` (the server answers every
/// other method with 405 itself).
///
/// `path` is the request target up to `?` (or `#`), as sent: not percent-decoded; an
/// absolute-form target (`http://host/metrics`) is reduced to its path. `query` is what follows
/// `?`, empty when there is none. Headers are not kept: no admin endpoint needs one.
public struct AdminRequest: Sendable, Hashable {
    /// `GET` or `HEAD`. For `HEAD` the handler answers as for `GET`; the server drops the body.
    public var method: String
    /// The path, starting with `/`.
    public var path: String
    /// The query string without its `?`.
    public var query: String

    public init(method: String, path: String, query: String = "") {
        self.method = method
        self.path = path
        self.query = query
    }
}

/// What the handler answers: a status, a content type and the body bytes.
///
/// The server adds `Content-Length`, `Connection: close` (one request per connection) and, for
/// 405, `Allow: GET, HEAD`. A status outside 200…599 or a content type with a control character
/// (a header injection) is a programmer error (precondition).
public struct AdminResponse: Sendable, Hashable {
    /// The HTTP status code, 200…599.
    public let status: Int
    /// The `Content-Type` header's value.
    public let contentType: String
    /// The body, sent for GET, not for HEAD (whose `Content-Length` is still this body's).
    public let body: [UInt8]

    public init(status: Int = 200, contentType: String, body: [UInt8]) {
        precondition((200...599).contains(status), "admin response status \(status) outside 200…599")
        precondition(!contentType.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "control character in a content type")
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// A text body (UTF-8), `text/plain; charset=utf-8` unless told otherwise.
    public init(status: Int = 200, contentType: String = "text/plain; charset=utf-8", text: String) {
        self.init(status: status, contentType: contentType, body: Array(text.utf8))
    }

    /// 404 with a one-line text body: the handler's answer for a path it does not serve.
    public static let notFound = AdminResponse(status: 404, text: "not found\n")
}

/// A minimal HTTP/1.1 server for the proxy's admin endpoints (`/metrics`, `/stats`, `/config`,
/// `/ready`): GET and HEAD, one request per connection, on one thread of its own.
///
/// `init` binds and listens at once, so a taken port (EADDRINUSE) or a bad address is the
/// caller's error before anything starts; `start()` serves on a new thread; `stop()` wakes that
/// thread, joins it and closes the listener and every client; dropping the server stops it too.
/// `start()` and `stop()` may be called from any thread; `start()` at most once.
///
/// The serving thread polls the listener and every open client (at most `maximumClients`; more
/// are accepted and closed at once), so a slow or silent client never holds up another. It keeps
/// one descriptor in reserve: when the process is out of them (the proxy's workers took the
/// last), the reserve is closed to accept one client, so `/metrics` still answers while the
/// proxy pauses its accepts. Each
/// client has `requestTimeout` to send a request head of at most `maximumRequestBytes` (408 or
/// 431 otherwise; 400 for one that is not HTTP/1.x, 405 for a method other than GET/HEAD), then
/// as long again to take the answer. The handler runs on the serving thread, one request at a
/// time: it must be quick (sum counters, render text) and must not keep the server (a server
/// dropped by its own thread cannot join itself). Whatever the handler answers is sent;
/// 404 for an unknown path is its decision (`AdminResponse.notFound`).
///
/// A class, `Sendable` by its stored properties: immutable descriptors and address, and the
/// serving state behind a `Mutex`. Shared rather than `~Copyable` so that the proxy can hand it
/// to whichever thread stops it (a signal handler's task, the command's shutdown path).
public final class AdminServer: Sendable {
    /// The default limit on simultaneous clients.
    public static let defaultMaximumClients = 64
    /// The largest request head accepted, in bytes (request line and headers).
    public static let maximumRequestBytes = 8_192

    /// The bound address: the kernel's choice of port when port 0 was asked for.
    public let address: SocketAddress

    /// Where the serving loop is: not started (the loop owns the listener), serving on a thread,
    /// or stopped (the listener closed).
    private enum Phase {
        case ready(ServeLoop)
        case running(pthread_t)
        case stopped
    }

    private let phase: Mutex<Phase>
    /// Wakes the serving thread's poll for `stop()`.
    private let wake: Wakeup

    /// Binds and listens on `address` (port 0: any free port, see `address`).
    ///
    /// Throws the failing call with its errno: `bind(127.0.0.1:15000)` with EADDRINUSE for a
    /// taken port, EADDRNOTAVAIL for an address not on this host, EACCES for a privileged port.
    /// The corresponding C calls are `socket(2)`, `setsockopt(2)`, `bind(2)`, `listen(2)` and
    /// `eventfd(2)`.
    public init(address: SocketAddress, maximumClients: Int = AdminServer.defaultMaximumClients,
                requestTimeout: Duration = .seconds(2),
                handler: @escaping @Sendable (AdminRequest) -> AdminResponse) throws(SystemCallError) {
        precondition(maximumClients > 0 && requestTimeout > .zero, "an admin server needs a client and some time")
        let listener = try TCPListener(bindingTo: address, backlog: Int32(clamping: maximumClients))
        let wake = try Wakeup()
        self.address = listener.address
        self.wake = wake
        let loop = ServeLoop(listener: listener, wake: wake, maximumClients: maximumClients,
                             requestTimeout: requestTimeout, handler: handler)
        phase = Mutex(.ready(loop))
    }

    deinit { stop() }

    /// Starts serving on a new thread. Calling it twice, or after `stop()`, is a programmer
    /// error (precondition). Throws `pthread_create` with its errno (EAGAIN: no thread left).
    public func start() throws(SystemCallError) {
        try phase.withLock { phase throws(SystemCallError) in
            guard case .ready(let loop) = phase else { preconditionFailure("AdminServer.start() called twice or after stop()") }
            // The loop crosses to the new thread as an opaque pointer, with a reference of its
            // own. This is a transfer, not a share: once the thread exists, `phase` drops the only
            // other reference (below), and nothing here touches the loop again, so only the
            // serving thread ever reads or writes it (why `ServeLoop` need not be Sendable). The
            // compiler cannot see that through the lock, so `JoinableThread(handingOver:)` is
            // not usable here.
            let context = Unmanaged.passRetained(loop).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { raw in
                Unmanaged<ServeLoop>.fromOpaque(raw!).takeRetainedValue().run()
                return nil
            }, context)
            guard created == 0 else {
                Unmanaged<ServeLoop>.fromOpaque(context).release()
                throw SystemCallError(call: "pthread_create", errno: created)
            }
            phase = .running(thread)
        }
    }

    /// Stops serving: wakes the serving thread and waits for it to close every client and the
    /// listener (new connections are refused once it returns). Bounded by the handler call in
    /// progress, if any. Harmless when not started (closes the listener) or already stopped.
    public func stop() {
        phase.withLock { phase in
            switch phase {
            case .ready:
                phase = .stopped
            case .running(let thread):
                wake.signal()
                pthread_join(thread, nil)
                phase = .stopped
            case .stopped:
                break
            }
        }
    }
}

/// The serving thread's state: the listener, the open clients, a read buffer. Touched by one
/// thread only (see `AdminServer.start()`).
private final class ServeLoop {
    let listener: TCPListener
    let wake: Wakeup
    let maximumClients: Int
    let requestTimeout: Duration
    let handler: @Sendable (AdminRequest) -> AdminResponse
    var clients: [AdminClient] = []
    /// Set when `accept4` failed (EMFILE, ENFILE, ENOBUFS): the listener stays readable while
    /// the connection stays queued, so it is left out of the poll set until then, not spun on.
    var acceptPausedUntil: ContinuousClock.Instant?
    /// A descriptor held in reserve (`/dev/null`), given up to accept a client when the process
    /// has none left; -1 while given up, opened again once that client is gone.
    var reserve: Int32 = -1
    /// Scratch for reads: the rest of a request head, or input discarded after the answer.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 16_384, alignment: 1)

    /// Accepts per wake-up at most this many connections, so a flood cannot starve the clients.
    static let acceptBurst = 64
    /// A client may send this much after its answer (an unread body) before it is cut off.
    static let drainLimit = 65_536
    static let acceptPause = Duration.milliseconds(100)

    init(listener: consuming TCPListener, wake: Wakeup, maximumClients: Int, requestTimeout: Duration,
         handler: @escaping @Sendable (AdminRequest) -> AdminResponse) {
        self.listener = listener
        self.wake = wake
        self.maximumClients = maximumClients
        self.requestTimeout = requestTimeout
        self.handler = handler
        openReserve()
    }

    deinit {
        scratch.deallocate()
        if reserve >= 0 { close(reserve) }
    }

    /// Takes the reserve descriptor back, when there is one to take.
    private func openReserve() {
        if reserve < 0 { reserve = open("/dev/null", O_RDONLY | O_CLOEXEC) }
    }

    /// Serves until woken, then closes every client.
    func run() {
        var descriptors: [pollfd] = []
        defer { clients.removeAll() }
        while true {
            if let until = acceptPausedUntil, until <= .now { acceptPausedUntil = nil }
            descriptors.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: wake.descriptor, events: Int16(POLLIN), revents: 0))
            // A negative descriptor is skipped by poll(2).
            descriptors.append(pollfd(fd: acceptPausedUntil == nil ? listener.fileDescriptor : -1, events: Int16(POLLIN), revents: 0))
            for client in clients {
                descriptors.append(pollfd(fd: client.connection.fileDescriptor, events: client.events, revents: 0))
            }
            let nextDeadline = (clients.map(\.deadline) + [acceptPausedUntil].compactMap { $0 }).min()
            let ready = poll(&descriptors, nfds_t(descriptors.count), nextDeadline?.pollMilliseconds ?? -1)
            if ready < 0 {
                // EINTR: poll again. Anything else (ENOMEM) is transient at best: wait a little
                // rather than spin, and stay stoppable.
                if errno != EINTR { _ = poll(&descriptors, 1, Int32(Self.acceptPause / .milliseconds(1))) }
                if descriptors[0].revents != 0 { return }
                continue
            }
            if descriptors[0].revents != 0 { return }
            for (index, client) in clients.enumerated() where descriptors[index + 2].revents != 0 {
                serve(client)
            }
            let now = ContinuousClock.now
            for client in clients where client.deadline <= now { expire(client) }
            clients.removeAll { $0.stage == .finished }
            if clients.isEmpty { openReserve() }
            if descriptors[1].revents != 0 { acceptQueued() }
        }
    }

    private func acceptQueued() {
        for _ in 0..<Self.acceptBurst {
            do throws(SystemCallError) {
                guard let connection = try listener.acceptIfQueued() else { return }
                // Over the limit the connection is closed at once (it goes away here).
                guard clients.count < maximumClients else { continue }
                clients.append(AdminClient(connection: connection, deadline: .now + requestTimeout))
            } catch {
                if (error.errno == EMFILE || error.errno == ENFILE) && reserve >= 0 {
                    // Out of descriptors: the reserve makes room for one client (another thread
                    // may take the freed number first; then this waits like any other).
                    close(reserve)
                    reserve = -1
                    continue
                }
                acceptPausedUntil = .now + Self.acceptPause
                return
            }
        }
    }

    /// Moves `client` on after poll reported its socket: reads, answers, writes, drains.
    /// An error on its socket (a reset, EPIPE) ends the client: there is no one left to answer.
    private func serve(_ client: AdminClient) {
        do throws(SystemCallError) {
            switch client.stage {
            case .reading: try receive(client)
            case .writing: try transmit(client)
            case .draining: try drain(client)
            case .finished: break
            }
        } catch {
            client.stage = .finished
        }
    }

    private func receive(_ client: AdminClient) throws(SystemCallError) {
        while client.stage == .reading {
            let room = AdminServer.maximumRequestBytes + 1 - client.received.count
            guard let count = try client.connection.read(into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<room])) else { return }
            guard count > 0 else {
                // The end of the stream before a whole head: nothing at all is a client that
                // changed its mind; anything else is a truncated request.
                if client.received.isEmpty { client.stage = .finished } else { try answer(client, AdminHTTP.badRequest) }
                return
            }
            // The end of the head can only be in the new bytes or the 3 before them.
            let searchFrom = max(0, client.received.count - 3)
            client.received.append(contentsOf: scratch[..<count])
            if let end = AdminHTTP.headLength(client.received, from: searchFrom) {
                try answer(client, AdminHTTP.response(toHead: client.received[..<end], handler: handler))
            } else if client.received.count > AdminServer.maximumRequestBytes {
                try answer(client, AdminHTTP.tooLarge)
            }
        }
    }

    /// Queues `bytes` as the client's whole answer and sends what the socket takes now.
    private func answer(_ client: AdminClient, _ bytes: [UInt8]) throws(SystemCallError) {
        client.received = []
        client.output = bytes
        client.stage = .writing
        client.deadline = .now + requestTimeout
        try transmit(client)
    }

    private func transmit(_ client: AdminClient) throws(SystemCallError) {
        while client.sent < client.output.count {
            let rest = client.output.count - client.sent
            // withUnsafeBytes rethrows untyped: the error crosses it as a Result.
            let written = client.output.withUnsafeBytes { bytes in
                Result { () throws(SystemCallError) in try client.connection.write(UnsafeRawBufferPointer(rebasing: bytes.suffix(rest))) }
            }
            guard let count = try written.get() else { return }
            client.sent += count
        }
        // Answered. Closing now, with request bytes still unread (a body, an oversized head),
        // would send a reset that can destroy the answer before the client reads it: end this
        // side instead and read until the client closes (bounded by size and deadline).
        try client.connection.shutdownWrite()
        client.stage = .draining
        client.deadline = .now + requestTimeout
        try drain(client)
    }

    private func drain(_ client: AdminClient) throws(SystemCallError) {
        while true {
            guard let count = try client.connection.read(into: scratch) else { return }
            client.drained += count
            if count == 0 || client.drained > Self.drainLimit {
                client.stage = .finished
                return
            }
        }
    }

    /// A client past its deadline: one that sent part of a request gets 408; any other is closed.
    private func expire(_ client: AdminClient) {
        guard client.stage == .reading, !client.received.isEmpty else {
            client.stage = .finished
            return
        }
        do throws(SystemCallError) { try answer(client, AdminHTTP.timedOut) } catch { client.stage = .finished }
    }
}

/// One admin connection on the serving thread.
private final class AdminClient {
    enum Stage { case reading, writing, draining, finished }

    let connection: TCPConnection
    var stage = Stage.reading
    /// The end of the current stage (reading the head, sending the answer, draining).
    var deadline: ContinuousClock.Instant
    var received: [UInt8] = []
    var output: [UInt8] = []
    var sent = 0
    var drained = 0

    init(connection: consuming TCPConnection, deadline: ContinuousClock.Instant) {
        self.connection = connection
        self.deadline = deadline
    }

    /// What poll should wait for.
    var events: Int16 {
        switch stage {
        case .reading, .draining: Int16(POLLIN)
        case .writing: Int16(POLLOUT)
        case .finished: 0
        }
    }
}

/// The HTTP/1.x of the admin server: finding and parsing a request head, encoding an answer.
/// Pure functions of bytes, so the protocol is readable apart from the sockets.
enum AdminHTTP {
    static let badRequest = encode(AdminResponse(status: 400, text: "bad request\n"), body: true)
    static let tooLarge = encode(AdminResponse(status: 431, text: "request header fields too large\n"), body: true)
    static let timedOut = encode(AdminResponse(status: 408, text: "request timeout\n"), body: true)

    /// The length of the request head in `bytes` (through the empty line that ends it, CRLF or a
    /// bare LF), or nil while it is incomplete; the search starts at `from`.
    static func headLength(_ bytes: [UInt8], from: Int = 0) -> Int? {
        var start = from
        while let newline = bytes[start...].firstIndex(of: lf) {
            let next = newline + 1
            if next < bytes.count, bytes[next] == lf { return next + 1 }
            if next + 1 < bytes.count, bytes[next] == cr, bytes[next + 1] == lf { return next + 2 }
            start = next
        }
        return nil
    }

    /// The bytes to send for a complete request `head`: the handler's answer for a well-formed
    /// GET or HEAD, the server's own 400, 405 or 505 otherwise.
    static func response(toHead head: ArraySlice<UInt8>, handler: (AdminRequest) -> AdminResponse) -> [UInt8] {
        switch parse(head) {
        case .request(let request):
            return encode(handler(request), body: request.method != "HEAD")
        case .refused(let response):
            return encode(response, body: true)
        }
    }

    enum Parsed: Equatable {
        case request(AdminRequest)
        case refused(AdminResponse)
    }

    static func parse(_ head: ArraySlice<UInt8>) -> Parsed {
        let bad = Parsed.refused(AdminResponse(status: 400, text: "bad request\n"))
        var lines = head.split(separator: lf, omittingEmptySubsequences: false).map { $0.last == cr ? $0.dropLast() : $0 }
        while lines.last?.isEmpty == true { lines.removeLast() }
        // Control characters (a bare CR included) have no place in a head; tabs do.
        guard let requestLine = lines.first,
              lines.allSatisfy({ $0.allSatisfy { $0 == tab || ($0 >= 0x20 && $0 != 0x7F) } }) else { return bad }

        let parts = requestLine.split(separator: space, omittingEmptySubsequences: false)
        guard parts.count == 3, requestLine.allSatisfy({ $0 < 0x80 }), isToken(parts[0]) else { return bad }
        let version = Array(parts[2])
        guard version.count == 8, version.starts(with: Array("HTTP/".utf8)), version[6] == UInt8(ascii: "."),
              isDigit(version[5]), isDigit(version[7]) else { return bad }
        guard version[5] == UInt8(ascii: "1") else {
            return .refused(AdminResponse(status: 505, text: "HTTP version not supported\n"))
        }
        for line in lines.dropFirst() {
            // A header is `name: value`; a line starting with white space is obsolete folding.
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), isToken(line[..<colon]) else { return bad }
        }

        var target = Substring(decoding: parts[1], as: UTF8.self)
        for scheme in ["http://", "https://"] where target.lowercased().hasPrefix(scheme) {
            let authorityAndPath = target.dropFirst(scheme.count)
            target = authorityAndPath.firstIndex(of: "/").map { authorityAndPath[$0...] } ?? "/"
        }
        guard target.hasPrefix("/") else { return bad }
        if let fragment = target.firstIndex(of: "#") { target = target[..<fragment] }
        let path: Substring, query: Substring
        if let mark = target.firstIndex(of: "?") {
            (path, query) = (target[..<mark], target[target.index(after: mark)...])
        } else {
            (path, query) = (target, "")
        }

        let method = String(decoding: parts[0], as: UTF8.self)
        guard method == "GET" || method == "HEAD" else {
            return .refused(AdminResponse(status: 405, text: "method not allowed\n"))
        }
        return .request(AdminRequest(method: method, path: String(path), query: String(query)))
    }

    /// The status line, headers and (when `body`) the body of `response`.
    static func encode(_ response: AdminResponse, body: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(response.status) \(reason(response.status))\r\n"
        head += "Content-Type: \(response.contentType)\r\n"
        head += "Content-Length: \(response.body.count)\r\n"
        head += "Connection: close\r\n"
        if response.status == 405 { head += "Allow: GET, HEAD\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if body { bytes += response.body }
        return bytes
    }

    /// The reason phrase of `status`; empty (allowed) for one not listed.
    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 204: "No Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: ""
        }
    }

    /// RFC 9110's `token`: a method or a header name.
    private static func isToken(_ bytes: ArraySlice<UInt8>) -> Bool {
        !bytes.isEmpty && bytes.allSatisfy { byte in
            isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private static let lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r"), tab = UInt8(ascii: "\t"), space = UInt8(ascii: " ")
}
