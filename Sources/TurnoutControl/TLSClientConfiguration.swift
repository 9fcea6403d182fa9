import CTurnoutTLS
import Glibc
import Synchronization
import TurnoutModel

/// The certificates a TLS client trusts and presents: etcdctl's `--cacert`, `--cert` and
/// `--key` (kube-apiserver's `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`).
///
/// Paths to PEM files. Each connection looks at them again (`stat(2)`) and reloads them when
/// one changed: a certificate rotated on disk (a kubeadm renewal, cert-manager) is used from the
/// next request on, without a restart. `init` reads them once, so a missing or bad file is named
/// before anything starts. The server's certificate must lead to a trusted CA and name the
/// address (or host) the client dialled; TLS 1.2 is the oldest version offered. A value; copies
/// share the loaded context.
public struct TLSClientConfiguration: Sendable, Hashable {
    /// CA certificates (PEM) a server's chain must lead to; nil: the system's (`/etc/ssl/certs`).
    public let trustedCertificatesFile: String?
    /// The client's certificate chain (PEM), for a server that asks for one (etcd's
    /// `--client-cert-auth`); with ``keyFile``, or neither.
    public let certificateFile: String?
    /// The private key (PEM) of ``certificateFile``.
    public let keyFile: String?
    /// The context last made from the files, shared by every copy of this configuration.
    private let contexts = ContextCache()

    /// Checks the files by loading them once. Throws a message naming the file and what is
    /// wrong with it (unreadable, not PEM, an encrypted key, a key that does not match the
    /// certificate).
    public init(trustedCertificatesFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) throws(ValueError) {
        guard (certificateFile == nil) == (keyFile == nil) else {
            throw ValueError("a client certificate needs its key and a key its certificate (give both, or neither)")
        }
        self.trustedCertificatesFile = trustedCertificatesFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        do {
            try OpenSSLLibrary.load()
            // Kept: the first connection uses it rather than loading the files again.
            let identities = fileIdentities
            let made = try TLSContext(self)
            contexts.current.withLock { $0 = (identities, made) }
        } catch {
            throw ValueError(error.reason)
        }
    }

    /// Whether any file is named (else the system's CAs and no client certificate).
    public var namesFiles: Bool { trustedCertificatesFile != nil || certificateFile != nil }

    public static func == (left: Self, right: Self) -> Bool {
        left.trustedCertificatesFile == right.trustedCertificatesFile && left.certificateFile == right.certificateFile
            && left.keyFile == right.keyFile
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(trustedCertificatesFile)
        hasher.combine(certificateFile)
        hasher.combine(keyFile)
    }

    /// A context from the files as they are now: the last one made while no file changed, else
    /// a new one. Made per request it would cost more than the request: OpenSSL 3 takes about
    /// 1 ms to load three small PEM files and about 28 ms to load the system's CA bundle.
    func context() throws(TLSFailure) -> TLSContext {
        try OpenSSLLibrary.load()
        let identities = fileIdentities
        if let cached = contexts.current.withLock({ $0?.identities == identities ? $0?.context : nil }) { return cached }
        let made = try TLSContext(self)
        contexts.current.withLock { $0 = (identities, made) }
        return made
    }

    /// The files' identities now (nil for one that cannot be `stat`ed); the system's CA bundle
    /// stands for the trusted CAs when none is named.
    private var fileIdentities: [FileIdentity?] {
        let files = [trustedCertificatesFile ?? String(cString: CTurnoutTLS_X509_get_default_cert_file()), certificateFile, keyFile]
        return files.compactMap { $0 }.map { FileIdentity($0) }
    }

    /// Where a configuration keeps its context; a class so that copies share it.
    private final class ContextCache: Sendable {
        /// The files' identities when the context was made (nil for a file that was missing).
        let current = Mutex<(identities: [FileIdentity?], context: TLSContext)?>(nil)
    }
}
