import Foundation
import Synchronization

/// A TCP relay on loopback between a client under test and an ``EtcdLab``, that misbehaves on
/// demand the way networks do: ``freeze()`` makes every open connection go silent (etcd's
/// bytes are dropped, the connection stays open: a watch a middlebox forgot), ``cut()`` closes
/// every open connection, and ``holdWatches(_:)`` makes new watch requests wait before they
/// reach etcd (so history can be compacted under them). New connections after a freeze or a
/// cut work normally.
///
/// One thread accepts, two per connection copy bytes (blocking sockets). ``stop()`` closes
/// everything and returns once every thread is done (within a few seconds).
public final class EtcdRelay: Sendable {
    public let port: UInt16
    public let upstreamPort: UInt16
    private let listener: Int32
    private let state = Mutex(State())
    private let threads = DispatchGroup()

    private struct State {
        var stopped = false
        var holdingWatches = false
        /// Watch requests waiting for `holdingWatches` to end.
        var waitingWatches = 0
        var nextID = 0
        /// Open connections: client and upstream descriptors.
        var connections: [Int: (client: Int32, upstream: Int32)] = [:]
        var frozen: Set<Int> = []
    }

    /// `http://127.0.0.1:PORT` of the relay.
    public var url: String { "http://127.0.0.1:\(port)" }

    public init(upstreamPort: UInt16) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServiceLabError.system("socket") }
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(fd, raw, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw ServiceLabError.system("bind/listen 127.0.0.1:0")
        }
        listener = fd
        port = UInt16(bigEndian: address.sin_port)
        threads.enter()
        Thread { [self] in
            acceptLoop()
            threads.leave()
        }.start()
    }

    /// Every connection open now stops passing etcd's bytes on (they are read and dropped).
    public func freeze() {
        state.withLock { $0.frozen.formUnion($0.connections.keys) }
    }

    /// Closes every connection open now, both sides.
    public func cut() {
        for pair in state.withLock({ Array($0.connections.values) }) {
            shutdown(pair.client, Int32(SHUT_RDWR))
            shutdown(pair.upstream, Int32(SHUT_RDWR))
        }
    }

    /// While true, a new connection whose request is a watch (`POST /v3/watch`) waits before it
    /// is passed to etcd.
    public func holdWatches(_ hold: Bool) {
        state.withLock { $0.holdingWatches = hold }
    }

    /// How many watch requests are being held now.
    public var waitingWatches: Int { state.withLock { $0.waitingWatches } }

    /// Closes the listener and every connection; waits for the threads (at most 10 s).
    public func stop() {
        let first = state.withLock { state in
            defer { state.stopped = true }
            return !state.stopped
        }
        guard first else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        cut()
        _ = threads.wait(timeout: .now() + 10)
        close(listener)
    }

    deinit { stop() }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return // shut down by stop()
            }
            if state.withLock({ $0.stopped }) {
                close(client)
                return
            }
            threads.enter()
            Thread { [self] in
                serve(client)
                threads.leave()
            }.start()
        }
    }

    /// Relays one connection until either side ends, then closes both.
    private func serve(_ client: Int32) {
        var first = [UInt8](repeating: 0, count: 65_536)
        let count = recv(client, &first, first.count, 0)
        guard count > 0 else {
            close(client)
            return
        }
        let isWatch = String(decoding: first[0..<min(count, 32)], as: UTF8.self).hasPrefix("POST /v3/watch")
        if isWatch {
            state.withLock { $0.waitingWatches += 1 }
            while state.withLock({ $0.holdingWatches && !$0.stopped }) {
                Thread.sleep(forTimeInterval: 0.01)
            }
            state.withLock { $0.waitingWatches -= 1 }
        }
        let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: upstreamPort)
        let connected = upstream >= 0 && withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            if upstream >= 0 { close(upstream) }
            close(client)
            return
        }
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            state.connections[state.nextID] = (client, upstream)
            return state.nextID
        }
        _ = Self.sendAll(upstream, first[0..<count])
        let back = DispatchSemaphore(value: 0)
        Thread { [self] in
            copy(from: upstream, to: client, id: id)
            back.signal()
        }.start()
        copy(from: client, to: upstream, id: nil)
        back.wait()
        state.withLock { state in
            state.connections[id] = nil
            state.frozen.remove(id)
        }
        close(client)
        close(upstream)
    }

    /// Copies until either side ends, dropping the bytes while connection `id` is frozen; then
    /// shuts both down so the other direction ends too.
    private func copy(from source: Int32, to destination: Int32, id: Int?) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(source, &buffer, buffer.count, 0)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            if let id, state.withLock({ $0.frozen.contains(id) }) { continue }
            if !Self.sendAll(destination, buffer[0..<count]) { break }
        }
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(destination, Int32(SHUT_RDWR))
    }

    private static func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 && errno == EINTR { continue }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}
