import CTurnoutTLS
import Glibc
import TurnoutModel

/// A TLS client session on a connected non-blocking TCP socket: what turns an ``HTTPExchange``
/// into https.
///
/// The socket stays its owner's: the session neither closes it nor outlives it. Each call does
/// what the socket allows without waiting and says which readiness to wait for otherwise
/// (``Progress/wantRead`` or ``Progress/wantWrite``), so the caller's `poll(2)` keeps its
/// deadline and interrupt. The server's certificate must lead to a trusted CA and name
/// `serverName`: an IP address is matched against the certificate's IP addresses, a host name
/// against its DNS names (and sent as SNI). Not thread-safe: one thread uses it. The
/// corresponding C calls are `SSL_connect`, `SSL_read` and `SSL_write`.
final class TLSSession {
    /// What a call did.
    enum Progress: Equatable {
        /// Done; for a read or write, the bytes moved (0 from a read: the end of the stream).
        case done(Int)
        /// Call again once the socket is readable.
        case wantRead
        /// Call again once the socket is writable.
        case wantWrite

        /// The `poll(2)` events a wait for this needs (`POLLIN` for `wantRead`, `POLLOUT` for
        /// `wantWrite`); nil when done.
        var waitEvents: Int16? {
            switch self {
            case .done: nil
            case .wantRead: Int16(POLLIN)
            case .wantWrite: Int16(POLLOUT)
            }
        }
    }

    /// A member going away, or one that speaks plain HTTP there (Go's server closes on a
    /// ClientHello it cannot read).
    private static let closedInHandshake = "the server closed the connection during the handshake (stopping, or not TLS on this port: http://?)"

    private let context: TLSContext
    private let ssl: OpaquePointer
    let serverName: String
    /// Whether a client certificate was configured, for the hint on a server's refusal.
    private let presentsCertificate: Bool
    /// Whether the system's CAs are the trusted ones, for the hint on a refused certificate.
    private let trustsSystemCAs: Bool

    init(_ configuration: TLSClientConfiguration, socket descriptor: Int32, serverName: String) throws(TLSFailure) {
        context = try configuration.context()
        CTurnoutTLS_ERR_clear_error()
        guard let ssl = CTurnoutTLS_SSL_new(context.pointer) else { throw TLSFailure("cannot start TLS: \(TLSFailure.openSSLReasons())") }
        self.ssl = ssl
        self.serverName = serverName
        presentsCertificate = configuration.certificateFile != nil
        trustsSystemCAs = configuration.trustedCertificatesFile == nil
        CTurnoutTLS_set_partial_moving_writes(ssl)
        guard CTurnoutTLS_SSL_set_fd(ssl, descriptor) == 1 else { throw TLSFailure("cannot start TLS: \(TLSFailure.openSSLReasons())") }
        let named: Int32
        if IPAddress(serverName) != nil {
            named = CTurnoutTLS_X509_VERIFY_PARAM_set1_ip_asc(CTurnoutTLS_SSL_get0_param(ssl), serverName)
        } else {
            // As Go's and etcdctl's checks: a name must be among the DNS names (never the
            // subject's CN), and a wildcard stands for one whole label.
            CTurnoutTLS_SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            named = CTurnoutTLS_SSL_set1_host(ssl, serverName) & CTurnoutTLS_set_server_name_indication(ssl, serverName)
        }
        guard named == 1 else { throw TLSFailure("cannot check the certificate for \(serverName): \(TLSFailure.openSSLReasons())") }
    }

    deinit { CTurnoutTLS_SSL_free(ssl) }

    /// One step of the handshake; `.done(0)` once it is complete. A refused certificate
    /// throws the verifier's reason (for example "IP address mismatch", "unable to get local
    /// issuer certificate"); a server that closes the connection meanwhile, that it did.
    func handshake() throws(TLSFailure) -> Progress {
        CTurnoutTLS_ERR_clear_error()
        errno = 0
        let result = CTurnoutTLS_SSL_connect(ssl)
        if result == 1 { return .done(0) }
        return try progress(of: result, call: "SSL_connect")
    }

    /// `SSL_read`: decrypted bytes into `buffer`; `.done(0)` at the end of the stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(TLSFailure) -> Progress {
        CTurnoutTLS_ERR_clear_error()
        errno = 0
        let result = CTurnoutTLS_SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        if result > 0 { return .done(Int(result)) }
        return try progress(of: result, call: "SSL_read")
    }

    /// `SSL_write`: some or all of `bytes` (partial writes are on); never `.done(0)` for bytes.
    func write(_ bytes: UnsafeRawBufferPointer) throws(TLSFailure) -> Progress {
        guard !bytes.isEmpty else { return .done(0) }
        CTurnoutTLS_ERR_clear_error()
        errno = 0
        let result = CTurnoutTLS_SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
        if result > 0 { return .done(Int(result)) }
        return try progress(of: result, call: "SSL_write")
    }

    /// Whether decrypted bytes wait inside OpenSSL, where `poll(2)` cannot see them: the rest
    /// of a record a read did not take.
    var hasPendingBytes: Bool { CTurnoutTLS_SSL_pending(ssl) > 0 }

    /// What a call's result means: a wait, the end of the stream (for a read only), or a
    /// failure. Only a read may end at the stream's end: a handshake or a write that meets it
    /// would otherwise report progress that never comes.
    private func progress(of result: Int32, call: String) throws(TLSFailure) -> Progress {
        let code = CTurnoutTLS_SSL_get_error(ssl, result)
        let error = errno
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN where call == "SSL_read": return .done(0)
        case SSL_ERROR_ZERO_RETURN:
            throw TLSFailure(call == "SSL_connect" ? Self.closedInHandshake : "the server closed the connection")
        case SSL_ERROR_SYSCALL where error != 0:
            _ = TLSFailure.openSSLReasons()
            let failure = SystemCallError(call: call, errno: error)
            // A server that is not speaking TLS may close with a reset rather than a FIN (Go's
            // closes with the ClientHello unread): the same hint as for a plain close.
            let reason = call == "SSL_connect" && error == ECONNRESET ? "\(Self.closedInHandshake): \(failure)" : "\(failure)"
            throw TLSFailure(reason, systemCall: failure)
        case SSL_ERROR_SYSCALL:
            let reasons = TLSFailure.openSSLReasons()
            throw TLSFailure(call == "SSL_connect" ? Self.closedInHandshake : "\(call): \(reasons)")
        default:
            let verification = CTurnoutTLS_SSL_get_verify_result(ssl)
            let reasons = TLSFailure.openSSLReasons()
            if verification != Int(X509_V_OK) {
                let why = String(cString: CTurnoutTLS_X509_verify_cert_error_string(verification))
                let trusted = trustsSystemCAs ? "; the system's CAs are trusted, name the cluster's CA" : ""
                throw TLSFailure("the server's certificate is refused: \(why) (checked for \(serverName)\(trusted))")
            }
            if reasons.contains("wrong version number") || reasons.contains("packet length too long") {
                throw TLSFailure("the server does not speak TLS on this port (\(reasons); is it http://?)")
            }
            if reasons.contains("alert") {
                // A TLS 1.3 server checks the client's certificate after the client finished
                // its handshake, so a missing one shows as an alert on the first read.
                let hint = !presentsCertificate && reasons.contains("certificate")
                    ? " (the server may want a client certificate, and none is configured)" : ""
                throw TLSFailure("the server ended the session: \(reasons)\(hint)")
            }
            throw TLSFailure("\(call): \(reasons)")
        }
    }
}
