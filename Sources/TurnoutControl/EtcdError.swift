import TurnoutModel

/// Why a request to etcd failed, naming the server, the call and etcd's own words.
///
/// `description` is the message for people and logs, e.g.
/// `etcd POST http://127.0.0.1:2379/v3/kv/txn: HTTP 400: etcdserver: too many operations in txn request (code 3)`.
public enum EtcdError: Error, Sendable, CustomStringConvertible {
    /// etcd could not be reached or the exchange broke (refused, reset, timed out, interrupted).
    case unreachable(HTTPError)
    /// etcd answered with an error: the HTTP status, etcd's message and its gRPC code.
    case refused(request: String, status: Int, message: String, code: Int?)
    /// etcd answered something this client cannot read.
    case badResponse(request: String, what: String)
    /// No member of several answered: each one's failure, in the order tried.
    indirect case noMemberAnswered([EtcdError])
    /// The password could not be read for an authentication (its file gone or emptied).
    case credentials(ValueError)

    public var description: String {
        switch self {
        case .unreachable(let error):
            "etcd \(error)"
        case .refused(let request, let status, let message, let code):
            "etcd \(request): HTTP \(status): \(message)\(code.map { " (code \($0))" } ?? "")"
        case .badResponse(let request, let what):
            "etcd \(request): unexpected answer: \(what)"
        case .noMemberAnswered(let failures):
            "no etcd member answered: " + failures.map(\.description).joined(separator: "; ")
        case .credentials(let error):
            "etcd password: \(error)"
        }
    }

    /// True when etcd refused a request for its token: expired (HTTP 401, gRPC code 16), or
    /// issued before the users or roles last changed. Another token may succeed.
    var isInvalidToken: Bool {
        guard case .refused(_, let status, let message, let code) = self else { return false }
        return status == 401 || code == 16 || message.contains("revision of auth store is old")
    }

    /// True when the caller's interrupt ended the request (a source stopping), not etcd.
    public var isInterrupted: Bool {
        if case .unreachable(let error) = self, error.kind == .interrupted { return true }
        return false
    }
}
