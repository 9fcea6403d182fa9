import FoundationEssentials
import Glibc

/// The cgroup v2 hierarchies mounted in the caller's mount namespace, and the directory of a
/// cgroup found by its inode (its cgroup id), which is all a capture's pins say of their cgroup.
public enum CgroupHierarchy {
    /// Where cgroup v2 is mounted (from /proc/self/mounts; usually /sys/fs/cgroup, or
    /// /sys/fs/cgroup/unified on hosts that keep v1 beside it).
    public static func mountPoints() -> [String] {
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return [] }
        return mounts.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            return fields.count > 2 && fields[2] == "cgroup2" ? unescape(fields[1]) : nil
        }
    }

    /// The directory of the cgroup whose inode is `inode`, searched depth-first under every
    /// cgroup v2 mount; nil when there is none (the cgroup was deleted) or when `limit`
    /// directories were read without finding it.
    public static func directory(inode: UInt64, limit: Int = 100_000) -> String? {
        var budget = limit
        for mount in mountPoints() {
            if let found = search(mount, for: inode, budget: &budget) { return found }
        }
        return nil
    }

    private static func search(_ path: String, for inode: UInt64, budget: inout Int) -> String? {
        var status = stat()
        guard budget > 0, lstat(path, &status) == 0 else { return nil }
        budget -= 1
        if UInt64(status.st_ino) == inode { return path }
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            guard entry.pointee.d_type == UInt8(DT_DIR) else { continue }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != ".", name != ".." else { continue }
            if let found = search(path + "/" + name, for: inode, budget: &budget) { return found }
        }
        return nil
    }

    /// /proc/self/mounts writes a space in a path as \040 (and tab, newline, backslash alike).
    private static func unescape(_ field: Substring) -> String {
        var result = "", rest = field[...]
        while let slash = rest.firstIndex(of: "\\") {
            result += rest[..<slash]
            let code = rest[rest.index(after: slash)...].prefix(3)
            if code.count == 3, let value = UInt8(code, radix: 8) {
                result.append(Character(Unicode.Scalar(value)))
                rest = rest[rest.index(slash, offsetBy: 4)...]
            } else {
                result.append("\\")
                rest = rest[rest.index(after: slash)...]
            }
        }
        return result + rest
    }
}
