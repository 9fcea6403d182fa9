import CTurnoutLinux
import Glibc
import TurnoutModel

/// The user and group a new socket belongs to as netfilter sees it: what `meta skuid` /
/// `meta skgid` and iptables' `-m owner` compare.
///
/// A socket takes its owner from the creating thread's filesystem ids (fsuid/fsgid), so
/// `makeSocket` sets them around one `socket(2)` call and restores them at once. On Linux the
/// ids belong to the thread, and `setfsuid`/`setfsgid` are not broadcast to other threads (unlike
/// `setuid`), so nothing else in the process sees the change. Needs CAP_SETUID/CAP_SETGID (root)
/// for ids other than the caller's; a change that does not take throws EPERM.
public struct SocketCredentials: Sendable, Hashable, CustomStringConvertible {
    /// The owning uid; nil keeps the thread's.
    public var uid: UInt32?
    /// The owning gid; nil keeps the thread's.
    public var gid: UInt32?

    public init(uid: UInt32?, gid: UInt32?) {
        self.uid = uid
        self.gid = gid
    }

    public var description: String {
        "uid \(uid.map(String.init) ?? "(own)") gid \(gid.map(String.init) ?? "(own)")"
    }

    /// Passing an invalid id changes nothing and returns the current one: the documented way to
    /// read an fsuid/fsgid back and check that a change took.
    private static let query = UInt32.max

    /// A non-blocking, close-on-exec socket owned by `uid`/`gid`.
    /// The corresponding C calls are `setfsgid(2)`, `setfsuid(2)` and `socket(2)`.
    func makeSocket(family: Int32, type: Int32) throws(SystemCallError) -> Int32 {
        guard uid != nil || gid != nil else { return try Syscalls.socket(family: family, type: type) }
        let previousGID = UInt32(bitPattern: CTurnoutLinux_setfsgid(Self.query))
        let previousUID = UInt32(bitPattern: CTurnoutLinux_setfsuid(Self.query))
        defer {
            // Restored in reverse: fsuid first gives back the filesystem capabilities.
            _ = CTurnoutLinux_setfsuid(previousUID)
            _ = CTurnoutLinux_setfsgid(previousGID)
        }
        // gid before uid: moving the fsuid off 0 drops the thread's filesystem capabilities.
        if let gid {
            _ = CTurnoutLinux_setfsgid(gid)
            guard UInt32(bitPattern: CTurnoutLinux_setfsgid(Self.query)) == gid else {
                throw SystemCallError(call: "setfsgid(\(gid))", errno: EPERM)
            }
        }
        if let uid {
            _ = CTurnoutLinux_setfsuid(uid)
            guard UInt32(bitPattern: CTurnoutLinux_setfsuid(Self.query)) == uid else {
                throw SystemCallError(call: "setfsuid(\(uid))", errno: EPERM)
            }
        }
        return try Syscalls.socket(family: family, type: type)
    }
}
