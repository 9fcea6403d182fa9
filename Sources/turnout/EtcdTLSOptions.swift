import ArgumentParser
import TurnoutControl
import TurnoutModel

/// The TLS files for an `https://` etcd, under etcdctl's names: every command that talks to
/// etcd (`publish`, `apply --watch`, `proxy --source`) shares them.
struct EtcdTLSOptions: ParsableArguments {
    @Option(name: .customLong("etcd-cacert"), help: ArgumentHelp("For https:// etcd: the CA certificates (PEM) its certificate must lead to (default: the system's).", valueName: "file"))
    var trustedCertificates: String?

    @Option(name: .customLong("etcd-cert"), help: ArgumentHelp("For https:// etcd: the client certificate (PEM) to present (etcd's --client-cert-auth); with --etcd-key.", valueName: "file"))
    var certificate: String?

    @Option(name: .customLong("etcd-key"), help: ArgumentHelp("For https:// etcd: the private key (PEM) of --etcd-cert.", valueName: "file"))
    var key: String?

    /// Whether any of the options was given.
    var isGiven: Bool { trustedCertificates != nil || certificate != nil || key != nil }

    /// The files, loaded once to be checked; nil when none is named. A bad file is bad input
    /// (exit 2), named with its option.
    func configuration() throws -> TLSClientConfiguration? {
        guard isGiven else { return nil }
        guard (certificate == nil) == (key == nil) else { throw BadInput(message: "--etcd-cert and --etcd-key go together: give both, or neither") }
        do {
            return try TLSClientConfiguration(trustedCertificatesFile: trustedCertificates, certificateFile: certificate, keyFile: key)
        } catch {
            throw BadInput(message: "etcd TLS: \(error)")
        }
    }
}
