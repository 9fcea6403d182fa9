import CTurnoutBPF
import FoundationEssentials
import Glibc
import TurnoutRules

/// Installs, replaces and removes the socket capture (`turnout init --backend bpf`): the BPF
/// programs embedded in turnout, attached to a cgroup and to the caller's network namespace
/// through pinned links, so they stay after turnout exits.
///
/// Needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (attaching to a cgroup and a namespace), a BPF
/// filesystem at `/sys/fs/bpf`, and cgroup v2. Each call stands alone; no state is kept between
/// calls but the pins. Calls from several processes take turns (``SocketCaptureLock``).
public struct SocketCaptureBackend: Sendable {
    /// One program of the capture and where it attaches.
    public struct Program: Sendable, Equatable {
        public var name: String
        /// The hook, as `bpftool` names it.
        public var hook: String
        public var onNamespace: Bool
    }

    /// In attach order: what answers the proxy and records origins first, the connect(2) that
    /// captures after them, so that no connection is captured before its origin can be kept;
    /// inbound steering last, once everything that serves a steered connection is there.
    public static let programs: [Program] = [
        Program(name: "turnout_getsockopt", hook: "cgroup/getsockopt", onNamespace: false),
        Program(name: "turnout_sockops", hook: "sockops", onNamespace: false),
        Program(name: "turnout_getpeername4", hook: "cgroup/getpeername4", onNamespace: false),
        Program(name: "turnout_getpeername6", hook: "cgroup/getpeername6", onNamespace: false),
        Program(name: "turnout_connect4", hook: "cgroup/connect4", onNamespace: false),
        Program(name: "turnout_connect6", hook: "cgroup/connect6", onNamespace: false),
        Program(name: "turnout_inbound", hook: "sk_lookup", onNamespace: true),
    ]

    public init() {}

    /// What one install or removal did.
    public struct Report: Sendable, Equatable {
        /// True when programs were already attached and were replaced, atomically each.
        public var replaced: Bool
        /// One line per program attached, replaced or detached.
        public var changes: [String]
        /// bpf(2) calls made (map writes and attaches; loads count one per program).
        public var calls: Int
    }

    /// Loads the programs with `plan`'s map contents and attaches them to the cgroup at `cgroup`
    /// and to the caller's network namespace; when a capture is installed there already, replaces
    /// each of its programs by the new one (its shared maps, and so the connections captured
    /// before, are kept). On a failed first install nothing stays attached.
    public func install(_ plan: SocketCapturePlan, cgroup: String) throws(SocketCaptureError) -> Report {
        try Self.requireFilesystems(cgroup: cgroup)
        let pins = try SocketCapturePins(cgroup: cgroup)
        try Self.makeDirectory(SocketCapturePins.root)
        return try SocketCaptureLock.held { () throws(SocketCaptureError) in
            let removed = Self.removeStalePins(keeping: pins)
            let existed = pins.exists
            try Self.makeDirectory(pins.directory)
            do throws(SocketCaptureError) {
                var report = try attach(plan, cgroup: cgroup, pins: pins)
                report.changes = removed + report.changes
                return report
            } catch {
                if !existed { Self.removePins(pins) }
                throw error
            }
        }
    }

