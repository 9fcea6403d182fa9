import Glibc

/// Where one socket capture lives in the BPF filesystem: a directory per (cgroup, network
/// namespace) under `/sys/fs/bpf/turnout/`, holding its pinned links and shared maps.
///
/// The pins are what keep the programs attached after `turnout init` exits, and what a later
/// `init` (to replace the programs) or `init --cleanup` (to remove them) finds. Two pods on one
/// host have different cgroups, so their captures never share a directory.
public struct SocketCapturePins: Sendable, Equatable {
    /// The BPF filesystem's usual mount point, where the pins go.
    public static let filesystem = "/sys/fs/bpf"
    /// Turnout's own directory in it.
    public static let root = filesystem + "/turnout"

    public let directory: String

    /// The pins of the capture for the cgroup at `cgroup` and the caller's network namespace.
    /// Throws when the cgroup cannot be read (the call and errno say why).
    public init(cgroup: String) throws(SocketCaptureError) {
        var cgroupStatus = stat(), namespaceStatus = stat()
        guard stat(cgroup, &cgroupStatus) == 0 else { throw .system("stat \(cgroup)", errno) }
        guard stat("/proc/self/ns/net", &namespaceStatus) == 0 else { throw .system("stat /proc/self/ns/net", errno) }
        directory = "\(Self.root)/capture-cgroup\(cgroupStatus.st_ino)-netns\(namespaceStatus.st_ino)"
    }

    public func link(_ program: String) -> String { "\(directory)/link-\(program)" }

    /// Whether anything is pinned here.
    public var exists: Bool { access(directory, F_OK) == 0 }
}
