import CTurnoutBPF
import Glibc

/// What `turnout status` says of one socket capture installed in the caller's network
/// namespace, read from its pins alone (nothing is loaded or attached), so any turnout can read
/// what another one installed.
///
/// The counters are the programs' own, since the capture was installed (a re-run keeps them).
/// Reading needs CAP_BPF (or root) and the BPF filesystem the pins are in: run it from the
/// namespace with `nsenter --net`, since `ip netns exec` mounts a /sys without it.
public struct SocketCaptureStatus: Sendable, Equatable {
    /// What the programs counted (`counters`, CTurnoutBPFMaps.h).
    public struct Counters: Sendable, Equatable {
        /// connect(2) sent to the outbound listener.
        public var captured: UInt64
        /// The proxy calling the pod's own address, sent to the inbound listener.
        public var capturedToInbound: UInt64
        public var originsRecorded: UInt64
        public var originsForgotten: UInt64
        /// SO_ORIGINAL_DST answered from a recorded origin, and for a steered inbound socket.
        public var answered: UInt64
        public var answeredInbound: UInt64
        /// Inbound connections handed to the inbound listener, and refused for want of one.
        public var steered: UInt64
        public var refused: UInt64
        /// Captures refused because their origin could not be kept.
        public var unrecorded: UInt64
    }

    /// What the installed programs were loaded with (their `config`), of what status shows.
    public struct Settings: Sendable, Equatable {
        public var outboundPort: UInt16
        public var inboundPort: UInt16
        public var ipv6: Bool
    }

    public var pins: SocketCapturePins
    /// When not `.current`, the pins are a gone pod's and nothing else below is read.
    public var attachment: SocketCapturePins.Attachment
    /// The cgroup's directory, when it is still there to be found.
    public var cgroup: String?
    /// The hooks whose links are pinned, and those missing (a cleanup or a re-run cut short).
    public var attached: [String]
    public var missing: [String]
    /// Nil when no program is attached, or a map could not be read (`problems` says why).
    public var settings: Settings?
    public var counters: Counters?
    /// Captured connections whose origin is held now (open, or closed and not yet forgotten).
    public var originsHeld: UInt64?
    /// Whether an inbound listener registered itself (listen(2) after init), per family.
    public var listenerIPv4: Bool?
    public var listenerIPv6: Bool?
    public var problems: [String]

    /// Every capture pinned for the caller's network namespace; none when there is no BPF
    /// filesystem or nothing of turnout's in it. Throws only when the namespace cannot be read.
    public static func installed() throws(SocketCaptureError) -> [SocketCaptureStatus] {
        guard FilesystemType(path: SocketCapturePins.filesystem) == .bpf else { return [] }
        return try SocketCapturePins.inCallersNamespace().map(read)
    }

