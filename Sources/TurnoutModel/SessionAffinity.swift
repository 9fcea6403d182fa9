/// Client-IP session affinity: a client that reached an endpoint keeps reaching it until it has
/// been silent for `timeoutSeconds`, as Kubernetes' `sessionAffinity: ClientIP` does.
public struct SessionAffinity: Hashable, Sendable {
    /// Kubernetes' default for `sessionAffinityConfig.clientIP.timeoutSeconds`.
    public static let defaultTimeoutSeconds: UInt32 = 10_800
    /// Kubernetes' upper bound, kept so imported manifests and native tables agree.
    public static let maximumTimeoutSeconds: UInt32 = 86_400

    public var timeoutSeconds: UInt32

    public init(timeoutSeconds: UInt32 = SessionAffinity.defaultTimeoutSeconds) {
        self.timeoutSeconds = timeoutSeconds
    }
}
