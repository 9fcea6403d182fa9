#if canImport(Glibc)
import Glibc
#endif
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutProxy

/// The admin HTTP server, driven over real loopback sockets: request bytes in → status, headers
/// and body out. Every wait has a deadline; nothing asserts on time.
@Suite("Admin HTTP server")
struct AdminServerTests {
    /// 127.0.0.77, not 127.0.0.1: suites run in parallel, and a port this suite just released
    /// on 127.0.0.1 could be taken by another suite's server (an etcd lab picks free loopback
    /// ports) before the "refused after stop()" check connects to it.
    static let loopback = SocketAddress(address: .v4(0x7F00_004D), port: 0)

    /// The handler of every test: `/x` echoes the query, `/unavailable` is 503, the rest 404.
    static let handler: @Sendable (AdminRequest) -> AdminResponse = { request in
        switch request.path {
        case "/x": AdminResponse(contentType: "text/plain; charset=utf-8", text: "x with query \(request.query)\n")
        case "/unavailable": AdminResponse(status: 503, text: "not ready\n")
        default: .notFound
        }
    }

    /// A started server, stopped when the test's scope ends.
    static func server(maximumClients: Int = AdminServer.defaultMaximumClients,
                       requestTimeout: Duration = .seconds(2)) throws -> AdminServer {
        let server = try AdminServer(address: loopback, maximumClients: maximumClients, requestTimeout: requestTimeout, handler: handler)
        try server.start()
        return server
    }

    @Test("GET /x?a=1 → the handler's 200 and body, Content-Length of the body, Connection: close")
    func get() throws {
        let server = try Self.server()
        defer { server.stop() }
        let answer = try Client.exchange("GET /x?a=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n", with: server.address)
        #expect(answer.status == 200)
        #expect(answer.bodyText == "x with query a=1\n")
        #expect(answer.headers["content-length"] == "\(answer.body.count)")
        #expect(answer.headers["connection"] == "close")
        #expect(answer.headers["content-type"] == "text/plain; charset=utf-8")
    }

    static let handlerAnswers: [(String, Int)] = [
        ("GET /missing HTTP/1.1\r\n\r\n", 404),
        ("GET /unavailable HTTP/1.0\r\n\r\n", 503),
        ("GET http://localhost:15000/x?b HTTP/1.1\r\n\r\n", 200),
        ("GET /x HTTP/1.1\nHost: bare-lf\n\n", 200),
    ]

    @Test("request → the handler's status (404 and 503 are its choice; absolute form and bare LF accepted)", arguments: handlerAnswers)
    func handlerStatus(_ request: String, _ status: Int) throws {
        let server = try Self.server()
        defer { server.stop() }
        let answer = try Client.exchange(request, with: server.address)
        #expect(answer.status == status)
        #expect(answer.headers["content-length"] == "\(answer.body.count)")
    }

    @Test("HEAD /x → 200, GET's Content-Length, no body")
    func head() throws {
        let server = try Self.server()
        defer { server.stop() }
        let answer = try Client.exchange("HEAD /x?a=1 HTTP/1.1\r\n\r\n", with: server.address)
        #expect(answer.status == 200)
        #expect(answer.headers["content-length"] == "\("x with query a=1\n".utf8.count)")
        #expect(answer.body.isEmpty)
    }

    @Test("POST /x with a body → 405 with Allow: GET, HEAD; the handler is not asked")
    func post() throws {
        let server = try Self.server()
        defer { server.stop() }
        let answer = try Client.exchange("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", with: server.address)
        #expect(answer.status == 405)
        #expect(answer.headers["allow"] == "GET, HEAD")
        #expect(answer.headers["connection"] == "close")
    }

    static let garbage: [(String, [UInt8], Int)] = [
        ("not HTTP", Array("hello there\r\n\r\n".utf8), 400),
        ("no target or version", Array("GET\r\n\r\n".utf8), 400),
        ("four words", Array("GET /x HTTP/1.1 extra\r\n\r\n".utf8), 400),
        ("a target without /", Array("GET x HTTP/1.1\r\n\r\n".utf8), 400),
        ("a header without a colon", Array("GET /x HTTP/1.1\r\nno colon here\r\n\r\n".utf8), 400),
        ("another protocol", Array("GET /x FTP/1.0\r\n\r\n".utf8), 400),
        ("binary", [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03, 0x0A, 0x0D, 0x0A, 0x0D, 0x0A], 400),
        ("a bare CR inside a line", Array("GET /x\rHTTP/1.1\r\n\r\n".utf8), 400),
        ("HTTP/2.0", Array("GET /x HTTP/2.0\r\n\r\n".utf8), 505),
    ]

