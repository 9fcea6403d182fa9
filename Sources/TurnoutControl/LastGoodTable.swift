import Glibc
import TurnoutModel

/// The last table a node installed, kept in a local file so that a restarted node comes back
/// with it before its source answers (an etcd that is down must not leave a node without rules).
///
/// Written atomically: a temporary file in the same directory, `fsync`, then `rename(2)` over
/// the old one, so a crash leaves the old file or the new one, never half of one. The format is
/// ``TableEncoder``'s JSON, which ``TableFile`` reads like any table.
public enum LastGoodTable {
    /// Writes `table` to `path`. Throws the failing call with its errno. The corresponding C
    /// calls are `open(2)`, `write(2)`, `fsync(2)` and `rename(2)`.
    public static func write(_ table: ServiceTable, to path: String) throws(SystemCallError) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemCallError(call: "open(\(temporary))", errno: errno) }
        var bytes = Array(TableEncoder.json(table).utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let code = errno
                close(fd)
                throw SystemCallError(call: "write(\(temporary))", errno: code)
            }
            written += count
        }
        bytes.removeAll()
        guard fsync(fd) == 0 else {
            let code = errno
            close(fd)
            throw SystemCallError(call: "fsync(\(temporary))", errno: code)
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw SystemCallError(call: "rename(\(temporary), \(path))", errno: errno) }
    }

    /// The table at `path`; nil when there is no such file. Throws ``TableError`` for a file
    /// that is there but not a valid table.
    public static func read(_ path: String) throws(TableError) -> ServiceTable? {
        guard access(path, F_OK) == 0 else { return nil }
        return try TableFile.load(path)
    }
}
