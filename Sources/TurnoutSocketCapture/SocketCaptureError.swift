import TurnoutModel

/// Why installing, replacing or removing a socket capture failed: the call and its errno, or
/// something about the host the operator must change, said in a sentence.
public enum SocketCaptureError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A system or libbpf call failed (libbpf's reasons, such as the verifier's, went to stderr).
    case system(String, Int32)
    /// The host lacks something the capture needs.
    case unsupported(String)

    public var description: String {
        switch self {
        case .system(let call, let code): SystemCallError(call: call, errno: code).description
        case .unsupported(let reason): reason
        }
    }
}
