import CTurnoutLinux
import Glibc
import Synchronization
import TurnoutModel

/// One proxy worker: a thread with its own epoll, its own `SO_REUSEPORT` listeners, its own
/// relays, pipes and balancers. Connections never move between workers.
///
/// Created on the control thread with its listeners bound (so a bind error surfaces before
/// anything runs); `run()` then owns everything on the worker thread. The only things shared
/// with other threads are Sendable: the ``SnapshotCell`` it reads routes from (with each
/// service's ``ServiceLoad`` and ``ServiceOutliers``), the ``EndpointHealthCell`` of the active
/// checks, its ``WorkerCounters`` (atomics) and its ``WorkerSignal``; ``WorkerRoutes`` holds
/// what it knows for routing.
final class ProxyWorker {
    typealias EpollRelay = Relay<RelayDirection>

    private static let wakeToken = UInt64.max
    private static let listenerTokenBase = UInt64.max - 1024
    private static let sweepInterval: Duration = .milliseconds(100)

    let index: Int
    let configuration: ProxyConfiguration
    let counters: WorkerCounters
    private let log: @Sendable (String) -> Void
    let signal: WorkerSignal
    private let epoll: Int32
    private let listeners: [WorkerListener]
    private let routes: WorkerRoutes

    private var relays = SlotTable<EpollRelay>()
    private var pipes: WorkerPipes
    private var acceptPause = AcceptPause()
    /// Where copy-mode reads land (see ``RelayDirection``); one per worker, used by one relay at
    /// a time. Its size is the bulk threshold: a read that fills it switches to splicing.
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: ProxyWorker.copyLimit, alignment: 16)
    static let copyLimit = 16_384

    init(index: Int, configuration: ProxyConfiguration, cell: SnapshotCell, health: EndpointHealthCell,
         pipes: PipeAccount, log: @escaping @Sendable (String) -> Void) throws(SystemCallError) {
        self.index = index
        self.configuration = configuration
        self.log = log
        let counters = WorkerCounters()
        self.counters = counters
        routes = WorkerRoutes(index: index, configuration: configuration, counters: counters, cell: cell, health: health, log: log)
        self.pipes = WorkerPipes(worker: index, configuration: configuration, account: pipes, counters: counters, log: log)
        signal = try WorkerSignal()
        let epoll = try Syscalls.epollCreate()
        var listeners: [WorkerListener] = []
        do throws(SystemCallError) {
            try Syscalls.epollControl(epoll, .add, signal.wakeup.descriptor, events: CTurnoutLinux_EPOLLIN, token: Self.wakeToken)
            listeners = try WorkerListener.bindAll(configuration)
            for (position, listener) in listeners.enumerated() {
                try Syscalls.epollControl(epoll, .add, listener.descriptor, events: CTurnoutLinux_EPOLLIN | CTurnoutLinux_EPOLLET,
                                          token: Self.listenerTokenBase + UInt64(position))
            }
        } catch {
            for listener in listeners { close(listener.descriptor) }
            close(epoll)
            throw error
        }
        self.epoll = epoll
        self.listeners = listeners
    }

    deinit {
        for relay in relays.values { finish(relay, reset: false) }
        for listener in listeners { close(listener.descriptor) }
        close(epoll)
        scratch.deallocate()
    }

    // MARK: - the loop

    /// Runs until ``WorkerSignal/stop()``; the relays are closed when the worker goes away.
    func run() {
        let capacity = 256
        let events = UnsafeMutableBufferPointer<CTurnoutLinux_epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        var lastSweep = ContinuousClock.now
        while !signal.isStopping {
            let count: Int
            do {
                count = try Syscalls.epollWait(epoll, into: events, timeoutMilliseconds: 100)
            } catch {
                log("worker \(index): \(error); stopping")
                return
            }
            let now = ContinuousClock.now
            for event in events[0..<count] {
                handle(token: event.token, events: event.events, now: now)
            }
            if acceptPause.endIfDue(now) {
                for listener in listeners.indices { acceptAll(listener, now: now) }
            }
            if now - lastSweep >= Self.sweepInterval {
                sweep(now)
                lastSweep = now
            }
        }
    }

    private func handle(token: UInt64, events: UInt32, now: ContinuousClock.Instant) {
        if token == Self.wakeToken {
            signal.wakeup.drain()
            if signal.isClosingListeners && !acceptPause.isStopped { closeListeners() }
            return
        }
        if token >= Self.listenerTokenBase {
            acceptAll(Int(token - Self.listenerTokenBase), now: now)
            return
        }
        let upstream = token & 1 == 1
        guard let relay = relays[token >> 4], token == relay.token(upstream: upstream) else { return }
        // What the event says is ready, noted in every phase: a client's bytes and FIN may come
        // while the upstream connect is still running, and with edge-triggered epoll that is
        // said once. An error or hang-up makes both sides worth a try, so the failing call
        // reports it.
        let readable = events & (CTurnoutLinux_EPOLLIN | CTurnoutLinux_EPOLLRDHUP | CTurnoutLinux_EPOLLHUP | CTurnoutLinux_EPOLLERR) != 0
        let hungUp = events & (CTurnoutLinux_EPOLLRDHUP | CTurnoutLinux_EPOLLHUP | CTurnoutLinux_EPOLLERR) != 0
        let finQueued = events & CTurnoutLinux_EPOLLRDHUP != 0 && events & CTurnoutLinux_EPOLLERR == 0
        let writable = events & (CTurnoutLinux_EPOLLOUT | CTurnoutLinux_EPOLLHUP | CTurnoutLinux_EPOLLERR) != 0
        if upstream {
            if readable { relay.toClient.sourceReadable = true }
            if hungUp { relay.toClient.sourceHungUp = true }
            if finQueued { relay.toClient.sourceFinQueued = true }
            if writable { relay.toUpstream.destinationReady(at: now, counters: relay.counters, toUpstream: true) }
        } else {
            if readable { relay.toUpstream.sourceReadable = true }
            if hungUp { relay.toUpstream.sourceHungUp = true }
            if finQueued { relay.toUpstream.sourceFinQueued = true }
            if writable { relay.toClient.destinationReady(at: now, counters: relay.counters, toUpstream: false) }
        }
        if upstream, relay.phase == .connecting {
            finishConnect(relay, events: events, now: now)
        } else if relay.phase == .relaying {
            pump(relay, now: now)
        }
    }

    // MARK: - accepting

    private func acceptAll(_ index: Int, now: ContinuousClock.Instant) {
        guard !acceptPause.isPaused else { return }
        let listener = listeners[index]
        while true {
            let fd: Int32
            do throws(SystemCallError) {
                guard let accepted = try Syscalls.accept(listener.descriptor) else { return }
                fd = accepted
            } catch {
                if AcceptPause.isDescriptorShortage(error.errno) {
                    pauseAccepting(after: error, now: now)
                } else {
                    log("worker \(self.index): \(error)")
                }
                return
            }
            counters.accepted.wrappingAdd(1, ordering: .relaxed)
            admit(fd, from: listener, now: now)
        }
    }

    /// Shuts every listener down (``Syscalls/stopListening(_:)``), leaving it registered: its
    /// one edge-triggered hang-up finds ``acceptAll(_:now:)`` paused for good.
    private func closeListeners() {
        // What already waits is served here; what arrives in between moves or is reset with
        // the queue (see stopListening).
        for listener in listeners.indices { acceptAll(listener, now: .now) }
        acceptPause.stopForGood()
        for listener in listeners {
            do throws(SystemCallError) { try Syscalls.stopListening(listener.descriptor) } catch { log("worker \(index): \(error)") }
        }
        signal.confirmListenersClosed()
    }

    private func pauseAccepting(after error: SystemCallError, now: ContinuousClock.Instant) {
        if let line = acceptPause.start(after: error, now: now, pause: configuration.acceptPause, counters: counters) {
            log("worker \(index): \(line)")
        }
    }

    /// Decides where an accepted connection goes, and starts its first connect.
    private func admit(_ fd: Int32, from listener: WorkerListener, now: ContinuousClock.Instant) {
        guard let admission = routes.admit(fd, kind: listener.kind, family: listener.address.address.family, now: now) else { return }
        let relay = EpollRelay(id: relays.reserveID(), client: fd, admission: admission, direction: RelayDirection(), now: now)
        relays.insert(relay, id: relay.id)
        do throws(SystemCallError) {
            try Syscalls.epollControl(epoll, .add, fd, events: Self.relayEvents, token: relay.token(upstream: false))
        } catch {
            log("worker \(index): \(error)")
            finish(relay, reset: true)
            return
        }
        connectNext(relay, now: now)
    }

    private static let relayEvents = CTurnoutLinux_EPOLLIN | CTurnoutLinux_EPOLLOUT | CTurnoutLinux_EPOLLRDHUP | CTurnoutLinux_EPOLLET

    // MARK: - connecting

    /// Starts the next connect attempt, or gives up on the relay when none is left.
    private func connectNext(_ relay: EpollRelay, now: ContinuousClock.Instant) {
        while routes.nextAttempt(relay, now: now) {
            // The upstream side starts afresh: its first event says what it has.
            relay.toClient.sourceReadable = false
            relay.toClient.sourceHungUp = false
            relay.toClient.sourceFinQueued = false
            relay.toUpstream.destinationReady(at: now, counters: relay.counters, toUpstream: true)
            do throws(SystemCallError) {
                let fd = try Syscalls.socket(family: relay.target.socketFamily, type: Int32(SOCK_STREAM.rawValue))
                relay.upstream = fd
                try Syscalls.setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1, "TCP_NODELAY")
                if let source = relay.source, source.address.family == relay.target.address.family {
                    try Syscalls.bindSource(fd, source)
                }
                let connected = try Syscalls.connect(fd, to: relay.target)
                try Syscalls.epollControl(epoll, .add, fd, events: Self.relayEvents, token: relay.token(upstream: true))
                if connected { established(relay, now: now) }
                return
            } catch {
                attemptFailed(relay, errno: error.errno, now: now)
                if AcceptPause.isDescriptorShortage(error.errno) {
                    // No descriptor (or memory) for the upstream: this client is reset, and
                    // the ones behind it wait in the backlog rather than meet the same end.
                    pauseAccepting(after: error, now: now)
                    break
                }
            }
        }
        finish(relay, reset: true)
    }

    /// The upstream socket of the current attempt became ready: connected, or failed.
    private func finishConnect(_ relay: EpollRelay, events: UInt32, now: ContinuousClock.Instant) {
        // Writable without an error or hang-up is a finished handshake: SO_ERROR would say 0,
        // so it is read only when the event may carry a failure.
        if events & CTurnoutLinux_EPOLLOUT != 0 && events & (CTurnoutLinux_EPOLLERR | CTurnoutLinux_EPOLLHUP) == 0 {
            established(relay, now: now)
            return
        }
        let code = (try? Syscalls.pendingError(relay.upstream)) ?? EIO
        if code == 0 {
            // SO_ERROR is 0 while the handshake is still running too: only writable means
            // connected (a failed handshake reports its errno with EPOLLERR instead).
            guard events & CTurnoutLinux_EPOLLOUT != 0 else { return }
            established(relay, now: now)
        } else {
            attemptFailed(relay, errno: code, now: now)
            connectNext(relay, now: now)
        }
    }

    private func attemptFailed(_ relay: EpollRelay, errno code: Int32, now: ContinuousClock.Instant) {
        routes.attemptFailed(relay, errno: code, now: now)
        if relay.upstream >= 0 {
            close(relay.upstream)
            relay.upstream = -1
        }
    }

    private func established(_ relay: EpollRelay, now: ContinuousClock.Instant) {
        routes.established(relay, now: now)
        relay.phase = .relaying
        relay.lastActivity = now
        pump(relay, now: now)
    }

    // MARK: - relaying

    /// Moves whatever can move in both directions, passes ends of stream on, and finishes the
    /// relay when both directions are done or one broke.
    private func pump(_ relay: EpollRelay, now: ContinuousClock.Instant) {
        let up = move(&relay.toUpstream, from: relay.client, to: relay.upstream, counters: relay.counters, toUpstream: true,
                      closesAfter: relay.toClient.isFinished, now: now)
        let down = move(&relay.toClient, from: relay.upstream, to: relay.client, counters: relay.counters, toUpstream: false,
                        closesAfter: relay.toUpstream.isFinished, now: now)
        if up.broken || down.broken {
            finish(relay, reset: true)
            return
        }
        if up.moved || down.moved { relay.lastActivity = now }
        if relay.isFinished {
            finish(relay, reset: false)
        } else if relay.halfClosedSince == nil && (relay.toUpstream.isFinished || relay.toClient.isFinished) {
            relay.halfClosedSince = now
        }
    }

    /// One direction: source → destination until the source has nothing more or the
    /// destination takes nothing more, then the end of stream passed on after the last byte.
    /// Returns whether bytes moved and whether it broke. Makes no system call for a side that is
    /// known not to be ready (see ``RelayDirection``). `closesAfter`: the other direction is
    /// finished, so this one ending finishes the relay, and the `close(2)` that follows sends
    /// the FIN a `shutdown(SHUT_WR)` would (every byte of both sockets was read, so the close
    /// is a clean one, not a reset).
    private func move(_ direction: inout RelayDirection, from source: Int32, to destination: Int32,
                      counters: TrafficCounters?, toUpstream: Bool, closesAfter: Bool, now: ContinuousClock.Instant) -> (moved: Bool, broken: Bool) {
        var result = (moved: false, broken: false)
        if !direction.splicing || !direction.pending.isEmpty {
            result = copy(&direction, from: source, to: destination, counters: counters, toUpstream: toUpstream, bulk: false, now: now)
        }
        if direction.splicing && !result.broken && direction.pending.isEmpty {
            if direction.pipe == nil && !direction.sourceDone && direction.sourceReadable && direction.destinationWritable {
                direction.pipe = pipes.take()
            }
            // No pipe to be had (budget spent, none left in the kernel's allowance, no
            // descriptor): this round copies, and the next one asks for a pipe again.
            let next = direction.pipe == nil
                ? copy(&direction, from: source, to: destination, counters: counters, toUpstream: toUpstream, bulk: true, now: now)
                : direction.splice(from: source, to: destination, counters: counters, toUpstream: toUpstream, pipes: &pipes, now: now)
            result = (result.moved || next.moved, next.broken)
        }
        if result.broken { return result }
        if direction.sourceDone && direction.isEmpty && !direction.shutdownSent {
            // The end of stream goes on only after the last byte: the peer may answer only then.
            if !closesAfter {
                guard (try? Syscalls.shutdownWrite(destination)) != nil else { return (result.moved, true) }
            }
            direction.shutdownSent = true
        }
        return result
    }

    /// Copy mode: `recv` into the scratch buffer, `send` on. A short read means the source is
    /// drained of data (TCP copies all it has queued), so no read is made only to hear EAGAIN,
    /// except after a hang-up event: a FIN queued behind the data is only seen by reading on. A
    /// read that fills the buffer switches the direction to splicing, after its bytes went on.
    /// `bulk`: the direction splices already but has no pipe, so the copying goes on until the
    /// source is drained or the destination full.
    private func copy(_ direction: inout RelayDirection, from source: Int32, to destination: Int32,
                      counters: TrafficCounters?, toUpstream: Bool, bulk: Bool, now: ContinuousClock.Instant) -> (moved: Bool, broken: Bool) {
        var moved = false
        if !direction.pending.isEmpty {
            guard direction.destinationWritable else { return (false, false) }
            let taken: Int?
            do {
                taken = try direction.pending.withUnsafeBytes { bytes throws(SystemCallError) in try Syscalls.send(destination, bytes) }
            } catch {
                return (false, true)
            }
            guard let sent = taken else {
                direction.destinationFilled(at: now, counters: counters, toUpstream: toUpstream)
                return (false, false)
            }
            counters?.moved(sent, toUpstream: toUpstream)
            direction.pending.removeFirst(sent)
            moved = sent > 0
            guard direction.pending.isEmpty else {
                direction.destinationFilled(at: now, counters: counters, toUpstream: toUpstream)
                return (moved, false)
            }
        }
        while !direction.sourceDone && direction.sourceReadable && direction.destinationWritable && (bulk || !direction.splicing) {
            let received: Int?
            do throws(SystemCallError) {
                received = try Syscalls.receive(source, into: scratch)
            } catch {
                return (moved, true)
            }
            guard let received else {
                direction.sourceReadable = false
                break
            }
            guard received > 0 else {
                direction.sourceDone = true
                break
            }
            // The last bytes before an end of stream known to be queued: held back (MSG_MORE) for
            // the shutdown or close that follows at once, so they and the FIN go in one segment.
            // The peer then reads the end with the data and closes second, so the TIME_WAIT
            // stays here and not on the app's ports (a client that closes as soon as it has its
            // answer would otherwise beat the FIN and keep a TIME_WAIT for each connection).
            let last = received < scratch.count && direction.sourceFinQueued
            let sent: Int
            do throws(SystemCallError) {
                sent = try Syscalls.send(destination, UnsafeRawBufferPointer(rebasing: scratch[0..<received]), more: last) ?? 0
            } catch {
                return (moved, true)
            }
            if sent > 0 {
                counters?.moved(sent, toUpstream: toUpstream)
                moved = true
            }
            if sent < received {
                direction.pending = Array(scratch[sent..<received])
                direction.destinationFilled(at: now, counters: counters, toUpstream: toUpstream)
            }
            if received == scratch.count {
                direction.splicing = true
            } else if direction.sourceFinQueued {
                // Drained, and the end of stream is known to be queued behind these bytes.
                direction.sourceDone = true
            } else if !direction.sourceHungUp {
                // Short: the socket is drained. Unless it hung up: then its end of stream is
                // queued behind these bytes, and no event will announce it again.
                direction.sourceReadable = false
            }
        }
        return (moved, false)
    }

    // MARK: - timers and the end

    /// Connect timeouts, idle relays, half-closed relays past their bound.
    private func sweep(_ now: ContinuousClock.Instant) {
        for relay in relays.values {
            switch relay.phase {
            case .connecting:
                if now >= relay.connectDeadline {
                    attemptFailed(relay, errno: ETIMEDOUT, now: now)
                    connectNext(relay, now: now)
                }
            case .relaying:
                if relay.isPastTimeouts(at: now, configuration) { finish(relay, reset: false) }
            }
        }
    }

    /// Closes both sockets (the client's with a reset when the relay failed, so the client
    /// sees an error rather than a clean, empty answer), returns the pipes and releases the
    /// relay's counts.
    private func finish(_ relay: EpollRelay, reset: Bool) {
        guard relays.remove(relay.id) else { return }
        // Counts first, sockets last: whoever sees the connection end (a client, a test) then
        // sees counters and the circuit breaker that already account for it.
        if relay.toUpstream.isWaiting || relay.toClient.isWaiting {
            // A wait the end cut short (a client that never read, timed out) counts up to now;
            // the clock is read only then.
            let now = ContinuousClock.now
            relay.toUpstream.endWait(at: now, counters: relay.counters, toUpstream: true)
            relay.toClient.endWait(at: now, counters: relay.counters, toUpstream: false)
        }
        routes.released(relay)
        for direction in [relay.toUpstream, relay.toClient] {
            if let pipe = direction.pipe { pipes.give(pipe, empty: direction.buffered == 0) }
        }
        relay.closeSockets(reset: reset)
    }
}

/// How another thread stops a worker, or has it stop listening: flags and the ``Wakeup`` in
/// its epoll set (or ring).
///
/// Shared by the worker and its ``TransparentProxy``.
final class WorkerSignal: Sendable {
    let wakeup: Wakeup
    private let stopping = Atomic(false)
    private let closingListeners = Atomic(false)
    private let listenersClosed = Atomic(false)

    init() throws(SystemCallError) {
        wakeup = try Wakeup()
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    func stop() {
        stopping.store(true, ordering: .releasing)
        wakeup.signal()
    }

    /// Asks the worker to stop listening (``TransparentProxy/closeListeners()``).
    func closeListeners() {
        closingListeners.store(true, ordering: .releasing)
        wakeup.signal()
    }

    var isClosingListeners: Bool { closingListeners.load(ordering: .acquiring) }

    /// Set by the worker once its listeners are shut down.
    func confirmListenersClosed() { listenersClosed.store(true, ordering: .releasing) }

    var haveListenersClosed: Bool { listenersClosed.load(ordering: .acquiring) }
}
