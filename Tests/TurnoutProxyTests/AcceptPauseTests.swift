import Glibc
import Testing
@testable import TurnoutProxy
import TurnoutModel

/// A worker's accept pause as a value: a pause ends when due, a pause for good never does.
@Suite("accept pause: for a while, or for good")
struct AcceptPauseTests {
    static let start = ContinuousClock.now
    static let shortage = SystemCallError(call: "accept4", errno: EMFILE)

    @Test("a shortage → paused, logged once, counted each time; over at its end and not before")
    func pauseEnds() {
        var pause = AcceptPause()
        let counters = WorkerCounters()
        #expect(pause.start(after: Self.shortage, now: Self.start, pause: .milliseconds(100), counters: counters) != nil)
        #expect(pause.start(after: Self.shortage, now: Self.start, pause: .milliseconds(100), counters: counters) == nil)
        #expect(counters.acceptPauses.load(ordering: .relaxed) == 2)
        #expect(pause.isPaused)
        let early = pause.endIfDue(Self.start + .milliseconds(99))
        let due = pause.endIfDue(Self.start + .milliseconds(100))
        #expect(!early && due)
        #expect(!pause.isPaused)
    }

    @Test("stopped for good, before or during a pause → paused whatever the time; a later pause or back-off does not end it")
    func stopForGood() {
        for pausedFirst in [false, true] {
            var pause = AcceptPause()
            if pausedFirst { pause.back(off: .milliseconds(100), now: Self.start) }
            pause.stopForGood()
            pause.back(off: .milliseconds(100), now: Self.start)
            _ = pause.start(after: Self.shortage, now: Self.start, pause: .milliseconds(100), counters: WorkerCounters())
            #expect(pause.isPaused && pause.isStopped)
            let ended = pause.endIfDue(Self.start + .seconds(3600))
            #expect(!ended)
            #expect(pause.isPaused)
        }
    }
}
