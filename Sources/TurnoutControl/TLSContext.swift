import CTurnoutTLS
import FoundationEssentials
import Glibc
import TurnoutModel

/// An OpenSSL client context (`SSL_CTX`) made from a ``TLSClientConfiguration``: peer
/// verification on, the trusted CAs and the client certificate loaded.
///
/// Kept by its configuration until a file changes, and freed once no ``TLSSession`` holds it
/// either. Errors are ``TLSFailure``.
///
/// `@unchecked Sendable`: the `SSL_CTX` is configured only in `init`, before any other thread
/// can see it; afterwards it is only read, by `SSL_new`, which takes its reference under
/// OpenSSL's own lock (openssl-threads(7): an `SSL_CTX` may be shared by threads once it is no
/// longer modified); `SSL_CTX_free` runs once, in `deinit`, after the last reference is gone.
final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer

    init(_ configuration: TLSClientConfiguration) throws(TLSFailure) {
        CTurnoutTLS_ERR_clear_error()
        guard let pointer = CTurnoutTLS_SSL_CTX_new(CTurnoutTLS_TLS_client_method()) else {
            throw TLSFailure("cannot make a TLS context: \(TLSFailure.openSSLReasons())")
        }
        self.pointer = pointer
        CTurnoutTLS_SSL_CTX_set_verify(pointer, SSL_VERIFY_PEER, nil)
        CTurnoutTLS_ignore_unexpected_eof(pointer)
        // Debian's openssl.cnf says so too; a build or a config file that allows less must not.
        guard CTurnoutTLS_require_tls12(pointer) == 1 else {
            throw TLSFailure("cannot require TLS 1.2: \(TLSFailure.openSSLReasons())")
        }
        if let file = configuration.trustedCertificatesFile {
            try Self.requireReadable(file, "the trusted CA certificates")
            guard CTurnoutTLS_SSL_CTX_load_verify_locations(pointer, file, nil) == 1 else {
                throw TLSFailure("\(file): cannot load the trusted CA certificates: \(TLSFailure.openSSLReasons())")
            }
        } else {
            guard CTurnoutTLS_SSL_CTX_set_default_verify_paths(pointer) == 1 else {
                throw TLSFailure("cannot load the system's CA certificates: \(TLSFailure.openSSLReasons())")
            }
        }
        if let certificate = configuration.certificateFile, let key = configuration.keyFile {
            try Self.requireReadable(certificate, "the client certificate")
            guard CTurnoutTLS_SSL_CTX_use_certificate_chain_file(pointer, certificate) == 1 else {
                throw TLSFailure("\(certificate): cannot load the client certificate: \(TLSFailure.openSSLReasons())")
            }
            try Self.requireReadable(key, "the client key")
            // Loading the key also checks that it matches the certificate ("key values
            // mismatch"). OpenSSL's default asks a terminal for an encrypted key's passphrase, on every
            // connection; a daemon has none, so an encrypted key is refused and named.
            CTurnoutTLS_refuse_passphrases(pointer)
            guard CTurnoutTLS_SSL_CTX_use_PrivateKey_file(pointer, key, SSL_FILETYPE_PEM) == 1 else {
                let reasons = TLSFailure.openSSLReasons()
                if Self.isEncrypted(key) {
                    throw TLSFailure("\(key): the client key is encrypted, and passphrases are not supported "
                                     + "(write it unencrypted: openssl pkey -in \(key) -out KEY)")
                }
                throw TLSFailure("\(key): cannot load the client key: \(reasons)")
            }
        }
    }

    deinit { CTurnoutTLS_SSL_CTX_free(pointer) }

    /// OpenSSL says "system library" for a file it cannot open; the errno names why.
    private static func requireReadable(_ path: String, _ what: String) throws(TLSFailure) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw TLSFailure("\(path): cannot read \(what): \(SystemCallError(call: "open", errno: errno))")
        }
        close(descriptor)
    }

    /// Whether a PEM file holds an encrypted private key (PKCS#8 or the traditional form).
    private static func isEncrypted(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED")
    }
}
