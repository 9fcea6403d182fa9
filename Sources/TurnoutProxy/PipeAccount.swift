import Synchronization

/// The bytes of pipe capacity the proxy holds now, against its ``PipeBudget``: shared by every
/// worker's ``PipePool``, which asks it before making a pipe and tells it when one is closed.
///
/// Sendable: atomics only. Asked once per pipe made (spare pipes are reused without asking), so
/// a compare-and-swap loop costs nothing that matters.
final class PipeAccount: Sendable {
    /// What a pool may make: a pipe of `request` bytes (0: the kernel's default), charged as
    /// `bytes`.
    struct Grant: Equatable {
        let request: Int32
        let bytes: Int
    }

    /// Nil: no limit.
    let limit: Int?
    /// `--pipe-size` (0: the kernel's default).
    let preferredSize: Int32
    /// The kernel's default pipe: 16 pages.
    let defaultBytes: Int
    private let held = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)
    /// After the kernel made a pipe smaller than asked (the uid's allowance is spent by this
    /// or another of its processes): no new pipe beyond what was held then, until the
    /// monotonic nanoseconds in `kernelCeilingUntil`, so a busy relay does not make and
    /// close a pipe on every round.
    private let kernelCeiling = Atomic<Int>(0)
    private let kernelCeilingUntil = Atomic<Int64>(0)
    static let kernelCeilingHold: Int64 = 5_000_000_000

    init(limit: Int?, preferredSize: Int32, pageSize: Int) {
        self.limit = limit
        self.preferredSize = preferredSize
        defaultBytes = 16 * pageSize
    }

    /// Bytes held now (lent to relays or spare in a pool, or granted and being made) and the
    /// most that existing pipes held at once.
    var bytesHeld: Int { held.load(ordering: .relaxed) }
    var bytesPeak: Int { peak.load(ordering: .relaxed) }

    /// A pipe of the preferred size while at most half the budget is used (all of it when the
    /// preferred size is the default or less), else one of the kernel's default size, else nil:
    /// the budget is spent. `now`: monotonic nanoseconds.
    func reserve(now: Int64) -> Grant? {
        var ceiling = limit ?? Int.max
        if now < kernelCeilingUntil.load(ordering: .acquiring) {
            ceiling = min(ceiling, kernelCeiling.load(ordering: .relaxed))
        }
        let preferred = Grant(request: preferredSize, bytes: preferredSize > 0 ? Int(preferredSize) : defaultBytes)
        guard preferred.bytes > defaultBytes else { return charge(preferred, within: ceiling) }
        return charge(preferred, within: ceiling == Int.max ? ceiling : ceiling / 2)
            ?? charge(Grant(request: 0, bytes: defaultBytes), within: ceiling)
    }

    /// Adds `grant` to what is held if the sum stays within `bound`.
    private func charge(_ grant: Grant, within bound: Int) -> Grant? {
        var current = held.load(ordering: .relaxed)
        while current <= bound - grant.bytes {
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + grant.bytes, ordering: .relaxed)
            if exchanged { return grant }
            current = original
        }
        return nil
    }

    /// The pipe made for `grant` has `capacity` bytes: the charge follows what the kernel made.
    /// Must follow every grant whose pipe was made (the peak is taken here, from pipes that exist).
    func settle(_ grant: Grant, capacity: Int) {
        let now = held.wrappingAdd(capacity - grant.bytes, ordering: .relaxed).newValue
        _ = peak.max(now, ordering: .relaxed)
    }

    /// A pipe of `bytes` was closed (or its grant was not used).
    func release(_ bytes: Int) {
        held.wrappingSubtract(bytes, ordering: .relaxed)
    }

    /// The kernel made a pipe smaller than asked: hold at what is held now for a while.
    func kernelRefused(now: Int64) {
        kernelCeiling.store(held.load(ordering: .relaxed), ordering: .relaxed)
        kernelCeilingUntil.store(now + Self.kernelCeilingHold, ordering: .releasing)
    }
}
