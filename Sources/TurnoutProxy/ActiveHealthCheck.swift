import TurnoutModel

/// How often an endpoint is actively checked, how long one check may take, and how many
/// consecutive results flip its health.
///
/// Validated when made: every value positive, and the timeout at most the interval (a check
/// that outlives its interval would overlap the next one, and ``HealthChecker`` runs one round
/// at a time). Throws a ``ValueError`` naming the field.
///
/// Envoy makes all four fields of its `HealthCheck` required, so it has no defaults to copy; the
/// defaults here are chosen in Envoy's terms:
/// * `interval` 5 s: a dead endpoint is found within `interval × unhealthyThreshold` = 15 s,
///   while passive ejection (``OutlierEjection``) reacts to real traffic at once; active checks
///   are for endpoints that get no traffic, so they need not be faster, and each costs every
///   endpoint one handshake per interval per proxy.
/// * `timeout` 1 s: a handshake inside a cluster takes well under a millisecond, and Linux
///   resends a lost SYN after 1 s, so a check that needs the resend fails; the unhealthy
///   threshold absorbs one such loss.
/// * `healthyThreshold` 2: one lucky handshake does not bring back an endpoint that flaps.
/// * `unhealthyThreshold` 3: one dropped SYN or a brief accept-queue overflow does not take
///   an endpoint out (Kubernetes probes use the same `failureThreshold`).
public struct HealthCheckPolicy: Sendable, Hashable {
    /// Time from the start of one round of checks to the start of the next.
    public let interval: Duration
    /// How long a check may wait for the handshake; a check still waiting fails with
    /// ``HealthCheckFailure/timeout``.
    public let timeout: Duration
    /// Consecutive successes that bring an unhealthy endpoint back.
    public let healthyThreshold: Int
    /// Consecutive failures that mark a healthy endpoint unhealthy.
    public let unhealthyThreshold: Int

    /// The defaults above (5 s, 1 s, 2, 3).
    public static let standard = HealthCheckPolicy(validated: .seconds(5), .seconds(1), 2, 3)

    public init(interval: Duration = .seconds(5), timeout: Duration = .seconds(1),
                healthyThreshold: Int = 2, unhealthyThreshold: Int = 3) throws(ValueError) {
        guard interval > .zero else { throw ValueError("health check interval must be positive, got \(interval)") }
        guard timeout > .zero else { throw ValueError("health check timeout must be positive, got \(timeout)") }
        guard timeout <= interval else {
            throw ValueError("health check timeout (\(timeout)) must not exceed the interval (\(interval))")
        }
        guard healthyThreshold > 0 else { throw ValueError("healthy threshold must be positive, got \(healthyThreshold)") }
        guard unhealthyThreshold > 0 else { throw ValueError("unhealthy threshold must be positive, got \(unhealthyThreshold)") }
        self.init(validated: interval, timeout, healthyThreshold, unhealthyThreshold)
    }

    private init(validated interval: Duration, _ timeout: Duration, _ healthyThreshold: Int, _ unhealthyThreshold: Int) {
        self.interval = interval
        self.timeout = timeout
        self.healthyThreshold = healthyThreshold
        self.unhealthyThreshold = unhealthyThreshold
    }
}

/// Why one active check failed.
public enum HealthCheckFailure: Sendable, Hashable, CustomStringConvertible {
    /// The endpoint answered the SYN with a reset (ECONNREFUSED): nothing listens there.
    case refused
    /// No handshake before the policy's timeout, or the kernel gave up (ETIMEDOUT).
    case timeout
    /// No route to the endpoint's network or host (ENETUNREACH, EHOSTUNREACH).
    case unreachable
    /// Any other error of the connect, with the call and errno.
    case other(SystemCallError)

    public var description: String {
        switch self {
        case .refused: "refused"
        case .timeout: "timeout"
        case .unreachable: "unreachable"
        case .other(let error): "\(error)"
        }
    }
}

/// The outcome of one active check.
public enum HealthCheckResult: Sendable, Hashable, CustomStringConvertible {
    /// The handshake completed before the timeout.
    case success
    case failure(HealthCheckFailure)

    public var description: String {
        switch self {
        case .success: "success"
        case .failure(let reason): "failure (\(reason))"
        }
    }
}

/// The active-check health of one endpoint: takes check results and flips between healthy and
/// unhealthy only after the policy's threshold of consecutive results the other way.
///
/// A new endpoint starts healthy. Envoy starts a host that has active checks unhealthy until
/// its first check passes; here a fresh route table serves at once, without waiting up to an
/// interval for the first round, and an endpoint that is in fact down is caught by its first
/// connect failures (connect retry, ``OutlierEjection``) before the checks mark it.
/// Pure and deterministic; a value owned by one thread (``HealthChecker``'s).
public struct ActiveHealthCheck: Sendable, Hashable {
    public let policy: HealthCheckPolicy
    public private(set) var isHealthy = true
    /// Results in a row that disagree with ``isHealthy`` (failures while healthy, successes while
    /// unhealthy); the health flips when this reaches the threshold, and goes back to 0.
    public private(set) var streak = 0
    /// The latest result recorded; nil before the first.
    public private(set) var lastResult: HealthCheckResult?

    public init(policy: HealthCheckPolicy) {
        self.policy = policy
    }

    /// Records one check's result; true when it flipped the health.
    @discardableResult
    public mutating func record(_ result: HealthCheckResult) -> Bool {
        lastResult = result
        let agrees = (result == .success) == isHealthy
        guard !agrees else {
            streak = 0
            return false
        }
        streak += 1
        guard streak >= (isHealthy ? policy.unhealthyThreshold : policy.healthyThreshold) else { return false }
        isHealthy.toggle()
        streak = 0
        return true
    }
}
