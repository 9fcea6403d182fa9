import CTurnoutUring
import Glibc
import TurnoutModel

/// One proxy worker on io_uring: a thread with its own ring, its own `SO_REUSEPORT` listeners,
/// its own relays, pipes and balancers. Connections never move between workers.
///
/// Where the epoll worker (``ProxyWorker``) asks the kernel what is ready and then makes a
/// `recv` and a `send` per message, this one keeps a multishot accept on each listener and a
/// multishot receive on each relay's sockets, queues connects (with linked timeouts) and polls
/// on the ring, and hands all of a loop's requests to the kernel and reaps all its completions
/// in one `io_uring_enter`: no readiness wait and no read per message. What arrived goes on
/// with a send on the ring, straight from its buffer; only what waits behind a send is copied
/// (see ``RingDirection``). Bulk directions splice as the epoll worker does.
/// Routing, attempts and their books are ``WorkerRoutes``', as for the epoll worker.
///
/// Created on the control thread with its listeners bound and its ring made disabled (so a
/// bind or io_uring error surfaces before anything runs); `run()` enables the ring on the worker
/// thread, which owns everything from then on. What it shares with other threads is Sendable:
/// the snapshot and health cells (through ``WorkerRoutes``), its ``WorkerCounters`` and its
/// ``WorkerSignal``.
final class RingWorker {
    typealias RingRelay = Relay<RingDirection>

    /// What a relay's request was, in the low bits of its token: the kind times two, plus one
    /// for the direction towards the client.
    private enum Request: UInt64 {
        case connect = 0
        case receive = 1
        case pollSource = 2
        case pollDestination = 3
        case send = 4
    }

    /// Token UInt64.max is the ring's own; the wakeup and listeners sit just below it, relay
    /// tokens (an id below 2^59, shifted by 4) far below.
    private static let wakeToken = UInt64.max - 1
    private static let sweepToken = UInt64.max - 2
    private static let listenerTokenBase = UInt64.max - 1024
    private static let sweepInterval: Duration = .milliseconds(100)
    /// The size of a provided receive buffer (``ProxyConfiguration/receiveBuffers`` of them per
    /// worker): a receive that fills one is a bulk stream, which moves to splicing (the epoll
    /// worker's threshold is the same 16 KiB). Idle relays hold no buffer.
    static let bufferSize = 16_384
    /// Full buffers (1 MiB) a bulk direction refused a pipe copies before it asks again.
    static let spliceBackoff = 64

    let index: Int
    let configuration: ProxyConfiguration
    let counters: WorkerCounters
    let signal: WorkerSignal
    private let log: @Sendable (String) -> Void
    private let ring: CompletionRing
    private let listeners: [WorkerListener]
    private let routes: WorkerRoutes

