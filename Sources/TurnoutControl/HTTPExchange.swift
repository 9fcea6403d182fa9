import Glibc
import TurnoutModel
import TurnoutProxy

/// One HTTP/1.1 request on a TCP connection of its own (over TLS when given a
/// ``TLSClientConfiguration``), and its response: what the etcd client speaks to etcd's JSON
/// gateway.
///
/// `init` connects, sends the request (with `Connection: close`: one request per connection, so
/// a response never has to be drained for the next) and reads the response head, all before
/// its deadline. Then either ``readBody(until:limit:)`` reads the whole body before a deadline,
/// or a streaming caller (etcd's watch) polls ``fileDescriptor`` for `POLLIN` and takes what
/// arrived with ``readAvailable()``. Content-Length, chunked and until-close bodies are read.
///
/// Every wait also watches `interrupt`, a descriptor the caller makes readable (a ``Wakeup``)
/// to abandon the exchange at once: a source being stopped does not wait out a deadline. The
/// connection is closed when the exchange goes away. Not thread-safe: one thread uses it.
/// Errors are ``HTTPError``, naming the request. The corresponding C calls are `connect(2)`,
/// `send(2)`, `recv(2)` and `poll(2)`, and over TLS `SSL_connect`, `SSL_write` and `SSL_read`
/// (``TLSSession``).
final class HTTPExchange {
    /// How long a connect may take, at most, within the request's deadline: etcd is near, and
    /// a host that does not answer a SYN within this is as good as down.
    static let connectTimeout: Duration = .seconds(2)

    /// The phase a timeout names when the connection was never made.
    static let connectingPhase = "connecting"

    /// The phase a timeout names when the TLS handshake did not finish: the request was not sent.
    static let handshakePhase = "in the TLS handshake"

    /// The phase a timeout names when a host name's lookup did not finish (``HostResolver``).
    static let resolvingPhase = "resolving the host name"

    /// The request as errors name it: `POST http://127.0.0.1:2379/v3/kv/range`, and for a host
    /// name the address it went to: `POST https://etcd-0.example:2379/v3/kv/range (10.0.0.5)`.
    let request: String
    let server: SocketAddress
    let head: HTTPResponseHead
    private let connection: TCPConnection
    /// The TLS session on `connection`, for https.
    private let session: TLSSession?
    private let interrupt: Int32?
    private var framing: HTTPResponseHead.Framing
    private var chunked = ChunkedDecoder()
    /// Bytes read past the head, not yet decoded.
    private var pending: [UInt8]
    /// The body's bytes still to come (Content-Length).
    private var remaining = 0
    private var ended = false
    /// Where reads land before they are decoded.
    private var scratch = [UInt8](repeating: 0, count: 65_536)

