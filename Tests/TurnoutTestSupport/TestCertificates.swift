import Foundation

/// A throwaway PKI for the https tests, made by the `openssl` command line in a temporary
/// directory of its own: a CA, server certificates it signed, a client certificate it signed,
/// and another CA that signed nothing the servers hold. P-256 keys, valid for two days.
///
/// Server certificates are made per name list (``server(_:names:)``), so a test can give a
/// server one that names another address than the one the client dials. ``remove()`` (or the
/// object going away) deletes the directory. `openssl` must be installed (scripts/bootstrap
/// installs it).
public final class TestCertificates: Sendable {
    public let directory: String

    /// The CA (PEM) every certificate here but ``otherCAFile`` leads to.
    public var caFile: String { path("ca.crt") }
    /// A CA that signed nothing the servers present.
    public var otherCAFile: String { path("other-ca.crt") }
    /// A client certificate (and its key) signed by the CA, for etcd's `--client-cert-auth`.
    public var clientCertificateFile: String { path("client.crt") }
    public var clientKeyFile: String { path("client.key") }

    /// The client key encrypted with a passphrase (which a daemon cannot type).
    public var encryptedClientKeyFile: String { path("client-encrypted.key") }

    /// Makes the CAs and the client certificate.
    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-certs-\(getpid())-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            try makeCA("ca")
            try makeCA("other-ca")
            try sign("client", names: "DNS:turnout-client", usage: "clientAuth")
            try openssl(["pkey", "-in", clientKeyFile, "-aes256", "-passout", "pass:turnout", "-out", encryptedClientKeyFile])
        } catch {
            remove()
            throw error
        }
    }

    /// A server certificate and key (PEM) signed by the CA, naming `names` in openssl's
    /// subjectAltName syntax (`IP:127.0.0.1,DNS:localhost`); made once per `name`.
    public func server(_ name: String, names: String) throws -> (certificate: String, key: String) {
        if !FileManager.default.fileExists(atPath: path("\(name).crt")) {
            try sign(name, names: names, usage: "serverAuth,clientAuth")
        }
        return (path("\(name).crt"), path("\(name).key"))
    }

    public func path(_ file: String) -> String { directory + "/" + file }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }

    deinit { remove() }

    private func makeCA(_ name: String) throws {
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", path("\(name).key"), "-out", path("\(name).crt"), "-days", "2", "-subj", "/CN=turnout test \(name)"])
    }

    private func sign(_ name: String, names: String, usage: String) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=\(name)"])
        try "subjectAltName=\(names)\nextendedKeyUsage=\(usage)\n".write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", path("\(name).csr"), "-CA", caFile, "-CAkey", path("ca.key"), "-CAcreateserial",
                     "-out", path("\(name).crt"), "-days", "2", "-extfile", path("\(name).ext")])
    }

    private func openssl(_ arguments: [String]) throws {
        let result = try Subprocess.run(try Subprocess.locate("openssl"), arguments, timeLimit: .seconds(30))
        guard result.status == 0 else {
            throw ServiceLabError("openssl \(arguments.joined(separator: " ")): \(result.standardError)")
        }
    }
}
