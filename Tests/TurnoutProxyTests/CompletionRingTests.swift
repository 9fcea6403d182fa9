import Glibc
import Testing
import TurnoutModel
import TurnoutTestSupport
@testable import TurnoutProxy

/// The io_uring under the completion workers, on real loopback sockets: what each request
/// shape reports, and when.
@Suite("CompletionRing: io_uring requests on loopback sockets",
       .enabled(if: CompletionRing.unavailability() == nil || KernelLab.isRequired,
                "io_uring is not available to this process (seccomp, kernel.io_uring_disabled or a kernel before 6.1)"))
struct CompletionRingTests {
    @Test("three clients connect → one multishot accept reports three descriptors, each with more to come")
    func multishotAccept() throws {
        let ring = try enabledRing(buffers: 4, bufferSize: 256)
        let listener = try LoopbackListener()
        defer { listener.close() }
        try ring.accept(listener.descriptor, token: 7)
        let clients = try (0..<3).map { _ in try listener.connectClient() }
        defer { clients.forEach { Glibc.close($0) } }
        let accepted = try reap(ring, count: 3)
        defer { accepted.forEach { if $0.result >= 0 { Glibc.close($0.result) } } }
        #expect(accepted.map(\.token) == [7, 7, 7])
        #expect(accepted.allSatisfy { $0.result >= 0 && $0.more })
    }

    @Test("'ping' arrives → a receive names a buffer holding it; a send of 'pong' reaches the client; the client's close → 0, the receive ends")
    func receiveSendAndEnd() throws {
        let ring = try enabledRing(buffers: 4, bufferSize: 256)
        let (client, server) = try LoopbackListener.pair()
        defer { Glibc.close(client); Glibc.close(server) }
        try ring.receive(server, token: 1)
        #expect(try ring.wait(timeout: .milliseconds(20)) { _ in } == 0)
        try write(client, "ping")
        let arrival = try #require(try reap(ring, count: 1).first)
        #expect(arrival.token == 1 && arrival.result == 4 && arrival.more)
        let buffer = try #require(arrival.buffer)
        #expect(String(decoding: ring.bytes(of: buffer, count: 4), as: UTF8.self) == "ping")
        ring.giveBack(buffer)

        let pong = Array("pong".utf8)
        try pong.withUnsafeBytes { bytes in
            try ring.send(server, bytes, more: false, token: 2)
            let sent = try #require(try reap(ring, count: 1).first)
            #expect(sent.token == 2 && sent.result == 4 && sent.buffer == nil)
        }
        #expect(try read(client, count: 4) == "pong")

        shutdown(client, Int32(SHUT_WR))
        let end = try #require(try reap(ring, count: 1).first)
        #expect(end.token == 1 && end.result == 0 && !end.more)
    }

