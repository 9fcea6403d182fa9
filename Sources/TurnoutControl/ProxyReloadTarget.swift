import TurnoutModel
import TurnoutProxy

/// Installs tables into a running ``TransparentProxy``: a new immutable snapshot its workers
/// pick up at their next accept (established connections keep their endpoint). Never fails.
public struct ProxyReloadTarget: ReconcileTarget {
    public let name = "proxy"
    private let proxy: TransparentProxy

    public init(_ proxy: TransparentProxy) {
        self.proxy = proxy
    }

    public func install(_ table: ServiceTable) throws -> String {
        let generation = proxy.reload(table)
        return "\(proxy.snapshot.routes.routes.count) routes, generation \(generation)"
    }
}
