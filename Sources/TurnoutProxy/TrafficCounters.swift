import Glibc
import Synchronization

/// Why an upstream connect failed, as counted and exported (`reason` label).
public enum ConnectFailure: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// ECONNREFUSED: nothing listens, or a firewall rejected it.
    case refused
    /// No handshake before the connect timeout.
    case timeout
    /// ENETUNREACH, EHOSTUNREACH: no route.
    case unreachable
    /// Any other errno.
    case other

    public var description: String { ["refused", "timeout", "unreachable", "other"][rawValue] }

    init(errno code: Int32) {
        switch code {
        case ECONNREFUSED: self = .refused
        case ETIMEDOUT: self = .timeout
        case ENETUNREACH, EHOSTUNREACH: self = .unreachable
        default: self = .other
        }
    }
}

/// The traffic counters of one upstream (a route's endpoint, or a passthrough destination
/// group) as seen by ONE worker: written by that worker's thread only, read by whoever scrapes.
///
/// Lock-free on the hot path: every field is an `Atomic` updated with relaxed ordering (single
/// writer, so no contention; a scrape may see one field a little ahead of another, never a torn
/// value). Sums over workers are made at scrape time (``ProxyStatistics``).
public final class TrafficCounters: Sendable {
    /// Upper bounds of the connect-latency histogram buckets, in microseconds (the `+Inf` bucket
    /// is implied): 100 µs to 5 s, roughly ×2.5 apart.
    public static let latencyBucketBounds: [UInt64] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000]

    let connections = Atomic<UInt64>(0)
    let active = Atomic<Int64>(0)
    let bytesToUpstream = Atomic<UInt64>(0)
    let bytesToClient = Atomic<UInt64>(0)
    let failures: InlineArray<4, Atomic<UInt64>> = InlineArray { _ in Atomic(0) }
    /// One per bound in `latencyBucketBounds`, then `+Inf`; not cumulative (made so when read).
    let latencyBuckets: InlineArray<14, Atomic<UInt64>> = InlineArray { _ in Atomic(0) }
    let latencySumMicroseconds = Atomic<UInt64>(0)
    /// Times this endpoint was ejected by outlier detection after a connect of this worker.
    let ejections = Atomic<UInt64>(0)
    /// Times a relay found the upstream's socket full and waited for room; see ``TrafficCount``.
    let upstreamFullWaits = Atomic<UInt64>(0)
    /// Times a relay found the client's socket full and waited for room.
    let clientFullWaits = Atomic<UInt64>(0)
    /// How long those waits lasted, added when each ended.
    let upstreamPausedNanoseconds = Atomic<UInt64>(0)
    let clientPausedNanoseconds = Atomic<UInt64>(0)

    init() {}

    func connected(after latency: Duration) {
        connections.wrappingAdd(1, ordering: .relaxed)
        active.wrappingAdd(1, ordering: .relaxed)
        let micros = UInt64(max(0, latency / .microseconds(1)))
        latencySumMicroseconds.wrappingAdd(micros, ordering: .relaxed)
        let bucket = Self.latencyBucketBounds.firstIndex { micros <= $0 } ?? Self.latencyBucketBounds.count
        latencyBuckets[bucket].wrappingAdd(1, ordering: .relaxed)
    }

    func closed() { active.wrappingSubtract(1, ordering: .relaxed) }

    func failed(_ reason: ConnectFailure) { failures[reason.rawValue].wrappingAdd(1, ordering: .relaxed) }

    func moved(_ count: Int, toUpstream: Bool) {
        if toUpstream {
            bytesToUpstream.wrappingAdd(UInt64(count), ordering: .relaxed)
        } else {
            bytesToClient.wrappingAdd(UInt64(count), ordering: .relaxed)
        }
    }

    /// A relay's destination took less than was ready for it (a full socket), and the relay
    /// waits for room: counted once per wait, when it starts.
    func destinationFull(toUpstream: Bool) {
        if toUpstream {
            upstreamFullWaits.wrappingAdd(1, ordering: .relaxed)
        } else {
            clientFullWaits.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// A wait counted by ``destinationFull(toUpstream:)`` ended after `length`.
    func paused(_ length: Duration, toUpstream: Bool) {
        let nanoseconds = UInt64(max(0, length / .nanoseconds(1)))
        if toUpstream {
            upstreamPausedNanoseconds.wrappingAdd(nanoseconds, ordering: .relaxed)
        } else {
            clientPausedNanoseconds.wrappingAdd(nanoseconds, ordering: .relaxed)
        }
    }

    /// The current values, as a plain value.
    public func read() -> TrafficCount {
        var count = TrafficCount()
        count.connections = connections.load(ordering: .relaxed)
        count.active = active.load(ordering: .relaxed)
        count.bytesToUpstream = bytesToUpstream.load(ordering: .relaxed)
        count.bytesToClient = bytesToClient.load(ordering: .relaxed)
        for reason in ConnectFailure.allCases { count.failures[reason.rawValue] = failures[reason.rawValue].load(ordering: .relaxed) }
        for index in 0..<14 { count.latencyBuckets[index] = latencyBuckets[index].load(ordering: .relaxed) }
        count.latencySumMicroseconds = latencySumMicroseconds.load(ordering: .relaxed)
        count.ejections = ejections.load(ordering: .relaxed)
        count.upstreamFullWaits = upstreamFullWaits.load(ordering: .relaxed)
        count.clientFullWaits = clientFullWaits.load(ordering: .relaxed)
        count.upstreamPausedNanoseconds = upstreamPausedNanoseconds.load(ordering: .relaxed)
        count.clientPausedNanoseconds = clientPausedNanoseconds.load(ordering: .relaxed)
        return count
    }
}

/// A plain copy of ``TrafficCounters``, summable across workers.
public struct TrafficCount: Sendable, Hashable, Codable {
    public var connections: UInt64 = 0
    /// Connections open now (connected upstream, not yet closed).
    public var active: Int64 = 0
    public var bytesToUpstream: UInt64 = 0
    public var bytesToClient: UInt64 = 0
    /// Indexed by ``ConnectFailure/rawValue``.
    public var failures: [UInt64] = [0, 0, 0, 0]
    /// Per bucket of ``TrafficCounters/latencyBucketBounds`` then `+Inf`; not cumulative.
    public var latencyBuckets: [UInt64] = Array(repeating: 0, count: 14)
    public var latencySumMicroseconds: UInt64 = 0
    /// Outlier ejections of this endpoint.
    public var ejections: UInt64 = 0
    /// Flow control: times a relay found the upstream's socket full (it took less than the
    /// client had sent) and stopped reading the client until the upstream took it. A slow
    /// reader upstream, or a client that sends faster than the upstream reads.
    public var upstreamFullWaits: UInt64 = 0
    /// Flow control: times a relay found the client's socket full and stopped reading the
    /// upstream until the client took what waited: a client that reads slower than the
    /// upstream answers.
    public var clientFullWaits: UInt64 = 0
    /// How long the waits of ``upstreamFullWaits`` lasted in all, counted as each ended (a
    /// wait still going on is not in it yet).
    public var upstreamPausedNanoseconds: UInt64 = 0
    /// How long the waits of ``clientFullWaits`` lasted in all, counted as each ended.
    public var clientPausedNanoseconds: UInt64 = 0

    public init() {}

    public static func + (lhs: TrafficCount, rhs: TrafficCount) -> TrafficCount {
        var sum = lhs
        sum.connections += rhs.connections
        sum.active += rhs.active
        sum.bytesToUpstream += rhs.bytesToUpstream
        sum.bytesToClient += rhs.bytesToClient
        for index in sum.failures.indices { sum.failures[index] += rhs.failures[index] }
        for index in sum.latencyBuckets.indices { sum.latencyBuckets[index] += rhs.latencyBuckets[index] }
        sum.latencySumMicroseconds += rhs.latencySumMicroseconds
        sum.ejections += rhs.ejections
        sum.upstreamFullWaits += rhs.upstreamFullWaits
        sum.clientFullWaits += rhs.clientFullWaits
        sum.upstreamPausedNanoseconds += rhs.upstreamPausedNanoseconds
        sum.clientPausedNanoseconds += rhs.clientPausedNanoseconds
        return sum
    }
}