    private var relays = SlotTable<RingRelay>()
    private var pipes: WorkerPipes
    /// Whether each listener's multishot accept is armed (one ends on an error such as EMFILE).
    private var accepting: [Bool]
    private var acceptPause = AcceptPause()
    private var loggedBufferShortage = false
    /// Relays whose state changed in this batch of completions: pumped once after it, knowing
    /// every completion of the batch (an end of stream that came with the last bytes sends them
    /// with MSG_MORE, then the FIN).
    private var touched: [RingRelay] = []
    /// Relays with a direction whose receive ran out of buffers, waiting for some to return.
    private var starved: [RingRelay] = []
    /// Provided buffers the worker holds: received in this batch, not yet sent and given back.
    private var heldBuffers = 0
    /// The sweep's timeout request completed in this batch.
    private var sweepDue = false
    /// The time of the current batch of completions, read once per batch.
    private var now = ContinuousClock.now

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
        ring = try CompletionRing(entries: 256, buffers: UInt32(clamping: configuration.receiveBuffers), bufferSize: Self.bufferSize)
        listeners = try WorkerListener.bindAll(configuration)
        accepting = Array(repeating: false, count: listeners.count)
    }

    deinit {
        // Possibly on another thread than the ring's (a worker whose thread never started):
        // nothing here touches the ring, whose own teardown cancels what is armed.
        for relay in relays.values {
            relays.remove(relay.id)
            routes.released(relay)
            returnPipes(relay)
            relay.closeSockets(reset: false)
        }
        for listener in listeners { close(listener.descriptor) }
    }

    // MARK: - the loop

    /// Runs until ``WorkerSignal/stop()``; the relays are closed when the worker goes away.
    func run() {
        do throws(SystemCallError) {
            try ring.enable()
            try ring.poll(signal.wakeup.descriptor, events: CTurnoutUring_POLLIN, token: Self.wakeToken)
            // The sweep's tick is a timeout request, armed once per period: a wait with a
            // timeout would arm and cancel a kernel timer at every loop.
            try ring.timeout(after: Self.sweepInterval, token: Self.sweepToken)
            for listener in listeners.indices { try armAccept(listener) }
        } catch {
            log("worker \(index): \(error); stopping")
            return
        }
        while !signal.isStopping {
            var clockRead = false
            sweepDue = false
            do throws(SystemCallError) {
                try ring.wait(timeout: nil) { completion in
                    if !clockRead {
                        now = .now
                        clockRead = true
                    }
                    handle(completion)
                }
            } catch {
                log("worker \(index): \(error); stopping")
                return
            }
            if !clockRead { now = .now }
            for relay in touched { pump(relay) }
            touched.removeAll(keepingCapacity: true)
            if !starved.isEmpty && heldBuffers < configuration.receiveBuffers { feedStarved() }
            if acceptPause.endIfDue(now) {
                for listener in listeners.indices where !accepting[listener] { try? armAccept(listener) }
            }
            if sweepDue {
                sweep()
                do throws(SystemCallError) {
                    try ring.timeout(after: Self.sweepInterval, token: Self.sweepToken)
                } catch {
                    log("worker \(index): \(error); stopping")
                    return
                }
            }
        }
    }

    private func handle(_ completion: CompletionRing.Completion) {
        let token = completion.token
        if token == Self.wakeToken {
            signal.wakeup.drain()
            if !signal.isStopping { try? ring.poll(signal.wakeup.descriptor, events: CTurnoutUring_POLLIN, token: Self.wakeToken) }
            if signal.isClosingListeners && !acceptPause.isStopped { closeListeners() }
            return
        }
        if token == Self.sweepToken {
            sweepDue = true
            return
        }
        if token >= Self.listenerTokenBase {
            accepted(Int(token - Self.listenerTokenBase), completion)
            return
        }
        if completion.buffer != nil { heldBuffers += 1 }
        guard let relay = relays[token >> 4] else {
            // A late completion of a relay that ended (its requests were cancelled): only its
            // buffer matters.
            if let buffer = completion.buffer { giveBack(buffer) }
            return
        }
        let toClient = token & 1 == 1
        let request = Request(rawValue: (token & 0xF) >> 1)
        switch request {
        case .connect:
            connected(relay, result: completion.result)
        case .receive:
            received(relay, toClient: toClient, completion)
        case .send:
            sent(relay, toClient: toClient, result: completion.result)
        case .pollSource:
            polledSource(relay, toClient: toClient, result: completion.result)
        case .pollDestination:
            polledDestination(relay, toClient: toClient, result: completion.result, more: completion.more)
        case nil:
            break
        }
    }

    private func token(_ relay: RingRelay, _ request: Request, toClient: Bool = false) -> UInt64 {
        relay.id << 4 | request.rawValue << 1 | (toClient ? 1 : 0)
    }

    /// Marks `relay` to be pumped after the batch (once).
    private func touch(_ relay: RingRelay) {
        guard !relay.touched else { return }
        relay.touched = true
        touched.append(relay)
    }

    // MARK: - accepting

    private func armAccept(_ listener: Int) throws(SystemCallError) {
        try ring.accept(listeners[listener].descriptor, token: Self.listenerTokenBase + UInt64(listener))
        accepting[listener] = true
    }

    private func accepted(_ listener: Int, _ completion: CompletionRing.Completion) {
        if !completion.more { accepting[listener] = false }
        let result = completion.result
        // A listener shut down ends its multishot accept (EINVAL): nothing to log or arm again.
        // A connection it still delivered is served.
        if acceptPause.isStopped && result < 0 { return }
        if result >= 0 {
            counters.accepted.wrappingAdd(1, ordering: .relaxed)
            admit(result, from: listeners[listener])
        } else if AcceptPause.isDescriptorShortage(-result) {
            // The multishot accept ended; it is armed again after the pause.
            pauseAccepting(after: SystemCallError(call: "accept4", errno: -result))
        } else if result != -ECANCELED {
            log("worker \(index): \(SystemCallError(call: "accept4", errno: -result))")
            // Armed again after a pause, not at once: an error that repeats would spin.
            acceptPause.back(off: configuration.acceptPause, now: now)
        }
        if !accepting[listener] && !acceptPause.isPaused {
            do throws(SystemCallError) { try armAccept(listener) } catch { log("worker \(index): \(error)") }
        }
    }

    /// Shuts every listener down (``Syscalls/stopListening(_:)``); their multishot accepts end
    /// with EINVAL, which ``accepted(_:_:)`` then takes quietly, and none is armed again.
    private func closeListeners() {
        acceptPause.stopForGood()
        for listener in listeners {
            do throws(SystemCallError) { try Syscalls.stopListening(listener.descriptor) } catch { log("worker \(index): \(error)") }
        }
        signal.confirmListenersClosed()
    }

    /// Stops accepting for a while: armed multishot accepts are cancelled (an accept that
    /// failed has ended already) and armed again once the pause is over.
    private func pauseAccepting(after error: SystemCallError) {
        let wasPaused = acceptPause.isPaused
        if let line = acceptPause.start(after: error, now: now, pause: configuration.acceptPause, counters: counters) {
            log("worker \(index): \(line)")
        }
        guard !wasPaused else { return }
        for listener in listeners.indices where accepting[listener] {
            do throws(SystemCallError) { try ring.cancel(listeners[listener].descriptor) } catch { log("worker \(index): \(error)") }
        }
    }

    /// Decides where an accepted connection goes, and starts its first connect.
    private func admit(_ fd: Int32, from listener: WorkerListener) {
        guard let admission = routes.admit(fd, kind: listener.kind, family: listener.address.address.family, now: now) else { return }
        let relay = RingRelay(id: relays.reserveID(), client: fd, admission: admission, direction: RingDirection(), now: now)
        relays.insert(relay, id: relay.id)
        connectNext(relay)
    }

    // MARK: - connecting

    /// Starts the next connect attempt (its timeout linked to it on the ring), or gives up on
    /// the relay when none is left.
    private func connectNext(_ relay: RingRelay) {
        while routes.nextAttempt(relay, now: now) {
            do throws(SystemCallError) {
                let fd = try Syscalls.socket(family: relay.target.socketFamily, type: Int32(SOCK_STREAM.rawValue))
                relay.upstream = fd
                try Syscalls.setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1, "TCP_NODELAY")
                if let source = relay.source, source.address.family == relay.target.address.family {
                    try Syscalls.bindSource(fd, source)
                }
                try ring.connect(fd, to: relay.target, timeout: configuration.connectTimeout, token: token(relay, .connect))
                return
            } catch {
                attemptFailed(relay, errno: error.errno)
                if AcceptPause.isDescriptorShortage(error.errno) {
                    // No descriptor (or memory) for the upstream: this client is reset, and
                    // the ones behind it wait in the backlog rather than meet the same end.
                    pauseAccepting(after: error)
                    break
                }
            }
        }
        finish(relay, reset: true)
    }

    private func connected(_ relay: RingRelay, result: Int32) {
        guard relay.phase == .connecting else { return }
        if result == 0 {
            routes.established(relay, now: now)
            relay.phase = .relaying
            relay.lastActivity = now
            touch(relay)
        } else {
            // ECANCELED: the linked timeout ended it.
            attemptFailed(relay, errno: result == -ECANCELED ? ETIMEDOUT : -result)
            connectNext(relay)
        }
    }

    /// The attempt's socket had no request but its connect, which completed: closed at once.
    private func attemptFailed(_ relay: RingRelay, errno code: Int32) {
        routes.attemptFailed(relay, errno: code, now: now)
        if relay.upstream >= 0 {
            close(relay.upstream)
            relay.upstream = -1
        }
    }

    // MARK: - completions of a relay

    private func received(_ relay: RingRelay, toClient: Bool, _ completion: CompletionRing.Completion) {
        var broken = false
        var cancel = false
        let full = Int(completion.result) == ring.bufferSize
        update(relay, toClient: toClient) { direction in
            if !completion.more { direction.receiving = false }
            let result = completion.result
            if result > 0, let buffer = completion.buffer {
                direction.queue.append(.init(buffer: buffer, count: Int(result)))
                if full {
                    if direction.spliceBackoff > 0 { direction.spliceBackoff -= 1 } else { direction.bulk = true }
                }
                if direction.bulk && !direction.pausing {
                    direction.pausing = true
                    cancel = direction.receiving
                }
            } else if result == 0 {
                direction.sourceDone = true
            } else if result == -ENOBUFS {
                direction.starved = true
            } else if result != -ECANCELED {
                broken = true
            }
        }
        if broken {
            finish(relay, reset: true)
            return
        }
        if completion.result == -ENOBUFS {
            starved.append(relay)
            if !loggedBufferShortage {
                loggedBufferShortage = true
                log("worker \(index): all \(configuration.receiveBuffers) receive buffers in use: receives wait until sends free some (logged once)")
            }
        }
        if cancel { _ = queue("cancel") { () throws(SystemCallError) in try ring.cancel(token: token(relay, .receive, toClient: toClient)) } }
        if completion.result > 0 { relay.lastActivity = now }
        touch(relay)
    }

    private func sent(_ relay: RingRelay, toClient: Bool, result: Int32) {
        guard result >= 0 || result == -EAGAIN else {
            // The destination reset or went away (EPIPE, ECONNRESET).
            finish(relay, reset: true)
            return
        }
        // -EAGAIN: the destination was full and took nothing (sends never wait on the ring).
        let taken = max(Int(result), 0)
        var done: Int32?
        update(relay, toClient: toClient) { direction in
            guard let segment = direction.inFlight else { return }
            direction.inFlight = nil
            if taken < segment.count {
                // A full or nearly full destination: the rest goes first among what waits, copied
                // out so the buffer goes back now, and the destination is polled.
                direction.pending.insert(contentsOf: ring.bytes(of: segment.buffer, count: segment.count)[taken...], at: 0)
                direction.destinationFilled(at: now, counters: relay.counters, toUpstream: !toClient)
            }
            done = segment.buffer
        }
        if let done { giveBack(done) }
        if taken > 0 {
            relay.counters?.moved(taken, toUpstream: !toClient)
            relay.lastActivity = now
        }
        touch(relay)
    }

    private func polledSource(_ relay: RingRelay, toClient: Bool, result: Int32) {
        var broken = false
        update(relay, toClient: toClient) { direction in
            direction.pollingSource = false
            if result > 0 {
                // Any readiness, an error or hang-up included: the splice that follows says which.
                direction.splice?.sourceReadable = true
            } else if result < 0 && result != -ECANCELED {
                broken = true
            }
        }
        if broken { finish(relay, reset: true) } else { touch(relay) }
    }

    /// The destination's poll reported. Room (`POLLOUT`), or an error or hang-up that the next
    /// send or splice will say, ends the wait. `POLLRDHUP` alone says only that the peer shut
    /// its writes down (io_uring adds it to every poll): the socket may still be full, and a
    /// one-shot poll armed again would report it again at once, for as long as the peer does
    /// not read — a worker spinning at full CPU on one stalled, half-closed client. So that
    /// wait goes on with a multishot poll, which reports it once more and then only wakeups.
    private func polledDestination(_ relay: RingRelay, toClient: Bool, result: Int32, more: Bool) {
        var broken = false, waitForWakeup = false, cancelMultishot = false
        update(relay, toClient: toClient) { direction in
            if !more {
                direction.pollingDestination = false
                direction.destinationPollCancelled = false
            }
            if result > 0 && UInt32(result) & (CTurnoutUring_POLLOUT | CTurnoutUring_POLLERR | CTurnoutUring_POLLHUP) != 0 {
                direction.destinationReady(at: now, counters: relay.counters, toUpstream: !toClient)
                cancelMultishot = more && !direction.destinationPollCancelled
                if cancelMultishot { direction.destinationPollCancelled = true }
            } else if result > 0 {
                // POLLRDHUP alone. A multishot poll's own first report is that too: it stays armed.
                waitForWakeup = !direction.pollingDestination
                if waitForWakeup { direction.pollingDestination = true }
            } else if result < 0 && result != -ECANCELED {
                broken = true
            }
        }
        if cancelMultishot {
            broken = !queue("cancel") { () throws(SystemCallError) in try ring.cancel(token: token(relay, .pollDestination, toClient: toClient)) }
        }
        if waitForWakeup {
            let destination = toClient ? relay.client : relay.upstream
            broken = broken || !queue("poll", { () throws(SystemCallError) in
                try ring.pollMultishot(destination, events: CTurnoutUring_POLLOUT, token: token(relay, .pollDestination, toClient: toClient))
            })
        }
        if broken { finish(relay, reset: true) } else { touch(relay) }
    }

    private func update(_ relay: RingRelay, toClient: Bool, _ body: (inout RingDirection) -> Void) {
        if toClient { body(&relay.toClient) } else { body(&relay.toUpstream) }
    }

    // MARK: - relaying

    /// Queues what each direction can do now, passes ends of stream on, and finishes the relay
    /// when both directions are done or one broke.
    private func pump(_ relay: RingRelay) {
        relay.touched = false
        guard relay.phase == .relaying, relays[relay.id] === relay else { return }
        let up = pump(&relay.toUpstream, relay, toClient: false, closesAfter: relay.toClient.isFinished)
        let down = up && pump(&relay.toClient, relay, toClient: true, closesAfter: relay.toUpstream.isFinished)
        guard up && down else {
            finish(relay, reset: true)
            return
        }
        if relay.isFinished {
            finish(relay, reset: false)
        } else if relay.halfClosedSince == nil && (relay.toUpstream.isFinished || relay.toClient.isFinished) {
            relay.halfClosedSince = now
        }
    }

    /// One direction; false when it broke. `closesAfter`: the other direction is finished, so
    /// this one ending finishes the relay, and the `close(2)` that follows sends the FIN a
    /// `shutdown(SHUT_WR)` would.
    private func pump(_ direction: inout RingDirection, _ relay: RingRelay, toClient: Bool, closesAfter: Bool) -> Bool {
        let source = toClient ? relay.upstream : relay.client
        let destination = toClient ? relay.client : relay.upstream
        if direction.splice != nil {
            guard splice(&direction, relay, source: source, destination: destination, toClient: toClient) else { return false }
        }
        if direction.splice == nil {
            guard send(&direction, relay, to: destination, toClient: toClient) else { return false }
            if direction.destinationBlocked || direction.pending.count >= RingDirection.pendingLimit {
                // The destination is full, or slower than the source: stop reading until it
                // took what waits.
                if !direction.pausing {
                    direction.pausing = true
                    if direction.receiving {
                        _ = queue("cancel") { () throws(SystemCallError) in try ring.cancel(token: token(relay, .receive, toClient: toClient)) }
                    }
                }
            }
            if direction.destinationBlocked && !direction.pollingDestination {
                guard queue("poll", { () throws(SystemCallError) in
                    try ring.poll(destination, events: CTurnoutUring_POLLOUT, token: token(relay, .pollDestination, toClient: toClient))
                }) else { return false }
                direction.pollingDestination = true
            }
            if direction.pausing && !direction.receiving && direction.pending.isEmpty && direction.inFlight == nil {
                direction.pausing = false
                if direction.bulk && !direction.sourceDone {
                    // The receive ended and its bytes went on: splice from here, starting with
                    // a splice that says whether the source has more.
                    direction.bulk = false
                    var splicing = RelayDirection()
                    splicing.splicing = true
                    splicing.sourceReadable = true
                    direction.splice = splicing
                    return pump(&direction, relay, toClient: toClient, closesAfter: closesAfter)
                }
            }
            if !direction.receiving && !direction.sourceDone && !direction.pausing && !direction.starved {
                guard queue("recv", { () throws(SystemCallError) in
                    try ring.receive(source, token: token(relay, .receive, toClient: toClient))
                }) else { return false }
                direction.receiving = true
            }
        }
        if direction.sourceDone && direction.isEmpty && !direction.shutdownSent {
            // The end of stream goes on only after the last byte: the peer may answer only then.
            if !closesAfter {
                guard (try? Syscalls.shutdownWrite(destination)) != nil else { return false }
            }
            direction.shutdownSent = true
        }
        return true
    }

    /// Receive mode: the batch's first arrival goes on with a send on the ring when nothing is
    /// ahead of it; the others are copied to ``RingDirection/pending`` and their buffers given
    /// back. Once no ring send is in flight, `pending` goes on with non-blocking `send(2)` until
    /// the destination takes no more. False when the destination broke or the ring refused.
    private func send(_ direction: inout RingDirection, _ relay: RingRelay, to destination: Int32, toClient: Bool) -> Bool {
        var broken = false
        for (position, segment) in direction.queue.enumerated() {
            let bytes = ring.bytes(of: segment.buffer, count: segment.count)
            if direction.inFlight == nil && direction.pending.isEmpty && !broken {
                // The last bytes before an end of stream that already came go with MSG_MORE: the
                // shutdown or close that follows their send puts them and the FIN in one segment
                // (see the epoll worker's copy for why that matters).
                let more = direction.sourceDone && position == direction.queue.count - 1
                if queue("send", { () throws(SystemCallError) in
                    try ring.send(destination, bytes, more: more, token: token(relay, .send, toClient: toClient))
                }) {
                    direction.inFlight = segment
                    continue
                }
                broken = true
            } else if !broken {
                direction.pending.append(contentsOf: bytes)
            }
            giveBack(segment.buffer)
        }
        direction.queue.removeAll(keepingCapacity: true)
        if !broken && direction.inFlight == nil && !direction.pending.isEmpty && !direction.destinationBlocked {
            let more = direction.sourceDone
            // Array's withUnsafeBytes rethrows untyped, hence the plain `do`.
            do {
                let taken = try direction.pending.withUnsafeBytes { bytes throws(SystemCallError) in
                    try Syscalls.send(destination, bytes, more: more)
                }
                if let sent = taken {
                    relay.counters?.moved(sent, toUpstream: !toClient)
                    direction.pending.removeFirst(sent)
                    relay.lastActivity = now
                }
                if !direction.pending.isEmpty { direction.destinationFilled(at: now, counters: relay.counters, toUpstream: !toClient) }
            } catch {
                broken = true
            }
        }
        return !broken
    }

    /// Splice mode: moves what can move, then polls the side that was not ready. With no pipe to
    /// be had, the direction receives again (``RingDirection/splice`` set to nil).
    private func splice(_ direction: inout RingDirection, _ relay: RingRelay, source: Int32, destination: Int32,
                        toClient: Bool) -> Bool {
        guard var state = direction.splice else { return true }
        if state.pipe == nil && !state.sourceDone && state.sourceReadable && state.destinationWritable {
            state.pipe = pipes.take()
            if state.pipe == nil {
                direction.splice = nil
                direction.spliceBackoff = Self.spliceBackoff
                return true
            }
        }
        let result = state.splice(from: source, to: destination, counters: relay.counters, toUpstream: !toClient, pipes: &pipes, now: now)
        direction.splice = state
        if result.broken { return false }
        if result.moved { relay.lastActivity = now }
        if state.sourceDone { direction.sourceDone = true }
        if !state.sourceDone && !state.sourceReadable && !direction.pollingSource {
            guard queue("poll", { () throws(SystemCallError) in
                try ring.poll(source, events: CTurnoutUring_POLLIN | CTurnoutUring_POLLRDHUP,
                              token: token(relay, .pollSource, toClient: toClient))
            }) else { return false }
            direction.pollingSource = true
        }
        if state.buffered > 0 && !state.destinationWritable && !direction.pollingDestination {
            guard queue("poll", { () throws(SystemCallError) in
                try ring.poll(destination, events: CTurnoutUring_POLLOUT, token: token(relay, .pollDestination, toClient: toClient))
            }) else { return false }
            direction.pollingDestination = true
        }
        return true
    }

    /// Queues a request; false (logged) when the ring refused it, which ends the relay.
    private func queue(_ what: String, _ request: () throws(SystemCallError) -> Void) -> Bool {
        do throws(SystemCallError) {
            try request()
            return true
        } catch {
            log("worker \(index): \(error) (\(what))")
            return false
        }
    }

    private func giveBack(_ buffer: Int32) {
        ring.giveBack(buffer)
        heldBuffers -= 1
    }

    /// Buffers came back: every direction whose receive ran out is armed again (one that runs
    /// out again comes back here).
    private func feedStarved() {
        for relay in starved where relays[relay.id] === relay {
            relay.toUpstream.starved = false
            relay.toClient.starved = false
            pump(relay)
        }
        starved.removeAll(keepingCapacity: true)
    }

    // MARK: - timers and the end

    /// Idle relays and half-closed relays past their bound (connects have their own timeouts
    /// on the ring).
    private func sweep() {
        for relay in relays.values where relay.isPastTimeouts(at: now, configuration) {
            finish(relay, reset: false)
        }
    }

    /// Cancels the relay's requests, closes both sockets (the client's with a reset when the
    /// relay failed), returns its pipes and buffers and releases its counts.
    private func finish(_ relay: RingRelay, reset: Bool) {
        guard relays.remove(relay.id) else { return }
        // Counts first, sockets last: whoever sees the connection end (a client, a test) then
        // sees counters and the circuit breaker that already account for it.
        relay.toUpstream.endWait(at: now, counters: relay.counters, toUpstream: true)
        relay.toClient.endWait(at: now, counters: relay.counters, toUpstream: false)
        routes.released(relay)
        returnPipes(relay)
        // A request holds its socket open: without the cancel, an armed receive would keep a
        // closed socket alive. The cancel reaches the kernel before the close, since the
        // descriptor's number may go to a new socket at once. Late completions find no relay.
        // A relay that ended cleanly has none left (its receives saw the end of stream), and
        // closes without the cancels and the extra io_uring_enter.
        if relay.phase == .connecting || relay.toUpstream.hasRequests || relay.toClient.hasRequests {
            do throws(SystemCallError) {
                try ring.cancel(relay.client)
                if relay.upstream >= 0 { try ring.cancel(relay.upstream) }
                try ring.submit()
            } catch {
                log("worker \(index): \(error): a closed relay's sockets stay open until its requests complete")
            }
        }
        // Bytes that will not be sent now; a ring send in flight was cancelled above, before its
        // buffer can go to a new receive.
        giveBackBuffers(of: relay.toUpstream)
        giveBackBuffers(of: relay.toClient)
        relay.closeSockets(reset: reset)
    }

    /// The relay's pipes back to the pool. Each direction on its own: an array of both would
    /// cost an allocation on every connection's end.
    private func returnPipes(_ relay: RingRelay) {
        if let splice = relay.toUpstream.splice, let pipe = splice.pipe { pipes.give(pipe, empty: splice.buffered == 0) }
        if let splice = relay.toClient.splice, let pipe = splice.pipe { pipes.give(pipe, empty: splice.buffered == 0) }
    }

    private func giveBackBuffers(of direction: RingDirection) {
        for segment in direction.queue { giveBack(segment.buffer) }
        if let segment = direction.inFlight { giveBack(segment.buffer) }
    }
}
