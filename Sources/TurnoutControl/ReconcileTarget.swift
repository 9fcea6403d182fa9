import TurnoutModel

/// Something the ``Reconciler`` installs tables into: the kernel's rules (``KernelRulesTarget``)
/// or a running proxy's snapshot.
///
/// `install` runs on the reconciler's thread, one call at a time, with a valid table that
/// differs from the last one installed; it throws when the table could not be installed, in
/// which case what was installed before must still be in place (kernel changes are one
/// transaction). Returns one line for the log (`nft: 4 messages`).
public protocol ReconcileTarget: Sendable {
    /// For logs and `/stats`: `kernel (nft)`, `proxy`.
    var name: String { get }
    func install(_ table: ServiceTable) throws -> String
}
