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
    }

    private let context: TLSContext
    private let ssl: OpaquePointer
    let serverName: String
    /// Whether a client certificate was configured, for the hint on a server's refusal.
    private let presentsCertificate: Bool

    init(_ configuration: TLSClientConfiguration, socket descriptor: Int32, serverName: String) throws(TLSFailure) {
        context = try configuration.context()
        ERR_clear_error()
        guard let ssl = SSL_new(context.pointer) else { throw TLSFailure("cannot start TLS: \(TLSFailure.openSSLReasons())") }
        self.ssl = ssl
        self.serverName = serverName
        presentsCertificate = configuration.certificateFile != nil
        CTurnoutTLS_set_partial_moving_writes(ssl)
        guard SSL_set_fd(ssl, descriptor) == 1 else { throw TLSFailure("cannot start TLS: \(TLSFailure.openSSLReasons())") }
        let named: Int32
        if IPAddress(serverName) != nil {
            named = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
        } else {
            named = SSL_set1_host(ssl, serverName) & CTurnoutTLS_set_server_name_indication(ssl, serverName)
        }
        guard named == 1 else { throw TLSFailure("cannot check the certificate for \(serverName): \(TLSFailure.openSSLReasons())") }
    }

    deinit { SSL_free(ssl) }

    /// One step of the handshake; `.done(0)` once it is complete. A refused certificate
    /// throws the verifier's reason (for example "IP address mismatch", "unable to get local
    /// issuer certificate").
    func handshake() throws(TLSFailure) -> Progress {
        ERR_clear_error()
        let result = SSL_connect(ssl)
        if result == 1 { return .done(0) }
        return try progress(of: result, in: "the TLS handshake")
    }

    /// `SSL_read`: decrypted bytes into `buffer`.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(TLSFailure) -> Progress {
        ERR_clear_error()
        let result = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        if result > 0 { return .done(Int(result)) }
        return try progress(of: result, in: "reading the response")
    }

    /// `SSL_write`: some or all of `bytes` (partial writes are on).
    func write(_ bytes: UnsafeRawBufferPointer) throws(TLSFailure) -> Progress {
        guard !bytes.isEmpty else { return .done(0) }
        ERR_clear_error()
        let result = SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
        if result > 0 { return .done(Int(result)) }
        return try progress(of: result, in: "sending the request")
    }

    /// Whether decrypted bytes wait inside OpenSSL, where `poll(2)` cannot see them: the rest
    /// of a record a read did not take.
    var hasPendingBytes: Bool { SSL_pending(ssl) > 0 }

    /// What a call's result means: a wait, the end of the stream, or a failure.
    private func progress(of result: Int32, in phase: String) throws(TLSFailure) -> Progress {
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .done(0)
        case SSL_ERROR_SYSCALL:
            let error = errno
            let reasons = TLSFailure.openSSLReasons()
            // With SSL_OP_IGNORE_UNEXPECTED_EOF an EOF is ZERO_RETURN; this is a socket error.
            throw TLSFailure("\(phase): \(error == 0 ? reasons : String(cString: strerror(error)))")
        default:
            let verification = SSL_get_verify_result(ssl)
            let reasons = TLSFailure.openSSLReasons()
            if verification != Int(X509_V_OK) {
                let why = String(cString: X509_verify_cert_error_string(verification))
                throw TLSFailure("the server's certificate is refused: \(why) (checked for \(serverName))")
            }
            // A TLS 1.3 server checks the client's certificate after the client finished its
            // handshake, so a missing one shows as an alert on the first read.
            let hint = !presentsCertificate && reasons.contains("alert") && reasons.contains("certificate")
                ? " (the server may want a client certificate, and none is configured)" : ""
            throw TLSFailure("\(phase): the server ended the session: \(reasons)\(hint)")
        }
    }
}