    @Test("garbage → 400 (505 for another HTTP major version), Connection: close", arguments: garbage)
    func badRequest(_ name: String, _ request: [UInt8], _ status: Int) throws {
        let server = try Self.server()
        defer { server.stop() }
        let answer = try Client.exchange(request, with: server.address)
        #expect(answer.status == status, "\(name)")
        #expect(answer.headers["connection"] == "close", "\(name)")
    }

    @Test("a request head over 8 KiB (9 KiB, 64 KiB) → 431, read by the client before the close", arguments: [9 * 1_024, 64 * 1_024])
    func oversize(_ size: Int) throws {
        let server = try Self.server()
        defer { server.stop() }
        let request = "GET /x HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: size) + "\r\n\r\n"
        let answer = try Client.exchange(request, with: server.address)
        #expect(answer.status == 431)
    }

    @Test("a client that connects and sends nothing → a second client is still answered while it waits")
    func silentClientDoesNotBlock() throws {
        let server = try Self.server()
        defer { server.stop() }
        let silent = try TCPConnection.connect(to: server.address, until: .now + .seconds(2))
        let answer = try Client.exchange("GET /x HTTP/1.1\r\n\r\n", with: server.address)
        #expect(answer.status == 200)
        // The first is still open and unanswered: nothing to read yet.
        var byte: UInt8 = 0
        let pending = try withUnsafeMutableBytes(of: &byte) { buffer throws(SystemCallError) in try silent.read(into: buffer) }
        #expect(pending == nil)
    }

    @Test("20 clients each send half a request, then the rest → all 20 answered")
    func interleavedClients() throws {
        let server = try Self.server()
        defer { server.stop() }
        var clients: [Client] = []
        for index in 0..<20 {
            let client = Client(try TCPConnection.connect(to: server.address, until: .now + .seconds(2)))
            try client.send(Array("GET /x?client=\(index) HT".utf8))
            clients.append(client)
        }
        for client in clients { try client.send(Array("TP/1.1\r\n\r\n".utf8)) }
        for (index, client) in clients.enumerated() {
            let answer = try client.answer()
            #expect(answer.status == 200 && answer.bodyText == "x with query client=\(index)\n", "client \(index)")
        }
    }

    @Test("half a request, then silence past the request timeout → 408")
    func requestTimeout() throws {
        let server = try Self.server(requestTimeout: .milliseconds(200))
        defer { server.stop() }
        let client = Client(try TCPConnection.connect(to: server.address, until: .now + .seconds(2)))
        try client.send(Array("GET /x HTTP/1.1\r\nHost: slow".utf8))
        #expect(try client.answer().status == 408)
    }

    @Test("limit of 1 client: one open → the next is closed unanswered; once it leaves → served again")
    func clientLimit() throws {
        let server = try Self.server(maximumClients: 1)
        defer { server.stop() }
        do {
            let first = try TCPConnection.connect(to: server.address, until: .now + .seconds(2))
            // An answer proves nothing here; "closed without an answer" is an empty stream or a reset.
            let refused = Result { () throws(SystemCallError) in try Client.exchange("GET /x HTTP/1.1\r\n\r\n", with: server.address) }
            switch refused {
            case .success(let answer): #expect(answer.raw.isEmpty, "over the limit: \(answer.raw.count) bytes answered")
            case .failure(let error): #expect(error.errno == ECONNRESET || error.errno == EPIPE, "\(error)")
            }
            _ = consume first
        }
        // The server may see the next connection before the first one's close (another CPU can
        // deliver them in either order), and then rightly turns it away: ask until a deadline.
        let deadline = ContinuousClock.now + .seconds(2)
        var status: Int?
        repeat {
            status = try? Client.exchange("GET /x HTTP/1.1\r\n\r\n", with: server.address).status
        } while status != 200 && ContinuousClock.now < deadline
        #expect(status == 200)
    }

