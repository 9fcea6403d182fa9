import Synchronization
import TurnoutModel
import TurnoutNetlink
import TurnoutProxy
import TurnoutRules

/// Installs tables as kernel rules, as `turnout apply` does: one transaction per table, only
/// the difference when what is installed is what Turnout last wrote.
///
/// Keeps one long-lived backend (its per-service index makes the next apply compile only the
/// services that changed) behind a lock; the ``Reconciler`` calls it from one thread. The nft
/// backend defers each change's retire (``NftablesBackend/RetireTiming/deferred``), so a change
/// is installed once traffic follows it; a thread of the target's own then waits the grace
/// period and sends the retire, under the same lock. An install that comes first settles it.
/// A retire the kernel refused (another process committed in between) is reported on the next
/// install's line, which then rebuilds.
public final class KernelRulesTarget: ReconcileTarget {
    public enum Backend: String, Sendable { case nft, iptables }

    public let name: String
    private let options: ServiceCompilerOptions
    private let backend: Mutex<Installer>
    /// The thread settling the last change's retire, and what it could not do.
    private let settling = Mutex<(thread: JoinableThread?, failure: String?)>((nil, nil))

    private enum Installer {
        case nft(NftablesBackend?)
        case iptables(IptablesBackend)
    }

    public init(backend: Backend, options: ServiceCompilerOptions) {
        name = "kernel (\(backend.rawValue))"
        self.options = options
        self.backend = Mutex(backend == .nft ? .nft(nil) : .iptables(IptablesBackend()))
    }

    deinit { settle() }

    /// Sends the last change's retire now if it is still pending (after the settling thread is
    /// done): a daemon calls it before it exits, so it leaves the table exact and its record
    /// written. Blocks for at most one grace period and one commit.
    public func settle() {
        settleThread()?.join()
        sendPendingRetire()
    }

    public func install(_ table: ServiceTable) throws -> String {
        // The settling thread takes the lock too; waiting for it outside the lock lets it finish.
        settleThread()?.join()
        let earlierFailure = settling.withLock { state in
            defer { state.failure = nil }
            return state.failure
        }
        let (report, retirePending) = try backend.withLock { installer throws -> (ApplyReport, Bool) in
            switch installer {
            case .nft(let existing):
                let nft = try existing ?? NftablesBackend()
                nft.retireTiming = .deferred
                installer = .nft(nft)
                return (try nft.apply(table, options: options), nft.hasPendingRetire)
            case .iptables(let iptables):
                return (try iptables.apply(table, options: options), false)
            }
        }
        if retirePending { startSettling() }
        return (earlierFailure.map { "(the last change's retire was refused, \($0)) " } ?? "")
            + "\(report.outcome.rawValue), \(report.messages) messages" + (retirePending ? " (retire after one grace period)" : "")
            + (report.changes.isEmpty ? "" : ": " + report.changes.joined(separator: "; "))
    }

    /// Starts the thread that sends the pending retire. If no thread can be made, the next
    /// install settles it instead.
    private func startSettling() {
        let thread = try? JoinableThread { [self] in sendPendingRetire() }
        settling.withLock { $0.thread = thread }
    }

    /// Sends the nft backend's pending retire, if any (the settling thread's work).
    private func sendPendingRetire() {
        let failure = backend.withLock { installer -> String? in
            guard case .nft(let nft?) = installer else { return nil }
            do throws(NetlinkError) {
                try nft.settle()
                return nil
            } catch {
                return "\(error)"
            }
        }
        if let failure { settling.withLock { $0.failure = failure } }
    }

    /// Takes the settling thread's handle, if there is one, for the caller to join.
    private func settleThread() -> JoinableThread? {
        settling.withLock { state in
            defer { state.thread = nil }
            return state.thread
        }
    }
}