    private func attach(_ plan: SocketCapturePlan, cgroup: String, pins: SocketCapturePins) throws(SocketCaptureError) -> Report {
        guard let object = Data(base64Encoded: SocketCaptureObject.base64) else { throw .unsupported("the embedded BPF object is corrupt") }
        var status: Int32 = 0
        // The maps every load shares (the state of connections and listeners already captured,
        // which a re-run must not forget) are declared LIBBPF_PIN_BY_NAME in the program:
        // libbpf pins them in the capture's directory, or reuses those pinned there.
        let capture = object.withUnsafeBytes { bytes in
            CTurnoutBPF_open(bytes.baseAddress, bytes.count, pins.directory, &status)
        }
        guard let capture else {
            if status == -EINVAL && pins.exists {
                throw .system("bpf_object__load (a map pinned in \(pins.directory) by another turnout version may not match; run `turnout init --cleanup --backend bpf` first)", -status)
            }
            throw .system("bpf_object__load", -status)
        }
        defer { CTurnoutBPF_close(capture) }
        var calls = Self.programs.count
        let contents = SocketCaptureMapContents(plan)
        func write<Key, Value>(_ map: String, _ keys: [Key], _ values: [Value]) throws(SocketCaptureError) {
            let result = keys.withUnsafeBytes { keyBytes in
                values.withUnsafeBytes { valueBytes in
                    CTurnoutBPF_update(capture, map, keyBytes.baseAddress, MemoryLayout<Key>.stride, valueBytes.baseAddress,
                                       MemoryLayout<Value>.stride, UInt32(keys.count))
                }
            }
            guard result == 0 else { throw .system("bpf_map_update_elem \(map)", -result) }
            calls += 1
        }
        try write("config", [UInt32(0)], [contents.config])
        try write("proxy_ids", contents.proxyIDs, contents.proxyIDs.map { _ in UInt8(1) })
        try write("outbound_ports", contents.outboundPorts.map(\.port), contents.outboundPorts.map(\.verdict))
        try write("inbound_ports", contents.inboundPorts.map(\.port), contents.inboundPorts.map(\.verdict))
        for (map, elements) in [("local_addresses", contents.localAddresses), ("excluded_blocks", contents.excludedBlocks),
                                ("captured_blocks", contents.capturedBlocks)] {
            try write(map, elements.map(\.0), elements.map(\.1))
        }
        for (map, elements) in [("local_addresses6", contents.localAddresses6), ("excluded_blocks6", contents.excludedBlocks6),
                                ("captured_blocks6", contents.capturedBlocks6)] {
            try write(map, elements.map(\.0), elements.map(\.1))
        }

        let cgroupDescriptor = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard cgroupDescriptor >= 0 else { throw .system("open \(cgroup)", errno) }
        defer { close(cgroupDescriptor) }
        let namespaceDescriptor = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)
        guard namespaceDescriptor >= 0 else { throw .system("open /proc/self/ns/net", errno) }
        defer { close(namespaceDescriptor) }
        var changes: [String] = []
        var anyReplaced = false
        for program in Self.programs {
            var replaced: Int32 = 0
            let result = CTurnoutBPF_attach(capture, program.name, program.onNamespace ? namespaceDescriptor : cgroupDescriptor,
                                            pins.link(program.name), &replaced)
            guard result == 0 else { throw .system("attach \(program.hook) (\(program.name))", -result) }
            calls += 1
            anyReplaced = anyReplaced || replaced != 0
            let target = program.onNamespace ? "this network namespace" : cgroup
            changes.append("\(replaced != 0 ? "~" : "+") \(program.hook) on \(target)\(replaced != 0 ? " (program replaced)" : "")")
        }
        return Report(replaced: anyReplaced, changes: changes, calls: calls)
    }

    /// Detaches the capture of `cgroup` in the caller's namespace by removing its pins; nil when
    /// none is installed. Connections already captured keep working (nothing rewrites their
    /// packets), and no new one is captured once this returns.
    public func remove(cgroup: String) throws(SocketCaptureError) -> Report? {
        let pins = try SocketCapturePins(cgroup: cgroup)
        guard pins.exists else { return nil }
        return try SocketCaptureLock.held { () throws(SocketCaptureError) in try detach(pins, cgroup: cgroup) }
    }

    private func detach(_ pins: SocketCapturePins, cgroup: String) throws(SocketCaptureError) -> Report? {
        guard pins.exists else { return nil }
        // connect(2) and the inbound steering first, so nothing new is captured while the
        // programs that serve captured connections are still there.
        var changes: [String] = []
        for program in Self.programs.reversed() where access(pins.link(program.name), F_OK) == 0 {
            guard unlink(pins.link(program.name)) == 0 else { throw .system("unlink \(pins.link(program.name))", errno) }
            changes.append("- \(program.hook) on \(program.onNamespace ? "this network namespace" : cgroup)")
        }
        if let code = Self.removePins(pins) { throw .system("rmdir \(pins.directory)", code) }
        return Report(replaced: false, changes: changes, calls: 0)
    }

    // MARK: - the filesystem

    static func requireFilesystems(cgroup: String) throws(SocketCaptureError) {
        guard FilesystemType(path: SocketCapturePins.filesystem) == .bpf else {
            throw .unsupported("no BPF filesystem at \(SocketCapturePins.filesystem), where the capture's programs are pinned so they outlive init; mount one with `mount -t bpf bpf \(SocketCapturePins.filesystem)`")
        }
        guard let type = FilesystemType(path: cgroup) else { throw .system("statfs \(cgroup)", errno) }
        guard type == .cgroup2 else {
            throw .unsupported("--cgroup \(cgroup): not a cgroup v2 directory (the programs attach to a cgroup v2 hierarchy)")
        }
    }

    /// Removes what pods deleted without `init --cleanup` left: every capture directory whose
    /// cgroup is gone (its sk_lookup link, if its namespace lives on, goes with it: it could only
    /// steer to a proxy of that cgroup), and `pins` itself when its links are not attached where its name
    /// says (inode numbers reused: re-using its links would replace the programs of a cgroup
    /// that is gone, and capture nothing). Returns a line for each removed. Call with the lock.
    static func removeStalePins(keeping pins: SocketCapturePins) -> [String] {
        var removed: [String] = []
        for other in SocketCapturePins.all() where other != pins && other.attachment == .gone {
            removePins(other)
            removed.append("- pins of a cgroup that is gone: \(other.directory)")
        }
        if pins.exists, pins.attachment != .current {
            removePins(pins)
            removed.append("- stale pins of a gone cgroup or namespace whose inode numbers this one has now: \(pins.directory)")
        }
        return removed
    }

    static func makeDirectory(_ path: String) throws(SocketCaptureError) {
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw .system("mkdir \(path)", errno) }
    }

    /// Unlinks every pin in the directory (links, and the maps libbpf pinned by name) and the
    /// directory itself, ignoring what is gone. Returns rmdir's errno when the directory stays.
    @discardableResult
    static func removePins(_ pins: SocketCapturePins) -> Int32? {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: pins.directory)) ?? [] {
            unlink("\(pins.directory)/\(name)")
        }
        return rmdir(pins.directory) == 0 || errno == ENOENT ? nil : errno
    }
}
