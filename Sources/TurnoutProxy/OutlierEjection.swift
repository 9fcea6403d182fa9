import TurnoutModel

/// When passive outlier ejection takes an endpoint out of a service, and for how long.
///
/// Validated when made (a ``ValueError`` names the field). The defaults are Envoy's
/// `OutlierDetection` defaults except the ejected share:
/// * `consecutiveFailures` 5 (Envoy's `consecutive_5xx` and `consecutive_local_origin_failure`,
///   which for TCP count connection failures): fewer would eject on a short blip, and each
///   failure costs a connect retry, not a failed connection.
/// * `baseEjectionTime` 30 s (Envoy's `base_ejection_time`): long enough for a restarting pod to
///   come back, short enough that a transient fault costs little capacity.
/// * `maxEjectionTime` 300 s (Envoy's `max_ejection_time`): an endpoint that keeps failing is
///   still retried every five minutes at worst.
/// * `maxEjectedPercent` 50, where Envoy's `max_ejection_percent` defaults to 10: with Envoy's
///   10% a service of fewer than ten endpoints can eject none (unless `always_eject_one_host`),
///   and most mesh services are that small. 50% matches the default ``PanicThreshold``: ejection
///   alone never leaves less than half the endpoints available, so it never causes panic; only
///   active checks, which see endpoints with no traffic, can.
public struct OutlierPolicy: Sendable, Hashable {
    /// Connect failures in a row, with no success between, that eject an endpoint.
    public let consecutiveFailures: Int
    /// The first ejection's length; the k-th ejection in a row lasts k times this.
    public let baseEjectionTime: Duration
    /// The longest an ejection lasts, however often the endpoint was ejected.
    public let maxEjectionTime: Duration
    /// The most endpoints of a service that may be ejected at once, in percent of its endpoints
    /// (0 ejects none, 100 may eject all).
    public let maxEjectedPercent: Int

    /// The defaults above (5, 30 s, 300 s, 50%).
    public static let standard = OutlierPolicy(validated: 5, .seconds(30), .seconds(300), 50)

    public init(consecutiveFailures: Int = 5, baseEjectionTime: Duration = .seconds(30),
                maxEjectionTime: Duration = .seconds(300), maxEjectedPercent: Int = 50) throws(ValueError) {
        guard consecutiveFailures > 0 else { throw ValueError("consecutive failures must be positive, got \(consecutiveFailures)") }
        guard baseEjectionTime > .zero else { throw ValueError("base ejection time must be positive, got \(baseEjectionTime)") }
        guard maxEjectionTime >= baseEjectionTime else {
            throw ValueError("max ejection time (\(maxEjectionTime)) must not be below the base ejection time (\(baseEjectionTime))")
        }
        guard (0...100).contains(maxEjectedPercent) else { throw ValueError("max ejected percent must be 0...100, got \(maxEjectedPercent)") }
        self.init(validated: consecutiveFailures, baseEjectionTime, maxEjectionTime, maxEjectedPercent)
    }

    private init(validated consecutiveFailures: Int, _ baseEjectionTime: Duration, _ maxEjectionTime: Duration, _ maxEjectedPercent: Int) {
        self.consecutiveFailures = consecutiveFailures
        self.baseEjectionTime = baseEjectionTime
        self.maxEjectionTime = maxEjectionTime
        self.maxEjectedPercent = maxEjectedPercent
    }

    /// The largest useful ejection multiplier: the first k with base × k ≥ max. Growing past it
    /// would change no ejection's length but would make the decay back to 0 take longer.
    var maxMultiplier: Int {
        Int((maxEjectionTime / baseEjectionTime).rounded(.up))
    }
}

