import CTurnoutBPF
import FoundationEssentials
import Glibc

/// Where one socket capture lives in the BPF filesystem: a directory per (cgroup, network
/// namespace) under `/sys/fs/bpf/turnout/`, holding its pinned links and shared maps.
///
/// The pins are what keep the programs attached after `turnout init` exits, and what a later
/// `init` (to replace the programs), `init --cleanup` (to remove them) or `status` (to read their
/// counters) finds. Two pods on one host have different cgroups, so their captures never share a
/// directory. The directory is named by inode numbers, so a path can be made from a cgroup, and
/// a cgroup (its inode) read back from a path.
public struct SocketCapturePins: Sendable, Equatable {
    /// The BPF filesystem's usual mount point, where the pins go.
    public static let filesystem = "/sys/fs/bpf"
    /// Turnout's own directory in it.
    public static let root = filesystem + "/turnout"

    public let directory: String
    /// The inode of the cgroup the capture's programs are attached to (its cgroup id).
    public let cgroupInode: UInt64
    /// The inode of the network namespace its sk_lookup program is attached to.
    public let namespaceInode: UInt64

    /// The pins of the capture for the cgroup at `cgroup` and the caller's network namespace.
    /// Throws when the cgroup cannot be read (the call and errno say why).
    public init(cgroup: String) throws(SocketCaptureError) {
        var cgroupStatus = stat()
        guard stat(cgroup, &cgroupStatus) == 0 else { throw .system("stat \(cgroup)", errno) }
        self.init(cgroupInode: UInt64(cgroupStatus.st_ino), namespaceInode: try Self.namespaceInode())
    }

    init(cgroupInode: UInt64, namespaceInode: UInt64) {
        self.cgroupInode = cgroupInode
        self.namespaceInode = namespaceInode
        directory = "\(Self.root)/capture-cgroup\(cgroupInode)-netns\(namespaceInode)"
    }

    public func link(_ program: String) -> String { "\(directory)/link-\(program)" }

    /// A map the program pins by name (LIBBPF_PIN_BY_NAME) in this directory.
    public func map(_ name: String) -> String { "\(directory)/\(name)" }

    /// Whether anything is pinned here.
    public var exists: Bool { access(directory, F_OK) == 0 }

    /// Every capture pinned for the caller's network namespace, in inode order; none when
    /// nothing of turnout's is in the BPF filesystem (or there is none mounted).
    public static func inCallersNamespace() throws(SocketCaptureError) -> [SocketCapturePins] {
        let namespace = try namespaceInode()
        return all().filter { $0.namespaceInode == namespace }.sorted { $0.cgroupInode < $1.cgroupInode }
    }

    /// Whether the links pinned here are attached where the directory's name says.
    public enum Attachment: Sendable, Equatable {
        /// Every link pinned is attached to this cgroup or namespace (some may be missing).
        case current
        /// No cgroup link is attached any more: the cgroup is gone (a pod deleted without
        /// `init --cleanup`), and with it everything the capture was for.
        case gone
        /// Some links are attached elsewhere: the pins of a gone cgroup or namespace whose
        /// inode numbers a new one has now (network namespaces' are reused soon).
        case stale
    }

    /// What the links pinned here are attached to (CTurnoutBPF_link_target): a pin that cannot
    /// be read counts as attached nowhere; a directory without links is gone.
    public var attachment: Attachment {
        var current = true, anyCgroup = false
        for program in SocketCaptureBackend.programs where access(link(program.name), F_OK) == 0 {
            var target: UInt64 = 0
            if CTurnoutBPF_link_target(link(program.name), &target) != 0 { target = 0 }
            current = current && target == (program.onNamespace ? namespaceInode : cgroupInode)
            anyCgroup = anyCgroup || (!program.onNamespace && target != 0)
        }
        if !anyCgroup { return .gone }
        return current ? .current : .stale
    }

    /// Every capture directory on the host, whatever its namespace.
    static func all() -> [SocketCapturePins] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { name -> SocketCapturePins? in
            guard name.hasPrefix("capture-cgroup") else { return nil }
            let parts = name.dropFirst("capture-cgroup".count).split(separator: "-netns")
            guard parts.count == 2, let cgroup = UInt64(parts[0]), let namespace = UInt64(parts[1]) else { return nil }
            return SocketCapturePins(cgroupInode: cgroup, namespaceInode: namespace)
        }
    }

    static func namespaceInode() throws(SocketCaptureError) -> UInt64 {
        var namespaceStatus = stat()
        guard stat("/proc/self/ns/net", &namespaceStatus) == 0 else { throw .system("stat /proc/self/ns/net", errno) }
        return UInt64(namespaceStatus.st_ino)
    }
}