    @Test("stop() with a client still open → returns; the port then refuses connections; stop() again is harmless")
    func stop() throws {
        let server = try Self.server()
        let open = try TCPConnection.connect(to: server.address, until: .now + .seconds(2))
        server.stop()
        let error = #expect(throws: SystemCallError.self) {
            _ = try TCPConnection.connect(to: server.address, until: .now + .seconds(2))
        }
        #expect(error?.errno == ECONNREFUSED)
        // The open client was closed by the server: it reads the end of the stream (or a reset).
        let client = Client(open)
        let end = Result { () throws(SystemCallError) in try client.answer() }
        if case .success(let answer) = end { #expect(answer.raw.isEmpty) }
        server.stop()
    }

    @Test("never started, then dropped → the port is free again")
    func neverStarted() throws {
        let address = try AdminServer(address: Self.loopback, handler: Self.handler).address
        let again = try AdminServer(address: address, handler: Self.handler)
        #expect(again.address == address)
    }

    @Test("binding a port in use → SystemCallError naming bind, EADDRINUSE")
    func portInUse() throws {
        let server = try Self.server()
        defer { server.stop() }
        let error = #expect(throws: SystemCallError.self) {
            _ = try AdminServer(address: server.address, handler: Self.handler)
        }
        #expect(error?.errno == EADDRINUSE)
        #expect(error?.call == "bind(\(server.address))")
    }
}

/// A test client over `TCPConnection` and its non-blocking stream API, every wait bounded.
private final class Client {
    struct Answer {
        let raw: [UInt8]
        let status: Int?
        /// Header names lowercased.
        let headers: [String: String]
        let body: [UInt8]
        var bodyText: String { String(decoding: body, as: UTF8.self) }
    }

    let connection: TCPConnection
    let deadline = ContinuousClock.now + .seconds(2)

    init(_ connection: consuming TCPConnection) {
        self.connection = connection
    }

    /// Connects, sends `request`, reads the answer to the end of the stream.
    static func exchange(_ request: String, with address: SocketAddress) throws(SystemCallError) -> Answer {
        try exchange(Array(request.utf8), with: address)
    }

    static func exchange(_ request: [UInt8], with address: SocketAddress) throws(SystemCallError) -> Answer {
        let client = Client(try TCPConnection.connect(to: address, until: .now + .seconds(2)))
        try client.send(request)
        return try client.answer()
    }

    func send(_ bytes: [UInt8]) throws(SystemCallError) {
        var sent = 0
        while sent < bytes.count {
            try wait(for: POLLOUT)
            let rest = bytes.count - sent
            let written = bytes.withUnsafeBytes { buffer in
                Result { () throws(SystemCallError) in try connection.write(UnsafeRawBufferPointer(rebasing: buffer.suffix(rest))) }
            }
            sent += try written.get() ?? 0
        }
    }

    /// Everything until the server closes, split into status, headers and body.
    func answer() throws(SystemCallError) -> Answer {
        var raw: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while true {
            try wait(for: POLLIN)
            let read = buffer.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in try connection.read(into: bytes) }
            }
            guard let count = try read.get() else { continue }
            if count == 0 { break }
            raw += buffer[..<count]
        }
        return Self.split(raw)
    }

    private func wait(for events: Int32) throws(SystemCallError) {
        var entry = pollfd(fd: connection.fileDescriptor, events: Int16(events), revents: 0)
        let ready = poll(&entry, 1, deadline.pollMilliseconds)
        if ready < 0 { throw SystemCallError(call: "poll", errno: errno) }
        if ready == 0 { throw SystemCallError(call: "poll (test deadline)", errno: ETIMEDOUT) }
    }

    static func split(_ raw: [UInt8]) -> Answer {
        let separator = Array("\r\n\r\n".utf8)
        guard let end = raw.indices.first(where: { raw[$0...].starts(with: separator) }) else {
            return Answer(raw: raw, status: nil, headers: [:], body: [])
        }
        // "\r\n" is one Character (one grapheme cluster).
        let lines = String(decoding: raw[..<end], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusWords = lines[0].split(separator: " ", maxSplits: 2)
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...].drop { $0 == " " })
        }
        return Answer(raw: raw, status: statusWords.count >= 2 && statusWords[0] == "HTTP/1.1" ? Int(statusWords[1]) : nil,
                      headers: headers, body: Array(raw[(end + separator.count)...]))
    }
}