/// Passive outlier ejection for one service's endpoints: connect failures in a row take an
/// endpoint out for a time that grows with each ejection, within a cap on the share ejected.
///
/// One value per service (per ``ServiceRoute``), keyed by an endpoint key (the proxy uses the
/// endpoint's ``SocketAddress``, which survives a route table swap where indices do not). Pure and
/// deterministic: every call takes the time, and time going backwards counts as no time passing.
/// A value type with no lock: the worker that owns it reports its own connects; workers that
/// share a service each keep their own, or the caller puts one behind a lock.
///
/// The rules, Envoy's consecutive-failure detector with its ejection algorithm:
/// * ``recordConnectFailure(endpoint:at:)`` counts failures in a row;
///   ``recordConnectSuccess(endpoint:at:)`` resets the count. At ``OutlierPolicy/consecutiveFailures``
///   the endpoint is ejected for `base × timesEjected` (timesEjected counting this ejection),
///   at most ``OutlierPolicy/maxEjectionTime``.
/// * Unless that ejection would put more than ``OutlierPolicy/maxEjectedPercent`` of the service's
///   endpoints out at once: then it is not ejected, ``ejectionOverflowsTotal`` counts it, and its
///   count starts again, so it is tried again after as many more failures (Envoy does not retry
///   until a success resets its count; retrying lets a still-failing endpoint go out once an
///   earlier one has returned).
/// * An ejected endpoint returns at exactly its ejection's end (Envoy returns it at the next
///   10 s sweep after that), with its failure count at 0. While ejected, results for it are
///   ignored: panic traffic that reaches it must not extend or renew its ejection.
/// * timesEjected goes down by one for every full `base` the endpoint spends back in service
///   (as Envoy's sweep decrements it once `base` has passed since the return, though Envoy then
///   decrements on every 10 s sweep; one step per `base` keeps a flapping endpoint's backoff
///   longer). It stops growing at ``OutlierPolicy/maxMultiplier``.
public struct OutlierEjection<Endpoint: Hashable & Sendable>: Sendable {
    /// What ``recordConnectFailure(endpoint:at:)`` did.
    public enum FailureOutcome: Sendable, Hashable {
        /// Counted: this many failures in a row so far, below the threshold.
        case counted(consecutiveFailures: Int)
        /// Ejected until the instant given.
        case ejected(until: ContinuousClock.Instant)
        /// Reached the threshold, but ejecting would exceed the max ejected percent.
        case overflow
        /// Not counted: the endpoint is not in the set, or it is ejected already.
        case ignored
    }

    private struct State: Sendable {
        var consecutiveFailures = 0
        /// Set while ejected (and until the return is processed, which happens lazily).
        var ejectedUntil: ContinuousClock.Instant?
        /// The backoff multiplier: ejections in a row, less the decay steps.
        var timesEjected = 0
        /// The start of the current decay step: the return, then each `base` after it.
        var decayFrom: ContinuousClock.Instant?
    }

    public let policy: OutlierPolicy
    /// The service's endpoints, in the order given (new ones appended by ``update(endpoints:)``).
    public private(set) var endpoints: [Endpoint]
    private var states: [Endpoint: State]
    /// Returns processed but not yet taken by ``takeReturns(at:)``, in return order.
    private var returned: [Endpoint] = []
    /// The earliest end of a current ejection: nothing to process before it.
    private var nextReturn: ContinuousClock.Instant?
    /// The latest time seen: earlier times are read as this one.
    private var latest: ContinuousClock.Instant?

    /// Ejections made since creation (Envoy's `ejections_enforced_total`).
    public private(set) var ejectionsTotal: UInt64 = 0
    /// Ejections refused because of the max ejected percent (Envoy's `ejections_overflow`).
    public private(set) var ejectionOverflowsTotal: UInt64 = 0
    /// Ejected endpoints that came back into service.
    public private(set) var returnsTotal: UInt64 = 0

    /// Over `endpoints` (duplicates count once), none ejected.
    public init(endpoints: some Sequence<Endpoint>, policy: OutlierPolicy = .standard) {
        self.policy = policy
        self.endpoints = []
        states = [:]
        update(endpoints: endpoints)
    }

    /// Replaces the endpoint set (a new route table): endpoints that stay keep their state
    /// (ejection, count, backoff); new ones start clean; removed ones are forgotten, and an
    /// ejected one that is removed is not reported as a return.
    public mutating func update(endpoints newEndpoints: some Sequence<Endpoint>) {
        var seen = Set<Endpoint>()
        let unique = newEndpoints.filter { seen.insert($0).inserted }
        states = Dictionary(uniqueKeysWithValues: unique.map { ($0, states[$0] ?? State()) })
        let known = Set(endpoints)
        endpoints = endpoints.filter { seen.contains($0) } + unique.filter { !known.contains($0) }
        returned.removeAll { !seen.contains($0) }
        nextReturn = states.values.compactMap(\.ejectedUntil).min()
    }

    /// A connect to `endpoint` failed at `now` (refused, timed out, unreachable): counts it, and
    /// ejects the endpoint when the count reaches the threshold (see the type's rules).
    @discardableResult
    public mutating func recordConnectFailure(endpoint: Endpoint, at now: ContinuousClock.Instant) -> FailureOutcome {
        let now = advance(to: now)
        guard var state = states[endpoint], state.ejectedUntil == nil else { return .ignored }
        state = decayed(state, at: now)
        state.consecutiveFailures += 1
        defer { states[endpoint] = state }
        guard state.consecutiveFailures >= policy.consecutiveFailures else {
            return .counted(consecutiveFailures: state.consecutiveFailures)
        }
        state.consecutiveFailures = 0
        let ejected = states.values.count(where: { $0.ejectedUntil != nil })
        guard (ejected + 1) * 100 <= policy.maxEjectedPercent * states.count else {
            ejectionOverflowsTotal += 1
            return .overflow
        }
        state.timesEjected = min(state.timesEjected + 1, policy.maxMultiplier)
        let until = now + min(policy.baseEjectionTime * state.timesEjected, policy.maxEjectionTime)
        state.ejectedUntil = until
        state.decayFrom = nil
        nextReturn = min(nextReturn ?? until, until)
        ejectionsTotal += 1
        return .ejected(until: until)
    }