    /// Connects to `server`, sends `method path` with `body` and reads the response head. With
    /// `tls`, the connection is TLS, and the server's certificate must name `serverName` (the
    /// host the URL gave; the server's address when nil). `headers` are sent as given: the
    /// caller keeps line breaks out of them.
    init(server: SocketAddress, tls: TLSClientConfiguration? = nil, serverName: String? = nil, method: String, path: String,
         headers: [(name: String, value: String)] = [], body: [UInt8], contentType: String = "application/json",
         until deadline: ContinuousClock.Instant, interrupt: Int32?) throws(HTTPError) {
        let request = Self.requestName(method: method, scheme: tls == nil ? "http" : "https", server: server, serverName: serverName, path: path)
        self.request = request
        self.server = server
        self.interrupt = interrupt
        let connection: TCPConnection
        do {
            connection = try TCPConnection.connect(to: server, until: min(deadline, .now + Self.connectTimeout))
        } catch {
            throw HTTPError(request: request, kind: error.errno == ETIMEDOUT ? .timedOut(phase: Self.connectingPhase) : .connect(error))
        }
        var session: TLSSession?
        if let tls {
            do throws(HTTPError.Kind) {
                let started: TLSSession
                do {
                    started = try TLSSession(tls, socket: connection.fileDescriptor, serverName: serverName ?? "\(server.address)")
                } catch {
                    throw .handshake(error.reason)
                }
                try Self.handshake(started, on: connection.fileDescriptor, until: deadline, interrupt: interrupt)
                session = started
            } catch {
                throw HTTPError(request: request, kind: error)
            }
        }
        self.session = session
        let host = serverName.flatMap { IPAddress($0) == nil ? "\($0):\(server.port)" : nil } ?? "\(server)"
        let text = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\n"
            + headers.map { "\($0.name): \($0.value)\r\n" }.joined()
            + "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        do throws(HTTPError.Kind) {
            try Self.send(Array(text.utf8) + body, on: connection, session, until: deadline, interrupt: interrupt)
            let (head, rest) = try Self.readHead(from: connection, session, until: deadline, interrupt: interrupt)
            self.head = head
            pending = rest
            framing = try head.framing
        } catch {
            throw HTTPError(request: request, kind: error)
        }
        self.connection = connection
        switch framing {
        case .contentLength(let count): remaining = count
        case .none: ended = true
        case .chunked, .untilClose: break
        }
    }

    /// `METHOD SCHEME://AUTHORITY/PATH`, the authority as the URL wrote it, and the address it
    /// went to after a host name.
    static func requestName(method: String, scheme: String, server: SocketAddress, serverName: String?, path: String) -> String {
        guard let serverName, IPAddress(serverName) == nil else { return "\(method) \(scheme)://\(server)\(path)" }
        return "\(method) \(scheme)://\(serverName):\(server.port)\(path) (\(server.address))"
    }

    /// The socket, lent for `poll(2)` by a streaming caller; never close it.
    var fileDescriptor: Int32 { connection.fileDescriptor }

    /// The whole body, read before `deadline`; at most `limit` bytes.
    func readBody(until deadline: ContinuousClock.Instant, limit: Int = 256 << 20) throws(HTTPError) -> [UInt8] {
        var body: [UInt8] = []
        while let bytes = try readAvailable() {
            body += bytes
            guard body.count <= limit else { throw HTTPError(request: request, kind: .malformed("a body over \(limit) bytes")) }
            if bytes.isEmpty {
                do throws(HTTPError.Kind) {
                    try Self.wait(connection.fileDescriptor, for: Int16(POLLIN), until: deadline, interrupt: interrupt,
                                  phase: "reading the response body")
                } catch {
                    throw HTTPError(request: request, kind: error)
                }
            }
        }
        return body
    }

    /// The body bytes that arrived, without waiting: empty when none arrived yet (poll
    /// ``fileDescriptor`` before asking again), nil once the body is complete.
    func readAvailable() throws(HTTPError) -> [UInt8]? {
        do throws(HTTPError.Kind) {
            var body = try decode(pending)
            pending = []
            // Bytes OpenSSL decrypted and holds are taken now: poll(2) would not see them.
            while !ended && (body.isEmpty || session?.hasPendingBytes == true) {
                guard let count = try Self.receive(from: connection, session, into: &scratch, interrupt: interrupt) else { break }
                if count == 0 {
                    guard case .untilClose = framing else { throw .closedEarly }
                    ended = true
                    break
                }
                body += try decode(scratch[0..<count])
            }
            return body.isEmpty && ended ? nil : body
        } catch {
            throw HTTPError(request: request, kind: error)
        }
    }

    /// The body bytes in `bytes` (which came after the head), by the body's framing.
    private func decode(_ bytes: some Collection<UInt8>) throws(HTTPError.Kind) -> [UInt8] {
        guard !bytes.isEmpty else { return [] }
        switch framing {
        case .none:
            throw .malformed("\(bytes.count) bytes after a response without a body")
        case .untilClose:
            return Array(bytes)
        case .contentLength:
            guard bytes.count <= remaining else { throw .malformed("more bytes than Content-Length") }
            remaining -= bytes.count
            if remaining == 0 { ended = true }
            return Array(bytes)
        case .chunked:
            let body = try chunked.feed(Array(bytes)[...])
            if chunked.isFinished { ended = true }
            return body
        }
    }

    private static func send(_ bytes: [UInt8], on connection: borrowing TCPConnection, _ session: TLSSession?,
                             until deadline: ContinuousClock.Instant, interrupt: Int32?) throws(HTTPError.Kind) {
        var offset = 0
        while offset < bytes.count {
            // withUnsafeBytes rethrows untyped: the error crosses it as a Result.
            let result = bytes[offset...].withUnsafeBytes { raw in
                Result { () throws(HTTPError.Kind) -> TLSSession.Progress in
                    guard let session else {
                        let written: Int?
                        do throws(SystemCallError) {
                            written = try connection.write(raw)
                        } catch {
                            throw .transfer(error)
                        }
                        return written.map { .done($0) } ?? .wantWrite
                    }
                    do throws(TLSFailure) {
                        return try session.write(raw)
                    } catch {
                        throw error.systemCall.map { .transfer($0) } ?? .tls(error.reason)
                    }
                }
            }
            let progress = try result.get()
            if let events = progress.waitEvents {
                try wait(connection.fileDescriptor, for: events, until: deadline, interrupt: interrupt, phase: "sending the request")
            } else if case .done(let written) = progress {
                // A write that takes nothing and asks for no wait would loop here for ever.
                guard written > 0 else { throw .tls("a write made no progress") }
                offset += written
            }
        }
    }

    /// Runs the TLS handshake on `descriptor` to its end, before `deadline`.
    private static func handshake(_ session: TLSSession, on descriptor: Int32, until deadline: ContinuousClock.Instant,
                                  interrupt: Int32?) throws(HTTPError.Kind) {
        while true {
            let progress: TLSSession.Progress
            do {
                progress = try session.handshake()
            } catch {
                throw .handshake(error.reason)
            }
            guard let events = progress.waitEvents else { return }
            try wait(descriptor, for: events, until: deadline, interrupt: interrupt, phase: handshakePhase)
        }
    }

    /// The response head and the bytes read past it.
    private static func readHead(from connection: borrowing TCPConnection, _ session: TLSSession?, until deadline: ContinuousClock.Instant,
                                 interrupt: Int32?) throws(HTTPError.Kind) -> (HTTPResponseHead, [UInt8]) {
        var received: [UInt8] = []
        var scratch = [UInt8](repeating: 0, count: 16_384)
        while true {
            guard let count = try receive(from: connection, session, into: &scratch, until: deadline, interrupt: interrupt) else {
                try wait(connection.fileDescriptor, for: Int16(POLLIN), until: deadline, interrupt: interrupt, phase: "waiting for the response")
                continue
            }
            guard count > 0 else { throw .closedEarly }
            received += scratch[0..<count]
            if let end = HTTPResponseHead.end(in: received) {
                let head = try HTTPResponseHead(parsing: received[0..<end])
                // 100 Continue (never asked for, but allowed): the real head follows.
                if head.status == 100 {
                    received.removeFirst(end)
                    continue
                }
                return (head, Array(received[end...]))
            }
            guard received.count <= HTTPResponseHead.maximumSize else {
                throw .malformed("a response head over \(HTTPResponseHead.maximumSize) bytes")
            }
        }
    }

    /// What `recv(2)` (or `SSL_read`) put in `scratch`: the count, 0 at the end of the stream,
    /// nil when nothing is waiting. A TLS read that must first write (a TLS 1.3 key update's
    /// answer into a full send buffer) waits for that here, up to ``connectTimeout`` (and not
    /// past `deadline`).
    private static func receive(from connection: borrowing TCPConnection, _ session: TLSSession?, into scratch: inout [UInt8],
                                until deadline: ContinuousClock.Instant? = nil, interrupt: Int32?) throws(HTTPError.Kind) -> Int? {
        guard let session else {
            // withUnsafeMutableBytes rethrows untyped: the error crosses it as a Result.
            let result = scratch.withUnsafeMutableBytes { raw in
                Result { () throws(SystemCallError) in try connection.read(into: raw) }
            }
            do {
                return try result.get()
            } catch {
                throw .transfer(error)
            }
        }
        while true {
            let result = scratch.withUnsafeMutableBytes { raw in
                Result { () throws(TLSFailure) in try session.read(into: raw) }
            }
            let progress: TLSSession.Progress
            do {
                progress = try result.get()
            } catch {
                throw error.systemCall.map { .transfer($0) } ?? .tls(error.reason)
            }
            switch progress {
            case .done(let count): return count
            case .wantRead: return nil
            case .wantWrite:
                let limit = ContinuousClock.now + connectTimeout
                try wait(connection.fileDescriptor, for: Int16(POLLOUT), until: min(deadline ?? limit, limit), interrupt: interrupt,
                         phase: "answering the server's TLS message")
            }
        }
    }

    /// Waits until `fd` is ready for `events`; throws when `deadline` passes first or
    /// `interrupt` becomes readable. Every wait of a request, the name lookup's included.
    static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant, interrupt: Int32?,
                             phase: String) throws(HTTPError.Kind) {
        var entries = [pollfd(fd: fd, events: events, revents: 0), pollfd(fd: interrupt ?? -1, events: Int16(POLLIN), revents: 0)]
        while true {
            let ready = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, 2, deadline.pollMilliseconds) }
            if ready < 0 {
                if errno == EINTR { continue }
                throw .transfer(SystemCallError(call: "poll", errno: errno))
            }
            if entries[1].revents != 0 { throw .interrupted }
            if entries[0].revents != 0 { return }
            if ready == 0 { throw .timedOut(phase: phase) }
        }
    }
}
