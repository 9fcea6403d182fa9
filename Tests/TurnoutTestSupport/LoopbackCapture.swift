import Foundation
import Glibc
import Synchronization

/// Records the IPv4 TCP segments a namespace's loopback delivers (an `AF_PACKET` socket), so a
/// test can check what went on the wire: which segment carried the FIN, for one.
///
/// Make it before the traffic: it sees only what comes after. `segments(within:)` reads what
/// was captured so far. Sendable: the socket is only read with `recvfrom`, which the kernel
/// serializes; `close()` (or deinit) releases it, once.
public final class LoopbackCapture: Sendable {
    /// One TCP segment as it was delivered.
    public struct Segment: Sendable, Hashable, CustomStringConvertible {
        public let sourcePort: UInt16
        public let destinationPort: UInt16
        /// Bytes of data it carried.
        public let payload: Int
        public let fin: Bool
        public let syn: Bool
        public let reset: Bool

        public var description: String {
            "\(sourcePort) → \(destinationPort) \(payload) bytes" + (syn ? " SYN" : "") + (fin ? " FIN" : "") + (reset ? " RST" : "")
        }
    }

    private let descriptor: Int32
    /// Set by the first `close()`: the descriptor's number may be reused by another test's
    /// socket afterwards, so it is closed once only.
    private let isClosed = Atomic(false)

    /// Opens the capture inside the namespace at `namespacePath` (`/run/netns/NAME`).
    public init(namespacePath: String) throws {
        descriptor = try NamespaceThread.run(in: namespacePath, timeLimit: .seconds(10)) { () throws -> Int32 in
            // SOCK_DGRAM: the link header is stripped, so every frame starts with its IP header.
            let etherTypeIPv4 = UInt16(0x0800)
            let fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                            Int32(etherTypeIPv4.bigEndian))
            guard fd >= 0 else { throw ServiceLabError.system("socket(AF_PACKET)") }
            var size: Int32 = 4 << 20
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
    }

    deinit { close() }

    /// Closes the capture; calling it again (or the deinit after it) does nothing.
    public func close() {
        guard !isClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = Glibc.close(descriptor)
    }

    /// The segments captured so far, reading until nothing came for `quiet` or `limit` passed.
    public func segments(quiet: Duration = .milliseconds(200), within limit: Duration = .seconds(5)) -> [Segment] {
        let deadline = ContinuousClock.now + limit
        var lastArrival = ContinuousClock.now
        var frame = [UInt8](repeating: 0, count: 65_536)
        var found: [Segment] = []
        while ContinuousClock.now < deadline && ContinuousClock.now - lastArrival < quiet {
            // sockaddr_ll (<netpacket/packet.h>): sll_pkttype is the byte at offset 10.
            var from = [UInt8](repeating: 0, count: 32)
            var length = socklen_t(from.count)
            let count = frame.withUnsafeMutableBytes { bytes in
                from.withUnsafeMutableBytes { address in
                    recvfrom(descriptor, bytes.baseAddress, bytes.count, 0,
                             address.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
                }
            }
            guard count > 0 else {
                var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                _ = poll(&entry, 1, 20)
                continue
            }
            lastArrival = .now
            // Loopback shows every packet twice, leaving (PACKET_OUTGOING) and arriving
            // (PACKET_HOST, 0): keep the arrivals.
            guard from[10] == 0, let segment = Self.parse(frame[0..<count]) else { continue }
            found.append(segment)
        }
        return found
    }

    /// An IPv4 packet's TCP segment, or nil for anything else.
    static func parse(_ packet: ArraySlice<UInt8>) -> Segment? {
        let bytes = Array(packet)
        guard bytes.count >= 20, bytes[0] >> 4 == 4, bytes[9] == 6 else { return nil }
        let ipHeader = Int(bytes[0] & 0x0F) * 4
        let total = Int(bytes[2]) << 8 | Int(bytes[3])
        guard bytes.count >= ipHeader + 20, total <= bytes.count else { return nil }
        let tcp = bytes[ipHeader...]
        let start = tcp.startIndex
        let tcpHeader = Int(tcp[start + 12] >> 4) * 4
        let flags = tcp[start + 13]
        return Segment(sourcePort: UInt16(tcp[start]) << 8 | UInt16(tcp[start + 1]),
                       destinationPort: UInt16(tcp[start + 2]) << 8 | UInt16(tcp[start + 3]),
                       payload: total - ipHeader - tcpHeader,
                       fin: flags & 0x01 != 0, syn: flags & 0x02 != 0, reset: flags & 0x04 != 0)
    }
}
