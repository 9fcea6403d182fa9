#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TurnoutModel

/// A small file's bytes, read in one open: table files, an etcd password file.
///
/// One open rather than a check followed by a read, so a file replaced in between (a
/// Kubernetes secret or ConfigMap swaps a symlink) is read whole or not at all, and the errno
/// of the call that failed (ENOENT, EACCES, EISDIR) is the one reported.
enum FileContents {
    /// The corresponding C calls are `fopen(3)` and `fread(3)`.
    static func read(_ path: String) throws(SystemCallError) -> [UInt8] {
        guard let file = fopen(path, "rb") else { throw SystemCallError(call: "open(\(path))", errno: errno) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count > 0 { bytes.append(contentsOf: chunk[0..<count]) }
            if count < chunk.count {
                if ferror(file) != 0 { throw SystemCallError(call: "read(\(path))", errno: errno) }
                return bytes
            }
        }
    }
}
