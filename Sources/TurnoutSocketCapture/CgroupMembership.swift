import FoundationEssentials
import Glibc

/// Which cgroup the calling process is in, as `init --validate` needs to know: its probe only
/// meets the socket capture's programs from inside the cgroup they are attached to.
public enum CgroupMembership {
    /// Whether the calling process is in the cgroup at `cgroup` or one below it (from
    /// /proc/self/cgroup and the cgroup v2 mounts).
    public static func processIsInside(cgroup: String) -> Bool {
        guard let own = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
                .split(separator: "\n").first(where: { $0.hasPrefix("0::") })?.dropFirst(3) else { return false }
        guard let wanted = realPath(cgroup) else { return false }
        return CgroupHierarchy.mountPoints().contains { root in
            guard let mine = realPath(root + own) else { return false }
            return mine == wanted || mine.hasPrefix(wanted + "/")
        }
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
