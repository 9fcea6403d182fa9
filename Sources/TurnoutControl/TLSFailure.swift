import CTurnoutTLS
import TurnoutModel

/// Why TLS failed, as one line: the check that failed, OpenSSL's reasons, or the socket call
/// that failed under OpenSSL (``systemCall``, which the exchange reports as a transfer error
/// with its errno).
struct TLSFailure: Error {
    var reason: String
    /// The socket call OpenSSL made that failed (`SSL_read: Connection reset by peer`).
    var systemCall: SystemCallError?

    init(_ reason: String, systemCall: SystemCallError? = nil) {
        self.reason = reason
        self.systemCall = systemCall
    }

    /// The reasons on this thread's OpenSSL error queue, oldest first, and the queue emptied.
    static func openSSLReasons() -> String {
        var reasons: [String] = []
        while true {
            let code = CTurnoutTLS_ERR_get_error()
            guard code != 0 else { break }
            let reason = CTurnoutTLS_ERR_reason_error_string(code).map { String(cString: $0) } ?? "error \(code)"
            if reasons.last != reason { reasons.append(reason) }
        }
        return reasons.isEmpty ? "no reason given" : reasons.joined(separator: ": ")
    }
}
