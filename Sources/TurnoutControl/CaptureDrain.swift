import Glibc

/// The wait in the middle of `init --cleanup`: after capture was turned into its drain form
/// (no redirect, conntrack kept), wait until no connection redirected to the proxy's ports is
/// open, or until `timeout`.
///
/// Why wait at all: an established, redirected connection keeps working only while some nat
/// chain and some conntrack user exist in the namespace (see
/// ``TurnoutRules/CaptureCompiler/nftablesDrain()``). Deleting the last capture rules at once
/// would make every connection the proxy holds for the app stall; waiting lets them finish.
/// The default, 5 s, is Istio's default drain time for its sidecar (`terminationDrainDuration`).
/// Blocks the calling thread (polling conntrack every `interval`); no state is kept.
public struct CaptureDrain: Sendable {
    /// Default `--drain-timeout`.
    public static let defaultTimeout: Duration = .seconds(5)

    /// What the wait saw.
    public struct Outcome: Sendable, Equatable {
        /// Redirected connections open when the wait began; nil when conntrack could not be read.
        public var openAtStart: Int?
        /// Redirected connections still open when the wait ended (0 when drained); nil when
        /// conntrack could not be read.
        public var stillOpen: Int?
        public var waited: Duration
    }

    /// The proxy's ports (outbound and inbound): connections redirected to them are waited for.
    public var ports: Set<UInt16>
    public var timeout: Duration
    public var interval: Duration = .milliseconds(50)

    public init(ports: Set<UInt16>, timeout: Duration = Self.defaultTimeout) {
        self.ports = ports
        self.timeout = timeout
    }

    /// Waits; `openConnections` counts the redirected connections (conntrack by default), nil
    /// meaning it cannot tell, in which case nothing is waited for.
    public func wait(openConnections: () -> Int?) -> Outcome {
        let start = ContinuousClock.now
        let first = openConnections()
        var open = first
        while let count = open, count > 0, ContinuousClock.now - start < timeout {
            let left = timeout - (ContinuousClock.now - start)
            let nap = min(interval, left)
            usleep(UInt32(max(0, nap / .microseconds(1))))
            open = openConnections()
        }
        return Outcome(openAtStart: first, stillOpen: open, waited: ContinuousClock.now - start)
    }

    /// ``wait(openConnections:)`` against the caller's namespace's conntrack.
    public func waitForConntrack() -> Outcome {
        wait { CapturedConnections.count(redirectedTo: ports) }
    }
}
