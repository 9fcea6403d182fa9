/// What one `apply` or `flush` did to the kernel, for the CLI to print and tests to assert on.
///
/// Produced by a backend (`NftablesBackend`, `IptablesBackend`) after its transaction committed
/// (or after it decided nothing needed to change). Plain value; safe to send anywhere.
public struct ApplyReport: Sendable, Equatable {
    /// How the backend reached the desired state.
    public enum Outcome: String, Sendable, Equatable {
        /// The installed state already matched: nothing was sent.
        case unchanged
        /// Only the difference against the installed state was sent.
        case incremental
        /// Nothing of Turnout's was installed; everything was created.
        case created
        /// The installed state was not what Turnout last wrote (drift) or could not be patched:
        /// everything was replaced in one transaction.
        case rebuilt
        /// `flush` removed Turnout's objects.
        case flushed
        /// `flush` found nothing of Turnout's to remove.
        case absent
    }

    /// `nft` or `iptables`.
    public var backend: String
    public var outcome: Outcome
    /// Kernel messages sent: netlink messages in the batch (nft, including batch begin/end), or
    /// lines of `iptables-restore` input (iptables). 0 when nothing was sent.
    public var messages: Int
    /// One line per changed object, for people: `map endpoint-picks4-mod10: -2 +2 elements`.
    public var changes: [String]
    /// Why a rebuild happened (the drift seen), when `outcome == .rebuilt`.
    public var reason: String?
    /// Services added, removed or changed since the previous apply, when a long-lived backend
    /// compiled only those; `nil` when the whole table was compiled and compared.
    public var changedServices: Int?

    public init(backend: String, outcome: Outcome, messages: Int, changes: [String] = [], reason: String? = nil,
                changedServices: Int? = nil) {
        self.backend = backend
        self.outcome = outcome
        self.messages = messages
        self.changes = changes
        self.reason = reason
        self.changedServices = changedServices
    }
}

/// What `status` found installed, and how it differs from a table when one was given.
public struct InstalledStatus: Sendable, Equatable {
    public var backend: String
    /// Whether any of Turnout's objects are installed.
    public var installed: Bool
    /// One line per installed object group: `table inet turnout: 14 chains, 8 sets, 123 elements`.
    public var summary: [String]
    /// `nil` when no table was given to compare with; empty when the kernel matches it; else
    /// unified-diff-style lines (`- installed only`, `+ table only`).
    public var drift: [String]?

    public init(backend: String, installed: Bool, summary: [String], drift: [String]? = nil) {
        self.backend = backend
        self.installed = installed
        self.summary = summary
        self.drift = drift
    }
}