    static func read(_ pins: SocketCapturePins) -> SocketCaptureStatus {
        let attachment = pins.attachment
        guard attachment == .current else {
            return SocketCaptureStatus(pins: pins, attachment: attachment, cgroup: nil, attached: [], missing: [], settings: nil,
                                       counters: nil, originsHeld: nil, listenerIPv4: nil, listenerIPv6: nil, problems: [])
        }
        var problems: [String] = []
        let pinned = SocketCaptureBackend.programs.filter { access(pins.link($0.name), F_OK) == 0 }
        var settings: Settings?
        if let program = pinned.first {
            var key: UInt32 = 0
            var config = CTurnoutBPF_config()
            let status = CTurnoutBPF_read_program_map(pins.link(program.name), "config", &key, &config)
            if status == 0 {
                settings = Settings(outboundPort: config.proxy_port, inboundPort: config.inbound_port, ipv6: config.ipv6 != 0)
            } else {
                problems.append(SocketCaptureError.system("read the config of \(pins.link(program.name))", -status).description)
            }
        }
        var counters: Counters?
        var values = [UInt64](repeating: 0, count: Int(CTURNOUTBPF_COUNTER_COUNT))
        let status = CTurnoutBPF_read_array(pins.map("counters"), &values, UInt32(values.count))
        if status == 0 {
            counters = Counters(captured: values[Int(CTURNOUTBPF_COUNTER_CAPTURED)],
                                capturedToInbound: values[Int(CTURNOUTBPF_COUNTER_CAPTURED_OWN)],
                                originsRecorded: values[Int(CTURNOUTBPF_COUNTER_ORIGIN_RECORDED)],
                                originsForgotten: values[Int(CTURNOUTBPF_COUNTER_ORIGIN_FORGOTTEN)],
                                answered: values[Int(CTURNOUTBPF_COUNTER_ANSWERED)],
                                answeredInbound: values[Int(CTURNOUTBPF_COUNTER_ANSWERED_INBOUND)],
                                steered: values[Int(CTURNOUTBPF_COUNTER_STEERED)],
                                refused: values[Int(CTURNOUTBPF_COUNTER_REFUSED)],
                                unrecorded: values[Int(CTURNOUTBPF_COUNTER_UNRECORDED)])
        } else {
            problems.append(SocketCaptureError.system("read \(pins.map("counters"))", -status).description)
        }
        func keys(_ map: String, size: Int, limit: UInt64) -> UInt64? {
            var count: UInt64 = 0
            let status = CTurnoutBPF_count_keys(pins.map(map), size, limit, &count)
            guard status == 0 else {
                problems.append(SocketCaptureError.system("read \(pins.map(map))", -status).description)
                return nil
            }
            return count
        }
        let origins = keys("origins", size: MemoryLayout<CTurnoutBPF_tuple>.size, limit: 1 << 20)
        let listeners = keys("listeners", size: MemoryLayout<UInt32>.size, limit: 16)
        let listeners6 = keys("listeners6", size: MemoryLayout<UInt32>.size, limit: 16)
        return SocketCaptureStatus(pins: pins, attachment: attachment, cgroup: CgroupHierarchy.directory(inode: pins.cgroupInode),
                                   attached: pinned.map(\.hook),
                                   missing: SocketCaptureBackend.programs.filter { !pinned.contains($0) }.map(\.hook),
                                   settings: settings, counters: counters, originsHeld: origins,
                                   listenerIPv4: listeners.map { $0 > 0 }, listenerIPv6: listeners6.map { $0 > 0 },
                                   problems: problems)
    }

    /// The lines `turnout status` prints.
    public var summary: [String] {
        switch attachment {
        case .current: break
        case .gone:
            return ["socket capture pins of a cgroup that is gone (removed without `init --cleanup`): \(pins.directory); the next `init --backend bpf` on this host removes them"]
        case .stale:
            return ["STALE socket capture pins \(pins.directory): some of its links are attached to another cgroup or namespace than its name says (inode numbers reused); `rm -r` it"]
        }
        let cgroupName = cgroup.map { "cgroup \($0)" } ?? "cgroup inode \(pins.cgroupInode) (not found under any cgroup v2 mount)"
        let total = SocketCaptureBackend.programs.count
        var lines = ["socket capture (bpf) of \(cgroupName): \(attached.count) of \(total) programs attached"
                     + (missing.isEmpty ? "" : "; MISSING \(missing.joined(separator: ", ")) (re-run init, or init --cleanup)")]
        func listener(_ registered: Bool?) -> String {
            switch registered {
            case true?: "registered"
            case false?: "none"
            case nil: "unknown"
            }
        }
        if let settings {
            lines.append("  ports: outbound \(settings.outboundPort), inbound \(settings.inboundPort); IPv6 \(settings.ipv6 ? "captured" : "not captured")")
            let unheard = listenerIPv4 == false || (settings.ipv6 && listenerIPv6 == false)
            lines.append("  inbound listener: IPv4 \(listener(listenerIPv4))" + (settings.ipv6 ? ", IPv6 \(listener(listenerIPv6))" : "")
                         + (unheard ? "; inbound connections of a family without one are refused (the proxy must listen after init)" : ""))
        }
        if let counters {
            let held = originsHeld.map { "\($0)" } ?? "?"
            lines.append("  outbound: \(counters.captured) connects captured, \(counters.capturedToInbound) of the proxy's to the pod's own address sent to inbound; origins: \(held) held, \(counters.originsRecorded) recorded, \(counters.originsForgotten) forgotten")
            lines.append("  inbound: \(counters.steered) connections steered, \(counters.refused) refused; SO_ORIGINAL_DST answered \(counters.answered) (outbound) and \(counters.answeredInbound) (inbound)")
            if counters.unrecorded > 0 { lines.append("  LOST: \(counters.unrecorded) captures refused, no room to keep their origin") }
        }
        lines += problems.map { "  cannot read: \($0)" }
        return lines
    }
}
