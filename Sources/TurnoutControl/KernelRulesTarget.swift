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
/// period and sends the retire, under the same lock (the next install waits for that thread).
/// If the retire fails (another process committed in between), that thread applies the table
/// again at once, which reads the kernel back and rebuilds; the next install's line says so.
public final class KernelRulesTarget: ReconcileTarget {
    public enum Backend: String, Sendable { case nft, iptables }

    public let name: String
    private let options: ServiceCompilerOptions
    private let backend: Mutex<Installer>
    /// Makes the nft backend at the first install (in the caller's network namespace); tests
    /// make one in a namespace of theirs, with their hooks.
    private let makeNftablesBackend: @Sendable () throws(NetlinkError) -> NftablesBackend
    /// The thread settling the last change's retire, and what it had to repair, for the next
    /// install's line.
    private let settling = Mutex<(thread: JoinableThread?, notice: String?)>((nil, nil))

    private enum Installer {
        /// The backend once made, and the table it last installed (applied again when its
        /// deferred retire fails).
        case nft(NftablesBackend?, installed: ServiceTable?)
        case iptables(IptablesBackend)
    }

    public convenience init(backend: Backend, options: ServiceCompilerOptions) {
        self.init(backend: backend, options: options) { () throws(NetlinkError) in try NftablesBackend() }
    }

    init(backend: Backend, options: ServiceCompilerOptions,
         makeNftablesBackend: @escaping @Sendable () throws(NetlinkError) -> NftablesBackend) {
        name = "kernel (\(backend.rawValue))"
        self.options = options
        self.makeNftablesBackend = makeNftablesBackend
        self.backend = Mutex(backend == .nft ? .nft(nil, installed: nil) : .iptables(IptablesBackend()))
    }

    deinit { _ = settle() }

    /// Sends the last change's retire now if it is still pending (after the settling thread is
    /// done): a daemon calls it before it exits, so it leaves the table exact and its record
    /// written. Blocks for about one grace period and one commit. Returns what went wrong and
    /// what was done about it, if anything did, for the log.
    public func settle() -> String? {
        settleThread()?.join()
        sendPendingRetire()
        return takeNotice()
    }

    public func install(_ table: ServiceTable) throws -> String {
        // The settling thread takes the lock too; waiting for it outside the lock lets it finish.
        settleThread()?.join()
        let (report, retirePending) = try backend.withLock { installer throws -> (ApplyReport, Bool) in
            switch installer {
            case .nft(let existing, _):
                let nft: NftablesBackend
                if let existing {
                    nft = existing
                } else {
                    nft = try makeNftablesBackend()
                    nft.retireTiming = .deferred
                }
                installer = .nft(nft, installed: nil)
                let report = try nft.apply(table, options: options)
                installer = .nft(nft, installed: table)
                return (report, nft.hasPendingRetire)
            case .iptables(let iptables):
                return (try iptables.apply(table, options: options), false)
            }
        }
        let notice = takeNotice()
        if retirePending { startSettling() }
        return (notice.map { "(after the last change: \($0)) " } ?? "")
            + "\(report.outcome.rawValue), \(report.messages) messages" + (retirePending ? " (retire after one grace period)" : "")
            + (report.changes.isEmpty ? "" : ": " + report.changes.joined(separator: "; "))
    }

    /// Starts the thread that sends the pending retire; settles here and now if no thread can
    /// be made, rather than leave the retire to a next change that may not come.
    private func startSettling() {
        guard let thread = try? JoinableThread({ [self] in sendPendingRetire() }) else {
            sendPendingRetire()
            return
        }
        settling.withLock { $0.thread = thread }
    }

    /// Sends the nft backend's pending retire, if any (the settling thread's work). A retire that
    /// fails has made the backend forget what it wrote, and the kernel holds a table between the
    /// old and the new one: the table is applied again (read back, rebuilt) at once, up to three
    /// times, and the notice says what happened.
    private func sendPendingRetire() {
        let notice = backend.withLock { installer -> String? in
            guard case .nft(let nft?, let installed) = installer, nft.hasPendingRetire else { return nil }
            do throws(NetlinkError) {
                try nft.settle()
                return nil
            } catch {
                guard let installed else { return "the retire failed (\(error)); the next change rebuilds" }
                var notice = "the retire failed (\(error))"
                for _ in 1...3 {
                    do throws(NetlinkError) {
                        let report = try nft.apply(installed, options: options)
                        try nft.settle()
                        return notice + "; applied again: \(report.outcome.rawValue), \(report.messages) messages"
                    } catch {
                        notice += "; applying again failed (\(error))"
                    }
                }
                return notice + "; the next change rebuilds"
            }
        }
        if let notice { settling.withLock { $0.notice = notice } }
    }

    /// Takes what the settling thread had to repair, if anything, for a log line.
    private func takeNotice() -> String? {
        settling.withLock { state in
            defer { state.notice = nil }
            return state.notice
        }
    }

    /// Takes the settling thread's handle, if there is one, for the caller to join.
    private func settleThread() -> JoinableThread? {
        settling.withLock { state in
            defer { state.thread = nil }
            return state.thread
        }
    }
}
