import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// A table kept in etcd (``EtcdTableLayout``) as a live ``TableSource``: read with a range at
/// revision R, then followed with a watch from R+1, every change delivered as the whole table.
///
/// What it does when things go wrong, each time followed by a fresh range (a "re-read") and a
/// new watch, and the whole table delivered (the reconciler diffs, so that is always right):
/// * the watch is canceled because its start revision was compacted away, or the stream
///   breaks or ends: re-read at once;
/// * etcd cannot be reached: ``TableSourceEvent/unavailable(_:)`` once per outage, then
///   retries after 0.2 s, doubling to 2 s;
/// * with several members, a request that fails on one moves on to the next (see
///   ``EtcdClient``), and a check answered by another member than the watch's drops the watch:
///   a member that stops answering is left within a check interval and a request timeout;
/// * the watch goes silent while etcd still answers (a connection a middlebox forgot, a
///   stuck stream): etcd's progress notifications would say so only every 10 minutes by
///   default, so every ``checkInterval`` a cheap range (keys only, newest first, limit 1)
///   compares the key count and the newest modification revision with what the watch
///   delivered. The same mismatch on two checks in a row with no change delivered between
///   them (one check of grace for a watch that is merely behind) means the watch is stale.
///
/// Each watch response is applied to the key/value map and delivered once, after every
/// response already waiting was read (a burst costs one table, not one per key). The revision
/// reported is etcd's revision of the last response, as text. Runs on a thread of its own from
/// `start` to `stop`; `stop()` interrupts any request in flight (its ``Wakeup`` is every
/// request's interrupt), so it returns within a connect timeout at worst.
public final class EtcdTableSource: TableSource {
    public static let standardCheckInterval: Duration = .seconds(3)
    public static let firstRetryDelay: Duration = .milliseconds(200)
    public static let maximumRetryDelay: Duration = .seconds(2)

    public let client: EtcdClient
    public let layout: EtcdTableLayout
    /// How often the watch is checked against a range.
    public let checkInterval: Duration
    public var location: String { "etcd:\(client.url)" }
    private let shared: SourceThreadControl

    public init(client: EtcdClient, layout: EtcdTableLayout = .standard,
                checkInterval: Duration = EtcdTableSource.standardCheckInterval) throws(SystemCallError) {
        self.client = client
        self.layout = layout
        self.checkInterval = checkInterval
        shared = try SourceThreadControl()
    }

    deinit { stop() }

    public func start(_ deliver: @escaping @Sendable (TableSourceEvent) -> Void) throws(SystemCallError) {
        var client = client
        client.interrupt = shared.wakeup.descriptor
        let watcher = Watcher(client: client, layout: layout, checkInterval: checkInterval, shared: shared, deliver: deliver)
        shared.adopt(try JoinableThread(handingOver: watcher) { $0.run() })
    }

    public func refresh() { shared.refresh() }

    public func stop() { shared.stop() }

    /// The watching thread's state.
    private final class Watcher {
        let client: EtcdClient
        let layout: EtcdTableLayout
        let checkInterval: Duration
        let shared: SourceThreadControl
        let deliver: @Sendable (TableSourceEvent) -> Void

        /// Every key under the prefix as the watch left it.
        var entries: [String: EtcdClient.KeyValue] = [:]
        /// The revision `entries` stands at.
        var revision: Int64 = 0
        var watch: EtcdWatch?
        /// When to read again while there is no watch; nil: now.
        var retryAt: ContinuousClock.Instant?
        var retryDelay = EtcdTableSource.firstRetryDelay
        var reportedUnavailable = false
        var nextCheck = ContinuousClock.now
        /// The last check found the map and etcd apart.
        var mismatchAtLastCheck = false
        /// A watch response changed the map since the last check.
        var changedSinceCheck = false

        init(client: EtcdClient, layout: EtcdTableLayout, checkInterval: Duration, shared: SourceThreadControl,
             deliver: @escaping @Sendable (TableSourceEvent) -> Void) {
            self.client = client
            self.layout = layout
            self.checkInterval = checkInterval
            self.shared = shared
            self.deliver = deliver
        }

