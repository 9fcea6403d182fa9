import CTurnoutLinux

/// What kind of filesystem a path is on, for the two the socket capture needs: the BPF
/// filesystem its pins live in and the cgroup v2 hierarchy its programs attach to. The
/// corresponding C call is statfs(2) (its `f_type`).
public enum FilesystemType: Equatable, Sendable {
    /// BPF_FS_MAGIC.
    case bpf
    /// CGROUP2_SUPER_MAGIC.
    case cgroup2
    case other(Int)

    /// The filesystem `path` is on; nil when it cannot be read (errno says why).
    public init?(path: String) {
        var type = 0
        guard CTurnoutLinux_filesystem_type(path, &type) == 0 else { return nil }
        switch type {
        case 0xcafe4a11: self = .bpf
        case 0x63677270: self = .cgroup2
        default: self = .other(type)
        }
    }
}
