import Testing
import TurnoutProxy

/// When a draining proxy stops: observations (milliseconds after the signal, connections open,
/// accepted in all) → the verdict of each.
@Suite("drain: stop once nothing was open or accepted for the quiet second, or at the drain time")
struct ProxyDrainTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var limitMilliseconds: Int64
        /// (milliseconds after the signal, open, accepted); 100 were accepted before it.
        var observations: [(at: Int64, open: Int, accepted: UInt64)]
        var verdicts: [ProxyDrain.Verdict]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "idle: stops after the quiet second, not before", limitMilliseconds: 5000,
             observations: [(0, 0, 100), (500, 0, 100), (999, 0, 100), (1000, 0, 100)],
             verdicts: [.wait, .wait, .wait, .drained]),
        Case(name: "an open connection holds it; the quiet second counts from the first look that finds it closed", limitMilliseconds: 5000,
             observations: [(0, 1, 100), (1500, 1, 100), (2000, 0, 100), (2900, 0, 100), (3000, 0, 100)],
             verdicts: [.wait, .wait, .wait, .wait, .drained]),
        Case(name: "a connection that came and went between two looks restarts the quiet second at the next look", limitMilliseconds: 5000,
             observations: [(0, 0, 100), (900, 0, 101), (1500, 0, 101), (2400, 0, 101), (2500, 0, 101)],
             verdicts: [.wait, .wait, .wait, .wait, .drained]),
        Case(name: "still open at the drain time → time up, with the count", limitMilliseconds: 2000,
             observations: [(0, 3, 100), (1999, 2, 100), (2000, 2, 100)],
             verdicts: [.wait, .wait, .timeUp(open: 2)]),
        Case(name: "nothing open at the drain time, though accepted just now → drained", limitMilliseconds: 2000,
             observations: [(0, 0, 100), (1900, 0, 105), (2000, 0, 105)],
             verdicts: [.wait, .wait, .drained]),
        Case(name: "drain time 0 → the first look stops (idle)", limitMilliseconds: 0,
             observations: [(0, 0, 100)], verdicts: [.drained]),
        Case(name: "drain time 0 → the first look stops (open)", limitMilliseconds: 0,
             observations: [(0, 4, 100)], verdicts: [.timeUp(open: 4)]),
        Case(name: "a drain time under the quiet second: idle, it stops at the drain time", limitMilliseconds: 300,
             observations: [(0, 0, 100), (299, 0, 100), (300, 0, 100)],
             verdicts: [.wait, .wait, .drained]),
    ]

    @Test("observations → verdicts", arguments: cases)
    func verdicts(_ input: Case) {
        let start = ContinuousClock.now
        var drain = ProxyDrain(started: start, limit: .milliseconds(input.limitMilliseconds), accepted: 100)
        let verdicts = input.observations.map { drain.observe(at: start + .milliseconds($0.at), open: $0.open, accepted: $0.accepted) }
        #expect(verdicts == input.verdicts)
    }
}
