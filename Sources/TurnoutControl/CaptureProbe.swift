import Glibc
import TurnoutModel
import TurnoutProxy
import TurnoutRules

/// Proves that installed capture rules work, with a real connection (`turnout init --validate`,
/// the job of Istio's validation init container).
///
/// For each family it listens on the proxy port (wildcard address), connects as a user that is
/// not the proxy to a probe target the rules should capture, and checks that the connection
/// arrives at that listener with the target as its original destination. It must run in the
/// pod's network namespace, as root (the probe socket is made under another uid/gid), before
/// the proxy starts (the proxy port must be free). Each probe is bounded by `timeout`.
public struct CaptureProbe: Sendable {
    /// The options the rules were installed with: they choose the target, the port to listen on
    /// and the user to connect as.
    public let options: CaptureOptions
    /// How long one probe may take: the handshake plus the accept.
    public var timeout: Duration

    public init(options: CaptureOptions, timeout: Duration = .seconds(2)) {
        self.options = options
        self.timeout = timeout
    }

    /// What one probe found.
    public struct Result: Sendable, Equatable, CustomStringConvertible {
        public var family: IPFamily
        /// The address probed; nil when the family was skipped (nothing to probe).
        public var target: SocketAddress?
        /// True when the connection arrived at the proxy port with `target` as its original
        /// destination.
        public var passed: Bool
        /// One sentence saying what happened and, on failure, what it means.
        public var explanation: String

        public var description: String {
            "\(passed ? "ok" : "FAILED") \(target.map { "\($0)" } ?? "\(family)"): \(explanation)"
        }
    }

    /// The user the probe connects as: the first of 65534 (nobody), 65533, … that is not a proxy
    /// uid, and likewise for the group, so neither owner exemption can apply.
    public var credentials: SocketCredentials {
        func outside(_ ids: [UInt32]) -> UInt32 { (0...UInt32(65534)).reversed().first { !ids.contains($0) } ?? 65534 }
        return SocketCredentials(uid: outside(options.proxyUIDs), gid: outside(options.proxyGIDs))
    }

    /// The interface the probe is assumed to leave by when choosing a target: any name that is
    /// not excluded. If routing actually sends it out of an excluded interface, the probe fails,
    /// which is the truth: that traffic is not captured.
    private var assumedInterface: String {
        (0...).lazy.map { "eth\($0)" }.first { !options.excludeInterfaces.contains($0) }!
    }

    /// The probe target for `family`: the first candidate that the compiled rules redirect to
    /// the proxy port when a non-proxy user connects to it, or nil when none is captured (for
    /// example outbound capture is off).
    ///
    /// Candidates, in order: the first address of each captured CIDR, then the documentation
    /// addresses (192.0.2.1, 198.51.100.1, 203.0.113.1; 2001:db8::1), each on the always
    /// captured ports, then 80, 443, 8080, 1. The choice runs the real rule table through
    /// `PacketTracer`, so it can never disagree with the installed order of exclusions.
    public func target(for family: IPFamily) -> SocketAddress? {
        var addresses: [IPAddress] = []
        if case .only(let prefixes) = options.captureOutbound {
            for prefix in prefixes where prefix.family == family {
                addresses.append(prefix.length == family.bitCount ? prefix.address : prefix.address.adding(1))
            }
        }
        addresses += (family == .ipv4 ? ["192.0.2.1", "198.51.100.1", "203.0.113.1"] : ["2001:db8::1", "3fff::1"]).map { IPAddress($0)! }
        let ports = options.captureOutboundPorts.map(\.lower) + [80, 443, 8080, 1]
        let tracer = PacketTracer(tables: [CaptureCompiler.nftables(options)])
        let owner = credentials
        let source = family == .ipv4 ? IPAddress("10.255.255.254")! : IPAddress("fd00:ffff::fe")!
        for address in addresses {
            for port in ports where port != options.proxyPort && port != options.inboundPort {
                let target = SocketAddress(address: address, port: port)
                let packet = TracePacket(source: source, destination: target, uid: owner.uid, gid: owner.gid,
                                         outputInterface: assumedInterface)
                if tracer.trace(packet).map(\.disposition) == [.redirected(port: options.proxyPort)] { return target }
            }
        }
        return nil
    }