        func run() {
            while true {
                // Drained before the flags are read: a request made after this sees only a
                // wake-up that comes later, so it is not interrupted by one already handled.
                shared.wakeup.drain()
                let (stopping, refreshing) = shared.take()
                if stopping { return }
                if refreshing {
                    watch = nil
                    retryAt = nil
                }
                if watch == nil, retryAt.map({ ContinuousClock.now >= $0 }) ?? true {
                    reread()
                }
                let deadline = watch == nil ? retryAt ?? .now : nextCheck
                var descriptors = [pollfd(fd: shared.wakeup.descriptor, events: Int16(POLLIN), revents: 0),
                                   pollfd(fd: watch?.fileDescriptor ?? -1, events: Int16(POLLIN), revents: 0)]
                let ready = descriptors.withUnsafeMutableBufferPointer { poll($0.baseAddress, 2, deadline.pollMilliseconds) }
                if ready < 0 && errno != EINTR {
                    // Only a kernel out of memory fails poll: wait a retry out rather than spin.
                    usleep(useconds_t(EtcdTableSource.maximumRetryDelay / .microseconds(1)))
                }
                if descriptors[0].revents != 0 { continue }
                if descriptors[1].revents != 0 { receive() }
                if watch != nil && ContinuousClock.now >= nextCheck { check() }
            }
        }

        /// Reads every key with a range, delivers the table and opens a watch from the next
        /// revision; on failure reports the outage once and schedules a retry.
        private func reread() {
            watch = nil
            do throws(EtcdError) {
                let range = try client.range(prefix: layout.prefix)
                let opened = try client.watch(prefix: layout.prefix, from: range.revision + 1)
                entries = Dictionary(range.keyValues.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
                revision = range.revision
                watch = opened
                retryAt = nil
                retryDelay = EtcdTableSource.firstRetryDelay
                reportedUnavailable = false
                mismatchAtLastCheck = false
                changedSinceCheck = false
                nextCheck = .now + checkInterval
                deliverTable()
                // What came with the response head (the created message, perhaps already a
                // cancel) is buffered, not in the socket: poll would not report it.
                receive()
            } catch {
                // Interrupted by stop() or refresh(): the loop handles the request first.
                guard !error.isInterrupted else { return }
                fail("\(error)")
            }
        }

        /// Applies the watch responses that arrived, then delivers the table once if they
        /// changed it. A canceled or broken watch is dropped: the loop re-reads.
        private func receive() {
            guard let current = watch else { return }
            var changed = false
            do throws(EtcdError) {
                for response in try current.receive() {
                    if response.canceled {
                        // Compacted: the history the watch needed is gone, a re-read is the only
                        // way back, at once. Any other cancel (etcd's reason) is an outage.
                        watch = nil
                        if response.compactRevision == nil {
                            fail("etcd canceled the watch: \(response.cancelReason ?? "no reason given")")
                        }
                        return
                    }
                    for event in response.events {
                        switch event {
                        case .put(let pair): entries[pair.key] = pair
                        case .delete(let key, _): entries[key] = nil
                        }
                        changed = true
                    }
                    revision = max(revision, response.revision)
                }
            } catch {
                // The stream broke or ended (etcd restarted, the connection reset): re-read now;
                // a re-read that fails reports the outage.
                watch = nil
                return
            }
            if changed {
                changedSinceCheck = true
                deliverTable()
            }
        }

        /// Compares the map with a cheap range; two mismatches in a row with no change between
        /// them mean the watch went stale, and it is replaced by a re-read.
        private func check() {
            nextCheck = .now + checkInterval
            do throws(EtcdError) {
                let probe = try client.range(prefix: layout.prefix, keysOnly: true, limit: 1, newestFirst: true)
                let newest = probe.keyValues.first?.modRevision ?? 0
                let mismatch = probe.count != Int64(entries.count) || newest != (entries.values.map(\.modRevision).max() ?? 0)
                if mismatch && mismatchAtLastCheck && !changedSinceCheck {
                    watch = nil
                    retryAt = nil
                }
                // The watch's member did not answer the probe (another did): it is down or
                // cut off from its cluster, and its watch would only go quiet. Re-read now.
                if let current = watch, current.server != probe.answeredBy {
                    watch = nil
                    retryAt = nil
                }
                mismatchAtLastCheck = mismatch
                changedSinceCheck = false
            } catch {
                guard !error.isInterrupted else { return }
                // etcd stopped answering while the watch looked open (etcd paused, a
                // partition): drop it; the re-read reports the outage.
                watch = nil
                retryAt = nil
            }
        }

        /// Reports an outage (once until the next good read) and schedules the next read.
        private func fail(_ reason: String) {
            if !reportedUnavailable {
                reportedUnavailable = true
                deliver(.unavailable(reason))
            }
            retryAt = .now + retryDelay
            retryDelay = min(retryDelay * 2, EtcdTableSource.maximumRetryDelay)
        }

        private func deliverTable() {
            let text = "\(revision)"
            do throws(TableError) {
                deliver(.table(try layout.table(from: entries.mapValues(\.value)), revision: text))
            } catch {
                deliver(.invalid(error, revision: text))
            }
        }
    }
}
