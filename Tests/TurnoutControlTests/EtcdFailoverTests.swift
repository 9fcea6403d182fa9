import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutTestSupport

/// The etcd client and source given several members (`http://A,http://B,http://C`), against a
/// real three-member cluster (``EtcdLab/startCluster(members:)``) whose members are stopped
/// (SIGTERM: connections refused) or paused (SIGSTOP: connections made, nothing answers).
/// Serialized and real time, like the other etcd tests; every wait is bounded.
@Suite("etcd with several members: failover of requests and of the watch",
       .serialized, .enabled(if: EtcdLab.isEnabled, Comment(rawValue: EtcdLab.skipReason)))
struct EtcdFailoverTests {
    /// `http://…` of each of `members`, joined by commas.
    static func url(_ members: [EtcdLab]) -> String { members.map(\.url).joined(separator: ",") }

    static func address(_ member: EtcdLab) -> SocketAddress { SocketAddress(address: IPAddress("127.0.0.1")!, port: member.clientPort) }

    @Test("a dead address first, then m0 m1 m2 → a read answered by m0; m0 stopped → a write moves on to m1 (never sent to m0); m0 back, m1 paused → a write times out there and is not retried, a read moves on to m2; all down → every member's failure")
    func requestsMoveOn() throws {
        try withEtcdCluster { members in
            let dead = try #require(SocketAddress("127.0.0.1:\(try EtcdLab.freePort())"))
            var client = try EtcdClient(url: "http://\(dead)," + Self.url(members))
            // Long enough to ride out an election (a paused member may be the leader; the
            // others elect within 0.5–1 s here).
            client.requestTimeout = .seconds(2)

            #expect(try client.range(prefix: "/turnout/").count == 0)
            #expect(client.preferredMember.address == Self.address(members[0]))

            members[0].stop()
            try client.put("/turnout/a", Array("1".utf8))
            #expect(client.preferredMember.address == Self.address(members[1]))

            // Back, so that two of three answer while m1 is paused: a quorum, reads are served.
            try members[0].restart()
            members[1].pause()
            defer { members[1].resume() }
            #expect {
                try client.put("/turnout/b", Array("2".utf8))
            } throws: { error in
                guard case .unreachable(let failure) = error as? EtcdError else { return false }
                return failure.request.contains(":\(members[1].clientPort)/") && !failure.requestNotSent
            }
            #expect(client.preferredMember.address == Self.address(members[1]), "a write that may have arrived is not sent elsewhere")
            let read = try client.range(prefix: "/turnout/")
            #expect(read.keyValues.map(\.key).contains("/turnout/a"))
            #expect(client.preferredMember.address == Self.address(members[2]))

            members[1].resume()
            for member in members { member.stop() }
            #expect {
                _ = try client.range(prefix: "/turnout/")
            } throws: { error in
                guard case .noMemberAnswered(let failures) = error as? EtcdError else { return false }
                let text = "\(error)"
                return failures.count == 4 && text.hasPrefix("no etcd member answered: ")
                    && [dead.port, members[0].clientPort, members[1].clientPort, members[2].clientPort].allSatisfy { text.contains(":\($0)/") }
            }
        }
    }

    @Test("source on m0,m1,m2: the watch's member stopped → a change published elsewhere still arrives, no outage; it back, the new watch's member paused → a check moves on and drops that watch, so the next change arrives sooner than a check interval; no outage")
    func watchMovesOn() throws {
        try withEtcdCluster { members in
            let table = try EtcdTableSourceTests.canary()
            _ = try EtcdPublisher.publish(table, to: try EtcdClient(url: Self.url(members)))
            let checkInterval = Duration.seconds(3)
            let requestTimeout = Duration.seconds(2)
            let (source, recorder) = try EtcdTableSourceTests.started(Self.url(members), checkInterval: checkInterval,
                                                                      requestTimeout: requestTimeout)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))

            /// The member the source's watch is on, and a client of the other two.
            func watched() throws -> (EtcdLab, EtcdClient) {
                let member = try #require(members.first { Self.address($0) == source.client.preferredMember.address })
                return (member, try EtcdClient(url: Self.url(members.filter { $0 !== member })))
            }

            let (first, others) = try watched()
            first.stop()
            let start = ContinuousClock.now
            let reweighted = EtcdTableSourceTests.changing(table, endpoint: 0) { $0.weight = 50 }
            _ = try EtcdPublisher.publish(reweighted, to: others)
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(reweighted), within: .seconds(15)))
            print("etcd failover: watch member stopped → change delivered after \(ContinuousClock.now - start)")
            #expect(source.client.preferredMember.address != Self.address(first))

            // Paused with nothing changing: the first check that has to move on to another
            // member drops the watch there and then, so the next change is delivered by a watch
            // on a member that answers, not after two checks noticed it missing (≥ one interval).
            try first.restart()
            let (second, rest) = try watched()
            second.pause()
            defer { second.resume() }
            let paused = ContinuousClock.now
            try #require(ProxyLab.eventually(within: checkInterval + requestTimeout * 2 + .seconds(5)) {
                source.client.preferredMember.address != Self.address(second)
            },
                         "the source's checks never left the paused member")
            let movedOn = ContinuousClock.now
            let again = EtcdTableSourceTests.changing(table, endpoint: 0) { $0.weight = 70 }
            _ = try EtcdPublisher.publish(again, to: rest)
            let published = ContinuousClock.now
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(again), within: checkInterval - .seconds(1)),
                    "not delivered within \(checkInterval - .seconds(1)) of its publication")
            print("etcd failover: watch member paused → a check moved on after \(movedOn - paused); a change published \(published - movedOn) later → delivered after \(ContinuousClock.now - published)")
            #expect(recorder.unavailableCount == 0, "\(recorder.events.value)")
        }
    }
}
