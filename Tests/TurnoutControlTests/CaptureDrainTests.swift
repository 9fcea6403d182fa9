import Synchronization
import Testing
import TurnoutControl

/// `init --cleanup`'s wait: which conntrack entries count as captured connections, and how long
/// the drain waits for them.
@Suite("Capture drain: captured connections in conntrack, and the wait for them")
struct CaptureDrainTests {
    static let ports: Set<UInt16> = [15001, 15006]

    /// Lines as `/proc/net/nf_conntrack` prints them (kernel 6.x), and whether each is a
    /// connection capture redirected to the proxy that is still open.
    static let entries: [(line: String, counts: Bool)] = [
        // The app's connection to 10.30.0.5:80, redirected to the proxy's outbound port.
        ("ipv4     2 tcp      6 431998 ESTABLISHED src=10.20.0.2 dst=10.30.0.5 sport=40000 dport=80 src=127.0.0.1 dst=10.20.0.2 sport=15001 dport=40000 [ASSURED] mark=0 zone=0 use=2", true),
        // Inbound, redirected to the inbound port, still half open (the app closed its side).
        ("ipv4     2 tcp      6 59 CLOSE_WAIT src=10.30.0.5 dst=10.20.0.2 sport=50000 dport=8080 src=10.20.0.2 dst=10.30.0.5 sport=15006 dport=50000 [ASSURED] mark=0 zone=0 use=2", true),
        // IPv6, with the tuple's addresses written out in full as the kernel does.
        ("ipv6     10 tcp      6 431999 ESTABLISHED src=fd00:0020:0000:0000:0000:0000:0000:0002 dst=fd00:0030:0000:0000:0000:0000:0000:0005 sport=40001 dport=443 src=0000:0000:0000:0000:0000:0000:0000:0001 dst=fd00:0020:0000:0000:0000:0000:0000:0002 sport=15001 dport=40001 [ASSURED] mark=0 zone=0 use=2", true),
        // A SYN the proxy has not answered yet still waits for its NAT.
        ("ipv4     2 tcp      6 119 SYN_SENT src=10.20.0.2 dst=10.30.0.5 sport=40002 dport=80 [UNREPLIED] src=127.0.0.1 dst=10.20.0.2 sport=15001 dport=40002 mark=0 zone=0 use=2", true),
        // Closed: the entry only waits out its timer.
        ("ipv4     2 tcp      6 118 TIME_WAIT src=10.20.0.2 dst=10.30.0.5 sport=40003 dport=80 src=127.0.0.1 dst=10.20.0.2 sport=15001 dport=40003 [ASSURED] mark=0 zone=0 use=2", false),
        // A client that dialled the proxy port itself: not redirected.
        ("ipv4     2 tcp      6 431999 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=40004 dport=15001 src=127.0.0.1 dst=127.0.0.1 sport=15001 dport=40004 [ASSURED] mark=0 zone=0 use=2", false),
        // The proxy's own connection out: not NATed.
        ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.20.0.2 dst=10.30.0.5 sport=40005 dport=443 src=10.30.0.5 dst=10.20.0.2 sport=443 dport=40005 [ASSURED] mark=0 zone=0 use=2", false),
        // A service DNAT to another port: NATed, but not to the proxy.
        ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.20.0.2 dst=10.96.0.10 sport=40006 dport=80 src=10.1.0.5 dst=10.20.0.2 sport=8080 dport=40006 [ASSURED] mark=0 zone=0 use=2", false),
        // UDP is never captured.
        ("ipv4     2 udp      17 29 src=10.20.0.2 dst=10.30.0.5 sport=40007 dport=53 src=127.0.0.1 dst=10.20.0.2 sport=15001 dport=40007 mark=0 zone=0 use=2", false),
        ("garbage", false),
    ]

    @Test("one conntrack line → counted as a captured, open connection or not", arguments: entries.indices)
    func entry(index: Int) {
        let (line, counts) = Self.entries[index]
        #expect(CapturedConnections.count(redirectedTo: Self.ports, in: line) == (counts ? 1 : 0), "\(line)")
    }

    @Test("the whole listing → the sum; other proxy ports → none")
    func listing() {
        let listing = Self.entries.map(\.line).joined(separator: "\n") + "\n"
        #expect(CapturedConnections.count(redirectedTo: Self.ports, in: listing) == 4)
        #expect(CapturedConnections.count(redirectedTo: [16001], in: listing) == 0)
    }

    @Test("counts falling to 0 → the wait ends at 0, before the timeout")
    func drained() {
        let counts = Mutex([2, 1, 1, 0])
        let outcome = CaptureDrain(ports: Self.ports, timeout: .seconds(30)).wait {
            counts.withLock { $0.count > 1 ? $0.removeFirst() : $0[0] }
        }
        #expect(outcome.openAtStart == 2)
        #expect(outcome.stillOpen == 0)
        #expect(outcome.waited < .seconds(30))
    }

    @Test("a connection that never closes → the wait ends at the timeout with it still open")
    func timedOut() {
        var drain = CaptureDrain(ports: Self.ports, timeout: .milliseconds(200))
        drain.interval = .milliseconds(20)
        let outcome = drain.wait { 1 }
        #expect(outcome.openAtStart == 1)
        #expect(outcome.stillOpen == 1)
        #expect(outcome.waited >= .milliseconds(200))
    }

    @Test("conntrack unreadable → no wait, and the outcome says it could not tell")
    func unreadable() {
        let outcome = CaptureDrain(ports: Self.ports, timeout: .seconds(30)).wait { nil }
        #expect(outcome.openAtStart == nil && outcome.stillOpen == nil)
        #expect(outcome.waited < .seconds(30))
        #expect(CapturedConnections.count(redirectedTo: Self.ports, path: "/nonexistent/nf_conntrack") == nil)
    }
}