    /// Probes `target`: listen on the proxy port of its family, connect to it, accept, and
    /// compare the original destination. Never throws: every failure is a `Result` that says
    /// what went wrong.
    public func probe(_ target: SocketAddress) -> Result {
        let family = target.address.family
        let fail = { (text: String) in Result(family: family, target: target, passed: false, explanation: text) }
        let deadline = ContinuousClock.now + timeout
        let listener: TCPListener
        do {
            listener = try TCPListener(bindingTo: .wildcard(family, port: options.proxyPort))
        } catch {
            if error.errno == EADDRINUSE {
                return fail("cannot listen on the proxy port \(options.proxyPort) (\(error)): validation must run before the proxy starts")
            }
            return fail("cannot listen on the proxy port \(options.proxyPort): \(error)")
        }
        let client: TCPConnection
        do {
            client = try TCPConnection.connect(to: target, as: credentials, until: deadline)
        } catch {
            return fail(Self.explainConnectFailure(error, target: target, proxyPort: options.proxyPort))
        }
        let clientAddress: SocketAddress
        do {
            clientAddress = try client.localAddress()
        } catch {
            return fail("\(error)")
        }
        // A redirected handshake completes against the listener itself, so by the time the
        // client is connected its twin is in the accept queue; the grace covers a busy machine.
        let acceptDeadline = min(deadline, ContinuousClock.now + Self.acceptGrace)
        // The listener may hold other connections (a leftover probe); only ours counts.
        while true {
            let accepted: TCPConnection?
            do {
                accepted = try listener.accept(until: acceptDeadline)
            } catch {
                return fail("accepting on the proxy port: \(error)")
            }
            guard let accepted else {
                return fail("connected as \(credentials), but no connection reached the proxy port \(options.proxyPort): the connection went to \(target) itself, so it is not captured (an earlier NAT rule, an exclusion, or a route through an excluded interface)")
            }
            guard (try? accepted.peerAddress()) == clientAddress else { continue }
            do {
                let original = try accepted.originalDestination()
                guard original == target else {
                    return fail("arrived at the proxy port with original destination \(original), not \(target): another NAT rule rewrote it first")
                }
                return Result(family: family, target: target, passed: true,
                              explanation: "connected as \(credentials), arrived at proxy port \(options.proxyPort) with original destination \(original)")
            } catch {
                return fail("arrived at the proxy port, but the original destination cannot be read (\(error)): it was not redirected by NAT")
            }
        }
    }

    /// Probes every family of the options, or says why a family cannot be probed.
    ///
    /// `targets` overrides the choice (one per family, or several); a family with nothing
    /// captured is reported as skipped (passed), since its outbound capture is off.
    public func run(targets: [SocketAddress] = []) -> [Result] {
        if !targets.isEmpty { return targets.map(probe) }
        return options.families.map { family in
            guard let target = target(for: family) else {
                let off = options.captureOutbound.isEmpty && options.captureOutboundPorts.isEmpty
                return Result(family: family, target: nil, passed: off,
                              explanation: off ? "skipped: outbound capture is off"
                                               : "no \(family) address and port is captured by these options; pass --validate-target ADDR:PORT")
            }
            return probe(target)
        }
    }

    /// How long after the client connected the probe waits for the connection at the proxy port.
    static let acceptGrace: Duration = .milliseconds(250)

    private static func explainConnectFailure(_ error: SystemCallError, target: SocketAddress, proxyPort: UInt16) -> String {
        switch error.errno {
        case ECONNREFUSED:
            "the connection was refused (\(error)): nothing answered, so it was neither delivered to the proxy port \(proxyPort) nor to \(target)"
        case ETIMEDOUT:
            "no answer (\(error)): the connection was not redirected to the proxy port \(proxyPort)"
        case ENETUNREACH, EHOSTUNREACH:
            "\(error): this namespace has no route to the probe target, so capture cannot be probed there; pass --validate-target with a routable address"
        default:
            "\(error)"
        }
    }
}
