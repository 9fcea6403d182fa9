import Glibc
import TurnoutModel

/// An exclusive flock(2) that a daemon holds for its whole life on a small file naming its PID,
/// so that a second daemon for the same thing refuses to start and `turnout status` can tell a
/// running daemon's state from the last words of one that is gone.
///
/// `apply --watch` holds one per network namespace (``NetworkNamespaceKey``): two reconcilers
/// writing one namespace's `inet turnout` would undo each other's changes on every event. The
/// kernel releases the lock when the process exits, however it dies, so a crash leaves no stale
/// lock; the file itself stays and is reused. Not copyable: the lock lives exactly as long as
/// the value (its descriptor is closed in `deinit`).
public struct DaemonLock: ~Copyable {
    private let descriptor: Int32
    public let path: String

    /// Why a lock was not taken.
    public enum Failure: Error, CustomStringConvertible {
        /// Another process holds it; its PID as written in the file (nil if it was unreadable).
        case held(path: String, pid: Int32?)
        case system(SystemCallError)

        public var description: String {
            switch self {
            case .held(let path, let pid): "\(path) is held by \(pid.map { "PID \($0)" } ?? "another process")"
            case .system(let error): "\(error)"
            }
        }
    }

    /// Takes the lock at `path` at once (creating the file, mode 0600) and writes this PID into
    /// it, or throws `.held` naming the holder. The directory must exist.
    public init(path: String) throws(Failure) {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .system(SystemCallError(call: "open(\(path))", errno: errno)) }
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            let pid = code == EWOULDBLOCK ? Self.pid(in: descriptor) : nil
            close(descriptor)
            guard code == EWOULDBLOCK else { throw .system(SystemCallError(call: "flock(\(path), LOCK_EX)", errno: code)) }
            throw .held(path: path, pid: pid)
        }
        let text = Array("\(getpid())\n".utf8)
        guard ftruncate(descriptor, 0) == 0, pwrite(descriptor, text, text.count, 0) == text.count else {
            let code = errno
            close(descriptor)
            throw .system(SystemCallError(call: "write(\(path))", errno: code))
        }
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close(descriptor) }

    /// The PID of the process holding the lock at `path` now; nil when nobody does (no file,
    /// or a file whose holder is gone). A holder whose PID cannot be read is reported as 0.
    public static func holder(of path: String) -> Int32? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        // A shared lock is refused exactly while someone holds the exclusive one.
        if flock(descriptor, LOCK_SH | LOCK_NB) == 0 { return nil }
        guard errno == EWOULDBLOCK else { return nil }
        return pid(in: descriptor) ?? 0
    }

    private static func pid(in descriptor: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[..<count], as: UTF8.self).prefix { !$0.isNewline })
    }
}
