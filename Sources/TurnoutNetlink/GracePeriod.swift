import CTurnoutLinux
import Glibc

/// A wait until no packet is still walking rules committed before the wait began.
///
/// nf_tables makes one transaction atomic, but not a sequence of them: a packet evaluates its
/// hooks inside an RCU read-side section, reads each map element in the generation current at
/// that lookup, and can be preempted (or its vCPU descheduled) between two lookups. A phased
/// apply (``TableDelta/Phase``) counts on no packet crossing both its switchover and its retire:
/// one that took the old rules' path before the switchover would otherwise look up keys the
/// retire has just deleted and leave without DNAT. Measured: 1 SYN in about 9,000 connections,
/// once in several runs of 999:1 ↔ 199:1 switched as fast as apply goes (`TransactionTests`).
/// Waiting one grace period between the two commits closes that window.
///
/// The corresponding C call is `membarrier(MEMBARRIER_CMD_GLOBAL)`, which the kernel implements
/// with `synchronize_rcu()`. Blocks the calling thread for one grace period: 8 ms median, 20 ms
/// at most in 50 calls on this 2-core VM under load. Where the kernel refuses the call (no
/// `CONFIG_MEMBARRIER`, or `nohz_full` CPUs) it sleeps ``fallback`` instead, which shrinks the
/// window without closing it; ``wait()`` says which happened.
public enum GracePeriod {
    /// How the wait was made.
    public enum Method: Sendable, Equatable {
        /// A full RCU grace period: no packet is still in a hook it entered before the call.
        case membarrier
        /// The kernel refused membarrier (its errno); ``fallback`` was slept instead.
        case slept(errno: Int32)
    }

    /// What is slept when the kernel has no membarrier: several grace periods' worth.
    public static let fallback: Duration = .milliseconds(50)

    /// Waits one grace period (or ``fallback``); never fails.
    @discardableResult
    public static func wait() -> Method {
        if CTurnoutLinux_membarrier_global() == 0 { return .membarrier }
        let code = errno
        let end = ContinuousClock.now + fallback
        while ContinuousClock.now < end { usleep(UInt32(max(1, (end - ContinuousClock.now) / .microseconds(1)))) }
        return .slept(errno: code)
    }
}
