import FoundationEssentials
import Glibc
import TurnoutModel

/// A user name and password for an etcd that has authentication enabled (`etcdctl auth
/// enable`), as etcdctl's `--user` takes them.
///
/// ``EtcdClient`` trades them for a token (`POST /v3/auth/authenticate`) before its first
/// request and again when etcd says the token is no longer valid (it expires after etcd's
/// `--auth-token-ttl`, 300 s by default). The password is read from a file, never from the
/// command line, where every user of the host could read it in `ps`; and read again at every
/// authentication, so a rotated password (`etcdctl user passwd`, then the mounted secret
/// updated) is picked up by a running daemon: changing a password makes etcd drop every token,
/// and the next authentication reads the new one, where a password read once at start would
/// fail until a restart.
public struct EtcdCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var user: String
    /// Where the password comes from.
    public var passwordSource: PasswordSource

    public enum PasswordSource: Sendable, Hashable {
        /// The password itself (tests, and callers that hold it in memory anyway).
        case given(String)
        /// A file whose first line is the password, read at each ``password()``.
        case file(String)
    }

    /// `user NAME`: the password stays out of logs and error messages, also when a value that
    /// holds the credentials (a client) is printed whole.
    public var description: String { "user \(user)" }
    public var debugDescription: String { description }

    public init(user: String, password: String) throws(ValueError) {
        guard !password.isEmpty else { throw ValueError("the password of etcd user \(user) is empty") }
        try self.init(user: user, source: .given(password))
    }

    /// `user` with the password in `passwordFile`: its first line (a secret mounted from
    /// Kubernetes or written by `echo` ends with a newline, which is not part of it). The file
    /// is read now, so that a missing or empty one is an error at start naming it, and again at
    /// every authentication.
    public init(user: String, passwordFile: String) throws(ValueError) {
        try self.init(user: user, source: .file(passwordFile))
        _ = try password()
    }

    private init(user: String, source: PasswordSource) throws(ValueError) {
        guard !user.isEmpty else { throw ValueError("an etcd user name cannot be empty") }
        self.user = user
        passwordSource = source
    }

    /// The password now: the one given, or the file's first line as it reads at this moment.
    /// Throws a message naming the file when it cannot be read or holds no password.
    public func password() throws(ValueError) -> String {
        switch passwordSource {
        case .given(let password):
            return password
        case .file(let path):
            let bytes: [UInt8]
            do { bytes = try FileContents.read(path) } catch { throw ValueError("\(path): \(String(cString: strerror(error.errno)))") }
            guard let text = String(validating: bytes, as: UTF8.self) else { throw ValueError("\(path): not UTF-8 text") }
            // "\r\n" is one Character, a newline like "\n".
            let password = String(text.prefix { !$0.isNewline })
            guard !password.isEmpty else { throw ValueError("\(path): no password on its first line") }
            return password
        }
    }
}
