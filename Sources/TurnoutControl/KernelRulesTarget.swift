import Synchronization
import TurnoutModel
import TurnoutRules

/// Installs tables as kernel rules, as `turnout apply` does: one transaction per table, only
/// the difference when what is installed is what Turnout last wrote.
///
/// Keeps one long-lived backend (its per-service index makes the next apply compile only the
/// services that changed) behind a lock; the ``Reconciler`` calls it from one thread, so the
/// lock is never contended.
public final class KernelRulesTarget: ReconcileTarget {
    public enum Backend: String, Sendable { case nft, iptables }

    public let name: String
    private let options: ServiceCompilerOptions
    private let backend: Mutex<Installer>

    private enum Installer {
        case nft(NftablesBackend?)
        case iptables(IptablesBackend)
    }

    public init(backend: Backend, options: ServiceCompilerOptions) {
        name = "kernel (\(backend.rawValue))"
        self.options = options
        self.backend = Mutex(backend == .nft ? .nft(nil) : .iptables(IptablesBackend()))
    }

    public func install(_ table: ServiceTable) throws -> String {
        let report = try backend.withLock { installer throws -> ApplyReport in
            switch installer {
            case .nft(let existing):
                let nft = try existing ?? NftablesBackend()
                installer = .nft(nft)
                return try nft.apply(table, options: options)
            case .iptables(let iptables):
                return try iptables.apply(table, options: options)
            }
        }
        return "\(report.outcome.rawValue), \(report.messages) messages" + (report.changes.isEmpty ? "" : ": " + report.changes.joined(separator: "; "))
    }
}