    /// A connect to `endpoint` succeeded at `now`: its failures in a row start again from 0.
    public mutating func recordConnectSuccess(endpoint: Endpoint, at now: ContinuousClock.Instant) {
        advance(to: now)
        states[endpoint]?.consecutiveFailures = 0
    }

    /// Whether `endpoint` is ejected at `now`; false for an endpoint not in the set.
    public func isEjected(_ endpoint: Endpoint, at now: ContinuousClock.Instant) -> Bool {
        guard let until = states[endpoint]?.ejectedUntil else { return false }
        return until > max(now, latest ?? now)
    }

    /// When the current ejection of `endpoint` ends; nil when it is not ejected (or not in the
    /// set). A time already past means it returns at the next call that takes a time.
    public func ejectedUntil(_ endpoint: Endpoint) -> ContinuousClock.Instant? {
        states[endpoint]?.ejectedUntil
    }

    /// Every endpoint ejected at `now`.
    public func ejectedEndpoints(at now: ContinuousClock.Instant) -> Set<Endpoint> {
        let now = max(now, latest ?? now)
        return Set(states.compactMap { endpoint, state in state.ejectedUntil.map { $0 > now } == true ? endpoint : nil })
    }

    /// The backoff multiplier of `endpoint` at `now`: its ejections in a row, less one for every
    /// full base ejection time it has been back (0 for an endpoint not in the set). The next
    /// ejection lasts `base ×` this `+ 1`, capped.
    public func timesEjected(_ endpoint: Endpoint, at now: ContinuousClock.Instant) -> Int {
        guard let state = states[endpoint] else { return 0 }
        return decayed(returnedIfDue(state, at: max(now, latest ?? now)), at: max(now, latest ?? now)).timesEjected
    }

    /// The failures in a row of `endpoint` so far (0 for an endpoint not in the set).
    public func consecutiveFailures(_ endpoint: Endpoint) -> Int {
        states[endpoint]?.consecutiveFailures ?? 0
    }

    /// The endpoints whose ejection ended by `now` and that were not taken yet, in the order they
    /// returned (ties in ``endpoints`` order): for the caller to count and log. Each return is
    /// given out once.
    public mutating func takeReturns(at now: ContinuousClock.Instant) -> [Endpoint] {
        advance(to: now)
        defer { returned.removeAll() }
        return returned
    }

    /// Processes every return due by `now` (clamped to never go back) and answers the clamped time.
    @discardableResult
    private mutating func advance(to now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let now = max(now, latest ?? now)
        latest = now
        guard let due = nextReturn, due <= now else { return now }
        var returning: [(endpoint: Endpoint, at: ContinuousClock.Instant)] = []
        for endpoint in endpoints {
            guard let state = states[endpoint], let until = state.ejectedUntil, until <= now else { continue }
            states[endpoint] = returnedIfDue(state, at: now)
            returning.append((endpoint, until))
        }
        // A stable sort: ties stay in endpoint order.
        returned += returning.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element.endpoint)
        returnsTotal += UInt64(returning.count)
        nextReturn = states.values.compactMap(\.ejectedUntil).min()
        return now
    }

    /// `state` with its ejection ended if it ended by `now`: back in service since the end, with
    /// no failures counted (as Envoy resets the counters on return, so that a few new failures do
    /// not eject it again at once).
    private func returnedIfDue(_ state: State, at now: ContinuousClock.Instant) -> State {
        guard let until = state.ejectedUntil, until <= now else { return state }
        var state = state
        state.ejectedUntil = nil
        state.consecutiveFailures = 0
        state.decayFrom = until
        return state
    }

    /// `state` with one step of decay taken off timesEjected for every full base ejection time
    /// since the last step, when it is in service.
    private func decayed(_ state: State, at now: ContinuousClock.Instant) -> State {
        guard state.ejectedUntil == nil, state.timesEjected > 0, let from = state.decayFrom, from < now else { return state }
        let base = policy.baseEjectionTime
        let steps = min(Int((from.duration(to: now) / base).rounded(.down)), state.timesEjected)
        var state = state
        state.timesEjected -= steps
        state.decayFrom = from + base * steps
        return state
    }
}
