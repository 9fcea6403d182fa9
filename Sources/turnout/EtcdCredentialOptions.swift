import ArgumentParser
import TurnoutControl
import TurnoutModel

/// The user for an etcd with authentication enabled: every command that talks to etcd
/// (`publish`, `apply --watch`, `proxy --source`) shares the options. The password comes from a
/// file (a mounted secret), not the command line, where `ps` shows it to every user.
struct EtcdCredentialOptions: ParsableArguments {
    @Option(name: .customLong("etcd-user"), help: ArgumentHelp("For an etcd with authentication enabled: the user to authenticate as; with --etcd-password-file.", valueName: "name"))
    var user: String?

    @Option(name: .customLong("etcd-password-file"), help: ArgumentHelp("The password of --etcd-user: the file's first line.", valueName: "file"))
    var passwordFile: String?

    /// Whether either option was given.
    var isGiven: Bool { user != nil || passwordFile != nil }

    /// The credentials, the password read now; nil when neither option is given. A missing
    /// partner or an unreadable or empty file is bad input (exit 2), named with its option.
    func credentials() throws -> EtcdCredentials? {
        guard isGiven else { return nil }
        guard let user, let passwordFile else { throw BadInput(message: "--etcd-user and --etcd-password-file go together: give both, or neither") }
        guard !user.isEmpty else { throw BadInput(message: "--etcd-user: an etcd user name cannot be empty") }
        do {
            return try EtcdCredentials(user: user, passwordFile: passwordFile)
        } catch {
            throw BadInput(message: "--etcd-password-file \(error)")
        }
    }
}
