import CTurnoutBPF
import CTurnoutLinux
import FoundationEssentials
import Glibc
import TurnoutRules

/// Installs, replaces and removes the socket capture (`turnout init --backend bpf`): the BPF
/// programs embedded in turnout, attached to a cgroup and to the caller's network namespace
/// through pinned links, so they stay after turnout exits.
///
/// Needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (attaching to a cgroup and a namespace), a BPF
/// filesystem at `/sys/fs/bpf`, and cgroup v2. Each call stands alone; no state is kept between
/// calls but the pins.
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

    /// Maps every load of the programs shares (pinned, and reused by the next `init`): the
    /// state of connections and listeners already captured, which a re-run must not forget.
    public static let sharedMaps = ["origin_by_socket", "origins", "listeners", "listeners6", "counters"]

    /// The counters' names, in the `counters` map's order (CTURNOUTBPF_COUNTER_*).
    public static let counterNames = [
        "captured", "captured_to_inbound", "origins_recorded", "origins_forgotten",
        "answered", "answered_inbound", "steered", "refused", "unrecorded",
    ]

    /// BPF_FS_MAGIC, the BPF filesystem's statfs type.
    static let bpfFilesystemMagic = 0xcafe4a11
    /// CGROUP2_SUPER_MAGIC.
    static let cgroup2Magic = 0x63677270

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
        let existed = pins.exists
        try Self.makeDirectory(SocketCapturePins.root)
        try Self.makeDirectory(pins.directory)
        do {
            return try attach(plan, cgroup: cgroup, pins: pins)
        } catch {
            if !existed { Self.removePins(pins) }
            throw error
        }
    }

    private func attach(_ plan: SocketCapturePlan, cgroup: String, pins: SocketCapturePins) throws(SocketCaptureError) -> Report {
        guard let object = Data(base64Encoded: SocketCaptureObject.base64) else { throw .unsupported("the embedded BPF object is corrupt") }
        var status: Int32 = 0
        let capture: OpaquePointer? = object.withUnsafeBytes { bytes in
            Self.withCStrings(Self.sharedMaps) { names in
                CTurnoutBPF_open(bytes.baseAddress, bytes.count, pins.directory, names, Self.sharedMaps.count, &status)
            }
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
        // connect(2) and the inbound steering first, so nothing new is captured while the
        // programs that serve captured connections are still there.
        var changes: [String] = []
        for program in Self.programs.reversed() where access(pins.link(program.name), F_OK) == 0 {
            guard unlink(pins.link(program.name)) == 0 else { throw .system("unlink \(pins.link(program.name))", errno) }
            changes.append("- \(program.hook) on \(program.onNamespace ? "this network namespace" : cgroup)")
        }
        Self.removePins(pins)
        if access(pins.directory, F_OK) == 0 { throw .system("rmdir \(pins.directory)", errno) }
        return Report(replaced: false, changes: changes, calls: 0)
    }

    /// The capture's counters (``counterNames``), or nil when none is installed for `cgroup`.
    public func counters(cgroup: String) throws(SocketCaptureError) -> [String: UInt64]? {
        let pins = try SocketCapturePins(cgroup: cgroup)
        guard pins.exists else { return nil }
        var values = [UInt64](repeating: 0, count: Self.counterNames.count)
        let read = CTurnoutBPF_read_counters(pins.map("counters"), &values, UInt32(values.count))
        guard read >= 0 else { throw .system("bpf_obj_get \(pins.map("counters"))", -read) }
        return Dictionary(uniqueKeysWithValues: zip(Self.counterNames, values.prefix(Int(read))))
    }

    // MARK: - the filesystem

    static func requireFilesystems(cgroup: String) throws(SocketCaptureError) {
        var type = 0
        guard CTurnoutLinux_filesystem_type(SocketCapturePins.filesystem, &type) == 0, type == bpfFilesystemMagic else {
            throw .unsupported("no BPF filesystem at \(SocketCapturePins.filesystem), where the capture's programs are pinned so they outlive init; mount one with `mount -t bpf bpf \(SocketCapturePins.filesystem)`")
        }
        guard CTurnoutLinux_filesystem_type(cgroup, &type) == 0 else { throw .system("statfs \(cgroup)", errno) }
        guard type == cgroup2Magic else {
            throw .unsupported("--cgroup \(cgroup): not a cgroup v2 directory (the programs attach to a cgroup v2 hierarchy)")
        }
    }

    static func makeDirectory(_ path: String) throws(SocketCaptureError) {
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw .system("mkdir \(path)", errno) }
    }

    /// Unlinks every pin in the directory and the directory itself, ignoring what is gone.
    static func removePins(_ pins: SocketCapturePins) {
        for program in programs { unlink(pins.link(program.name)) }
        for map in sharedMaps { unlink(pins.map(map)) }
        rmdir(pins.directory)
    }

    static func withCStrings<Result>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> Result) -> Result {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let pointers = copies.map { UnsafePointer($0) }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
