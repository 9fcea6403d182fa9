import FoundationEssentials
import Glibc
import TurnoutModel

/// A user name and password for an etcd that has authentication enabled (`etcdctl auth
/// enable`), as etcdctl's `--user` takes them.
///
/// ``EtcdClient`` trades them for a token (`POST /v3/auth/authenticate`) before its first
/// request and again when etcd says the token is no longer valid (it expires after etcd's
/// `--auth-token-ttl`, 300 s by default). The password is read from a file, never from the
/// command line, where every user of the host could read it in `ps`.
public struct EtcdCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var user: String
    public var password: String

    /// `user NAME`: the password stays out of logs and error messages, also when a value that
    /// holds the credentials (a client) is printed whole.
    public var description: String { "user \(user)" }
    public var debugDescription: String { description }

    public init(user: String, password: String) throws(ValueError) {
        guard !user.isEmpty else { throw ValueError("an etcd user name cannot be empty") }
        guard !password.isEmpty else { throw ValueError("the password of etcd user \(user) is empty") }
        self.user = user
        self.password = password
    }

    /// `user` with the password in `passwordFile`: its first line (a secret mounted from
    /// Kubernetes or written by `echo` ends with a newline, which is not part of it). Throws a
    /// message naming the file when it cannot be read or holds no password.
    public init(user: String, passwordFile: String) throws(ValueError) {
        // access(2) for the errno that names why; the file is a few bytes, read once at start.
        guard access(passwordFile, R_OK) == 0 else { throw ValueError("\(passwordFile): \(String(cString: strerror(errno)))") }
        guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
            throw ValueError("\(passwordFile): not UTF-8 text")
        }
        // "\r\n" is one Character, a newline like "\n".
        let password = String(text.prefix { !$0.isNewline })
        guard !password.isEmpty else { throw ValueError("\(passwordFile): no password on its first line") }
        try self.init(user: user, password: password)
    }
}