    @Test("a send to a socket whose buffers are full (the client reads nothing) → completes at once with -EAGAIN, holding nothing; once the client read, a send goes through")
    func sendToFullSocketDoesNotWait() throws {
        let ring = try enabledRing(buffers: 4, bufferSize: 256)
        let (client, server) = try LoopbackListener.pair()
        defer { Glibc.close(client); Glibc.close(server) }
        let chunk = [UInt8](repeating: 0x78, count: 65_536)
        var filled = 0
        while true {
            let sent = chunk.withUnsafeBytes { Glibc.send(server, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { break }
            filled += sent
        }
        try #require(filled > 0 && errno == EAGAIN)
        let bytes = Array("late".utf8)
        try bytes.withUnsafeBytes { raw in
            try ring.send(server, raw, more: false, token: 3)
            // Without MSG_DONTWAIT the send would stay armed (and hold its buffer) until the
            // client reads: no completion within reap's 2 s.
            let full = try #require(try reap(ring, count: 1).first)
            #expect(full.token == 3 && full.result == -EAGAIN)
        }
        var sink = [UInt8](repeating: 0, count: 65_536)
        var drained = 0
        while drained < filled {
            var pending = [pollfd(fd: client, events: Int16(POLLIN), revents: 0)]
            _ = try Syscalls.waitForAny(&pending, until: .now + .seconds(2))
            let received = sink.withUnsafeMutableBytes { Glibc.recv(client, $0.baseAddress, $0.count, 0) }
            try #require(received > 0)
            drained += received
        }
        try bytes.withUnsafeBytes { raw in
            try ring.send(server, raw, more: false, token: 4)
            let sent = try #require(try reap(ring, count: 1).first)
            #expect(sent.token == 4 && sent.result == 4)
        }
        #expect(try read(client, count: 4) == "late")
    }

    @Test("two buffers held, a third arrival → -ENOBUFS and the receive ends; one given back and the receive queued again → the bytes arrive")
    func buffersRunOut() throws {
        let ring = try enabledRing(buffers: 2, bufferSize: 64)
        let (client, server) = try LoopbackListener.pair()
        defer { Glibc.close(client); Glibc.close(server) }
        try ring.receive(server, token: 3)
        var held: [Int32] = []
        for text in ["one", "two"] {
            try write(client, text)
            let arrival = try #require(try reap(ring, count: 1).first)
            #expect(arrival.result == 3 && arrival.more)
            held.append(try #require(arrival.buffer))
        }
        try write(client, "six")
        let refused = try #require(try reap(ring, count: 1).first)
        #expect(refused.result == -ENOBUFS && !refused.more && refused.buffer == nil)

        ring.giveBack(held[0])
        try ring.receive(server, token: 4)
        let late = try #require(try reap(ring, count: 1).first)
        #expect(late.token == 4 && late.result == 3)
        #expect(String(decoding: ring.bytes(of: try #require(late.buffer), count: 3), as: UTF8.self) == "six")
    }

    @Test("connect to a closed port → -ECONNREFUSED")
    func connectRefused() throws {
        let ring = try enabledRing(buffers: 2, bufferSize: 64)
        let port: UInt16
        do {
            let listener = try LoopbackListener()
            port = listener.address.port
            listener.close()
        }
        let fd = try Syscalls.socket(family: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        defer { Glibc.close(fd) }
        try ring.connect(fd, to: SocketAddress(address: .v4(0x7F00_0001), port: port), timeout: .seconds(2), token: 5)
        let result = try #require(try reap(ring, count: 1).first)
        #expect(result.token == 5 && result.result == -ECONNREFUSED)
    }

    @Test("connect to a listener whose accept queue is full (SYN dropped) → -ECANCELED at its 200 ms timeout, not before")
    func connectTimesOut() throws {
        let ring = try enabledRing(buffers: 2, bufferSize: 64)
        let listener = try LoopbackListener(backlog: 0)
        defer { listener.close() }
        // The queue takes backlog + 1 connections; the next SYN is dropped until one is accepted.
        let queued = (0..<2).compactMap { _ in try? listener.connectClient(timeout: .milliseconds(300)) }
        defer { queued.forEach { Glibc.close($0) } }
        let fd = try Syscalls.socket(family: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        defer { Glibc.close(fd) }
        let started = ContinuousClock.now
        try ring.connect(fd, to: listener.address, timeout: .milliseconds(200), token: 6)
        let result = try #require(try reap(ring, count: 1).first)
        let waited = ContinuousClock.now - started
        #expect(result.token == 6 && result.result == -ECANCELED)
        #expect(waited >= .milliseconds(190))
    }

    @Test("an armed receive, its socket's requests cancelled → -ECANCELED, the receive ends")
    func cancelByDescriptor() throws {
        let ring = try enabledRing(buffers: 2, bufferSize: 64)
        let (client, server) = try LoopbackListener.pair()
        defer { Glibc.close(client); Glibc.close(server) }
        try ring.receive(server, token: 8)
        #expect(try ring.wait(timeout: .milliseconds(10)) { _ in } == 0)
        try ring.cancel(server)
        let result = try #require(try reap(ring, count: 1).first)
        #expect(result.token == 8 && result.result == -ECANCELED && !result.more)
    }

    @Test("a receive cancelled by its token → -ECANCELED; a receive on another token goes on")
    func cancelByToken() throws {
        let ring = try enabledRing(buffers: 2, bufferSize: 64)
        let (client, server) = try LoopbackListener.pair()
        defer { Glibc.close(client); Glibc.close(server) }
        try ring.receive(server, token: 9)
        try ring.receive(client, token: 10)
        try ring.cancel(token: 9)
        let cancelled = try #require(try reap(ring, count: 1).first)
        #expect(cancelled.token == 9 && cancelled.result == -ECANCELED)
        try write(server, "hi")
        let arrival = try #require(try reap(ring, count: 1).first)
        #expect(arrival.token == 10 && arrival.result == 2)
    }

    @Test("a poll for POLLIN on a quiet socket → nothing; 'x' arrives → one completion whose result has POLLIN")
    func pollReportsReadiness() throws {
        let ring = try enabledRing(buffers: 2, bufferSize: 64)
        let (client, server) = try LoopbackListener.pair()
        defer { Glibc.close(client); Glibc.close(server) }
        try ring.poll(server, events: UInt32(POLLIN), token: 13)
        #expect(try ring.wait(timeout: .milliseconds(20)) { _ in } == 0)
        try write(client, "x")
        let ready = try #require(try reap(ring, count: 1).first)
        #expect(ready.token == 13 && ready.result & Int32(POLLIN) != 0 && !ready.more)
    }

    @Test("a 50 ms timeout → -ETIME after at least 50 ms; a wait with nothing queued returns 0 completions")
    func timeouts() throws {
        let ring = try enabledRing(buffers: 2, bufferSize: 64)
        #expect(try ring.wait(timeout: .milliseconds(20)) { _ in } == 0)
        let started = ContinuousClock.now
        try ring.timeout(after: .milliseconds(50), token: 11)
        let result = try #require(try reap(ring, count: 1).first)
        #expect(result.token == 11 && result.result == -ETIME)
        #expect(ContinuousClock.now - started >= .milliseconds(49))
    }

    @Test("a ring made on one thread and enabled on another → that thread runs it; queued before enable → nothing happens until it is")
    func enabledOnAnotherThread() async throws {
        let ring = try CompletionRing(entries: 16, buffers: 2, bufferSize: 64)
        #expect(throws: SystemCallError.self) { try ring.wait(timeout: .zero) { _ in } }
        let handed = HandedOver(ring)
        let token = try await Task.detached {
            try handed.ring.enable()
            try handed.ring.timeout(after: .milliseconds(1), token: 12)
            return try reap(handed.ring, count: 1).first?.token
        }.value
        #expect(token == 12)
    }

    private func enabledRing(buffers: UInt32, bufferSize: Int) throws -> CompletionRing {
        let ring = try CompletionRing(entries: 16, buffers: buffers, bufferSize: bufferSize)
        try ring.enable()
        return ring
    }

    /// Waits (2 s at most) until `count` completions came; fails the test otherwise.
    private func reap(_ ring: CompletionRing, count: Int) throws -> [CompletionRing.Completion] {
        var completions: [CompletionRing.Completion] = []
        let deadline = ContinuousClock.now + .seconds(2)
        while completions.count < count && ContinuousClock.now < deadline {
            try ring.wait(timeout: .milliseconds(100)) { completions.append($0) }
        }
        try #require(completions.count == count, "\(completions.count) of \(count) completions in 2 s: \(completions)")
        return completions
    }

    private func write(_ fd: Int32, _ text: String) throws {
        let sent = Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        try #require(sent == text.utf8.count)
    }

    private func read(_ fd: Int32, count: Int) throws -> String {
        var buffer = [UInt8](repeating: 0, count: count)
        var pending = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        _ = try Syscalls.waitForAny(&pending, until: .now + .seconds(2))
        let received = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, count, 0) }
        return String(decoding: buffer[0..<max(0, received)], as: UTF8.self)
    }
}

/// Moves a ring to the task that enables it; the test never touches it again meanwhile.
private struct HandedOver: @unchecked Sendable {
    let ring: CompletionRing
    init(_ ring: CompletionRing) { self.ring = ring }
}

/// A non-blocking listening socket on 127.0.0.1 at a port the kernel picks, with clients for it.
private struct LoopbackListener {
    let descriptor: Int32
    let address: SocketAddress

    init(backlog: Int32 = 16) throws {
        descriptor = try Syscalls.socket(family: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        try Syscalls.bind(descriptor, to: SocketAddress(address: .v4(0x7F00_0001), port: 0))
        try Syscalls.listen(descriptor, backlog: backlog, SocketAddress(address: .v4(0x7F00_0001), port: 0))
        address = try Syscalls.address(of: descriptor, peer: false)
    }

    /// A connected client socket (non-blocking), or an error when the handshake does not end in time.
    func connectClient(timeout: Duration = .seconds(2)) throws -> Int32 {
        let fd = try Syscalls.socket(family: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        do {
            if try !Syscalls.connect(fd, to: address) {
                guard try Syscalls.wait(fd, for: Int32(POLLOUT), until: .now + timeout), try Syscalls.pendingError(fd) == 0 else {
                    throw SystemCallError(call: "connect(\(address))", errno: ETIMEDOUT)
                }
            }
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Both ends of one loopback connection: (client, accepted server side).
    static func pair() throws -> (Int32, Int32) {
        let listener = try LoopbackListener()
        defer { listener.close() }
        let client = try listener.connectClient()
        var pending = [pollfd(fd: listener.descriptor, events: Int16(POLLIN), revents: 0)]
        _ = try Syscalls.waitForAny(&pending, until: .now + .seconds(2))
        guard let server = try Syscalls.accept(listener.descriptor) else {
            Glibc.close(client)
            throw SystemCallError(call: "accept4", errno: EAGAIN)
        }
        return (client, server)
    }

    func close() { Glibc.close(descriptor) }
}
