import Foundation
import Testing
import TurnoutModel
import TurnoutTestSupport

/// `turnout init --backend bpf` with real traffic through the real `turnout proxy`: the app's
/// client (uid 1000) and the proxy (uid 1337) run inside a cgroup of the test's own in the lab's
/// app namespace, and nothing in that namespace uses conntrack.
///
/// Serialized: every init removes the pins of any gone cgroup on the host, so a test that
/// leaves such pins on purpose (to see the next init remove them) must not share the host's
/// captures with another test's init.
@Suite("turnout init --backend bpf: capture at connect(2), with real traffic",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)), .serialized)
struct SocketCaptureScenarioTests {
    static let app: UInt32 = 1000
    static let proxy = CaptureLab.proxyUID
    static let vip = "10.96.0.10"

    /// One connection: prints `peer=ADDR:PORT line=FIRST-LINE`, or `error=ERRNO-NAME`. An
    /// address with a colon is connected from an IPv6 socket (a v4-mapped one too).
    static let client = """
    import errno, socket, sys
    s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
    s.settimeout(2)
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
        peer = "%s:%d" % s.getpeername()[:2]
        print("peer=%s line=%s" % (peer, s.recv(256).decode().strip()))
    except OSError as e:
        print("error=%s" % (errno.errorcode.get(e.errno, "timeout") if e.errno else "timeout"))
    """

    static func connect(_ lab: CaptureLab, _ cgroup: LabCgroup, to address: String, port: UInt16, uid: UInt32 = app) throws -> String {
        let result = try cgroup.run(in: lab.app, uid: uid, gid: uid, ["/usr/bin/python3", "-c", client, address, "\(port)"])
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) + result.standardError
    }

    static func initialize(_ lab: CaptureLab, _ cgroup: LabCgroup, _ arguments: [String] = [], inside: Bool = false, ipv6: Bool = false) throws -> ProcessResult {
        let command = [Repository.turnoutBinary, "init", "--backend", "bpf", "--cgroup", cgroup.path] + (ipv6 ? [] : ["--ipv6", "off"]) + arguments
        if inside { return try cgroup.run(in: lab.app, command) }
        return try LabCgroup.run(in: lab.app, outsideAnyLabCgroup: command)
    }

    /// A socket that first connects to FIRST-ADDR FIRST-PORT and, refused there, to ADDR PORT:
    /// prints the first error, then what `client` prints.
    static let reconnectingClient = """
    import errno, socket, sys
    s = socket.socket()
    try:  # blocking: a connect(2) that fails at once leaves the socket ready for the next
        s.connect((sys.argv[1], int(sys.argv[2])))
        print("first=connected")
    except OSError as e:
        print("first=%s" % errno.errorcode.get(e.errno, "timeout"), end=" ")
    s.settimeout(2)
    s.connect((sys.argv[3], int(sys.argv[4])))
    print("peer=%s:%d line=%s" % (s.getpeername()[:2] + (s.recv(256).decode().strip(),)))
    """

    /// `turnout status --admin none` in the app namespace (nsenter: the pins are in /sys/fs/bpf),
    /// its socket capture lines.
    static func statusLines(_ lab: CaptureLab) throws -> [String] {
        let result = try LabCgroup.run(in: lab.app, outsideAnyLabCgroup: [Repository.turnoutBinary, "status", "--admin", "none"])
        try #require(result.status == 0, "\(result.standardError)")
        return result.standardOutput.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("table inet") }
    }

    /// The lines `turnout status` prints for the capture of `cgroup`: its heading and what follows it.
    static func captureStatus(_ lab: CaptureLab, _ cgroup: LabCgroup) throws -> [String] {
        let lines = try statusLines(lab)
        guard let start = lines.firstIndex(where: { $0.hasPrefix("socket capture (bpf) of cgroup \(cgroup.path):") }) else { return lines }
        return [lines[start]] + lines[(start + 1)...].prefix { $0.hasPrefix("  ") }
    }

    /// Where the pins of `cgroup`'s capture in the lab's app namespace are.
    static func pinDirectory(_ lab: CaptureLab, _ cgroup: LabCgroup) throws -> String {
        var cgroupStatus = stat(), namespaceStatus = stat()
        try #require(stat(cgroup.path, &cgroupStatus) == 0 && stat(lab.app.path, &namespaceStatus) == 0)
        return "/sys/fs/bpf/turnout/capture-cgroup\(cgroupStatus.st_ino)-netns\(namespaceStatus.st_ino)"
    }

    /// The numbers of a status line, in order ("outbound: 3 connects captured, 0 of …" → [3, 0, …]).
    static func numbers(_ line: String?) -> [Int] {
        (line ?? "").split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    }

    /// Connections the app namespace's conntrack holds. A conntrack rule in the peer namespace
    /// makes sure the module is loaded, so that an empty table means nothing was tracked in the
    /// app, not that nothing could have been.
    static func conntrackEntries(_ lab: CaptureLab) throws -> Int {
        let loaded = try lab.run(.peer, "nft", ["add table ip conntrack-probe; add chain ip conntrack-probe output { type filter hook output priority 0; }; add rule ip conntrack-probe output ct state established accept"])
        try #require(loaded.status == 0, "\(loaded.standardError)")
        let table = try lab.run(.app, "/bin/cat", ["/proc/net/nf_conntrack"])
        try #require(table.status == 0, "no /proc/net/nf_conntrack in the app namespace: \(table.standardError)")
        return table.standardOutput.split(separator: "\n").count
    }

    @Test("outbound to a VIP and inbound to the app both pass through turnout proxy; getpeername shows the VIP; no conntrack entry; cleanup detaches")
    func throughTheProxy() throws {
        try withCaptureLab(prefix: "bpfcap") { lab in
            try lab.stopProxy()
            try withLabCgroup(prefix: "turnout-bpfcap") { cgroup in
                let installed = try Self.initialize(lab, cgroup)
                try #require(installed.status == 0, "\(installed.standardError)")
                #expect(installed.standardOutput.contains("created via bpf"))
                #expect(installed.standardOutput.contains("+ cgroup/connect4 on \(cgroup.path)"))

                let table = lab.stateDirectory + "/table.yaml"
                try "services:\n  - name: demo/web\n    addresses: [\(Self.vip)]\n    ports:\n      - {name: http, port: 80}\n    endpoints:\n      - {address: \(CaptureLab.worldIPv4)}\n"
                    .write(toFile: table, atomically: true, encoding: .utf8)
                let proxy = try cgroup.start(in: lab.app, uid: Self.proxy, gid: Self.proxy, [
                    Repository.turnoutBinary, "proxy", "-f", table, "--outbound", "0.0.0.0:15001", "--inbound", "0.0.0.0:15006",
                    "--admin", "127.0.0.1:15000", "--workers", "1", "--drain-time", "0",
                ])
                defer { proxy.stop() }
                var reply = ""
                let ready = ProxyLab.eventually(within: .seconds(10)) {
                    reply = (try? Self.connect(lab, cgroup, to: Self.vip, port: 80)) ?? ""
                    return reply.hasPrefix("peer=")
                }
                try #require(ready, "no answer through the proxy: \(reply); proxy stderr: \(proxy.standardError)")

                // The app asked for the VIP, saw the VIP as its peer, and the proxy reached the endpoint.
                #expect(reply == "peer=\(Self.vip):80 line=peer 80 from \(CaptureLab.appIPv4)")
                // An address the table does not know is passed through to where the app asked; the
                // proxy's passthrough row shows it went through the proxy, not around it.
                #expect(try Self.connect(lab, cgroup, to: CaptureLab.world2IPv4, port: 443) == "peer=\(CaptureLab.world2IPv4):443 line=peer 443 from \(CaptureLab.appIPv4)")
                let status = try lab.run(.app, Repository.turnoutBinary, ["status", "--admin", "127.0.0.1:15000"])
                let passthrough = status.standardOutput.split(separator: "\n").first { $0.hasPrefix("  passthrough") }
                #expect(passthrough?.split(separator: " ") == ["passthrough", "1", "0", "0", "-"], "\(status.standardOutput)")
                // Localhost is left alone.
                #expect(try Self.connect(lab, cgroup, to: "127.0.0.1", port: 8080) == "peer=127.0.0.1:8080 line=app 8080 from 127.0.0.1")
                // Inbound: the peer's connection reaches the app through the proxy's inbound
                // listener, which delivers it from the passthrough source.
                #expect(try lab.connect(from: .peer, to: CaptureLab.appIPv4, port: 8080).line == "app 8080 from 127.0.0.6")
                #expect(try Self.conntrackEntries(lab) == 0)

                // `turnout status` reads the capture from its pins: the programs, the listener the
                // proxy registered, and counters that agree with the traffic above.
                let lines = try Self.captureStatus(lab, cgroup)
                #expect(lines.first == "socket capture (bpf) of cgroup \(cgroup.path): 7 of 7 programs attached", "\(lines)")
                #expect(lines.contains("  ports: outbound 15001, inbound 15006; IPv6 not captured"), "\(lines)")
                #expect(lines.contains("  inbound listener: IPv4 registered"), "\(lines)")
                // [captured, of the proxy's to inbound, held, recorded, forgotten]: the VIP and the
                // passthrough connection at least (more while the proxy was starting), none of the
                // proxy's own (it delivers inbound from the passthrough source); every established
                // one recorded, and the proxy asked for each one's original destination once.
                let outbound = Self.numbers(lines.first { $0.hasPrefix("  outbound:") })
                try #require(outbound.count == 5, "\(lines)")
                #expect(outbound[0] >= 2 && outbound[1] == 0 && outbound[3] >= 2, "\(lines)")
                #expect(outbound[2] == outbound[3] - outbound[4], "\(lines)")
                #expect(lines.contains("  inbound: 1 connections steered, 0 refused; SO_ORIGINAL_DST answered \(outbound[3]) (outbound) and 1 (inbound)"), "\(lines)")

                let removed = try Self.initialize(lab, cgroup, ["--cleanup"])
                try #require(removed.status == 0, "\(removed.standardError)")
                #expect(removed.standardOutput.contains("flushed via bpf"))
                #expect(removed.standardOutput.contains("- cgroup/connect4 on \(cgroup.path)"))
                // Detached: the peer reaches the app directly again.
                #expect(try lab.connect(from: .peer, to: CaptureLab.appIPv4, port: 8080).line == "app 8080 from \(CaptureLab.peerIPv4)")
                // …and the VIP, which only the proxy could reach, is not reached any more.
                #expect(try Self.connect(lab, cgroup, to: Self.vip, port: 80).hasPrefix("error="))
                let again = try Self.initialize(lab, cgroup, ["--cleanup"])
                #expect(again.status == 0 && again.standardOutput.contains("absent via bpf"))
            }
        }
    }

    @Test("IPv6: a VIP of each family and one reached through a v4-mapped address pass through turnout proxy; inbound over IPv6 arrives from ::6; no conntrack entry")
    func ipv6() throws {
        try withCaptureLab(prefix: "bpfsix") { lab in
            try lab.stopProxy()
            try withLabCgroup(prefix: "turnout-bpfsix") { cgroup in
                let installed = try Self.initialize(lab, cgroup, ipv6: true)
                try #require(installed.status == 0, "\(installed.standardError)")
                defer { _ = try? Self.initialize(lab, cgroup, ["--cleanup"]) }
                #expect(installed.standardOutput.contains("+ cgroup/connect6 on \(cgroup.path)"))
                let table = lab.stateDirectory + "/table.yaml"
                try """
                services:
                  - name: demo/web
                    addresses: [\(Self.vip), fd00:96::10]
                    ports:
                      - {name: http, port: 80}
                    endpoints:
                      - {address: \(CaptureLab.worldIPv4)}
                      - {address: "\(CaptureLab.worldIPv6)"}

                """.write(toFile: table, atomically: true, encoding: .utf8)
                let proxy = try cgroup.start(in: lab.app, uid: Self.proxy, gid: Self.proxy, [
                    Repository.turnoutBinary, "proxy", "-f", table, "--outbound", "0.0.0.0:15001", "--outbound", "[::]:15001",
                    "--inbound", "0.0.0.0:15006", "--inbound", "[::]:15006", "--admin", "127.0.0.1:15000", "--workers", "1", "--drain-time", "0",
                ])
                defer { proxy.stop() }
                var reply = ""
                let ready = ProxyLab.eventually(within: .seconds(10)) {
                    reply = (try? Self.connect(lab, cgroup, to: "fd00:96::10", port: 80)) ?? ""
                    return reply.hasPrefix("peer=")
                }
                try #require(ready, "no answer through the proxy: \(reply); proxy stderr: \(proxy.standardError)")
                // The VIPs are routed nowhere: only a captured connection can reach the endpoint.
                #expect(reply == "peer=fd00:96::10:80 line=peer 80 from \(CaptureLab.appIPv6)")
                #expect(try Self.connect(lab, cgroup, to: "::ffff:\(Self.vip)", port: 80) == "peer=::ffff:\(Self.vip):80 line=peer 80 from \(CaptureLab.appIPv4)")
                #expect(try Self.connect(lab, cgroup, to: Self.vip, port: 80) == "peer=\(Self.vip):80 line=peer 80 from \(CaptureLab.appIPv4)")
                #expect(try Self.connect(lab, cgroup, to: "::1", port: 8080) == "peer=::1:8080 line=app 8080 from ::1")
                #expect(try lab.connect(from: .peer, to: CaptureLab.appIPv6, port: 8080).line == "app 8080 from ::6")
                #expect(try Self.conntrackEntries(lab) == 0)
            }
        }
    }

    @Test("exclusions: an excluded port and CIDR reach the world directly, the proxy's own uid is never captured; a re-run replaces the programs")
    func exclusionsAndRerun() throws {
        try withCaptureLab(prefix: "bpfexc") { lab in
            try lab.stopProxy()
            try withLabCgroup(prefix: "turnout-bpfexc") { cgroup in
                let installed = try Self.initialize(lab, cgroup, ["-o", "5432", "-x", "10.31.0.0/16"])
                try #require(installed.status == 0, "\(installed.standardError)")
                defer { _ = try? Self.initialize(lab, cgroup, ["--cleanup"]) }
                // Nothing listens on 15001: a captured connection is refused, never let past.
                #expect(try Self.connect(lab, cgroup, to: CaptureLab.worldIPv4, port: 80) == "error=ECONNREFUSED")
                #expect(try Self.connect(lab, cgroup, to: CaptureLab.worldIPv4, port: 5432) == "peer=\(CaptureLab.worldIPv4):5432 line=peer 5432 from \(CaptureLab.appIPv4)")
                #expect(try Self.connect(lab, cgroup, to: CaptureLab.world2IPv4, port: 80) == "peer=\(CaptureLab.world2IPv4):80 line=peer 80 from \(CaptureLab.appIPv4)")
                #expect(try Self.connect(lab, cgroup, to: CaptureLab.worldIPv4, port: 80, uid: Self.proxy) == "peer=\(CaptureLab.worldIPv4):80 line=peer 80 from \(CaptureLab.appIPv4)")
                // A socket refused on a captured connect(2) may connect again, here where capture
                // leaves it alone: it sees its real peer, and no origin is recorded for it.
                let again = try cgroup.run(in: lab.app, uid: Self.app, gid: Self.app, ["/usr/bin/python3", "-c", Self.reconnectingClient,
                                                                                         CaptureLab.worldIPv4, "80", CaptureLab.world2IPv4, "80"])
                #expect(again.standardOutput == "first=ECONNREFUSED peer=\(CaptureLab.world2IPv4):80 line=peer 80 from \(CaptureLab.appIPv4)\n", "\(again.standardError)")
                let outbound = try Self.captureStatus(lab, cgroup).first { $0.hasPrefix("  outbound:") }
                // Captured: the refused connect to :80 before, and this socket's refused first try;
                // none established, so no origin recorded.
                #expect(Self.numbers(outbound) == [2, 0, 0, 0, 0], "\(outbound ?? "no outbound line")")

                let rerun = try Self.initialize(lab, cgroup)
                try #require(rerun.status == 0, "\(rerun.standardError)")
                #expect(rerun.standardOutput.contains("rebuilt via bpf"))
                #expect(rerun.standardOutput.contains("~ cgroup/connect4 on \(cgroup.path) (program replaced)"))
                // The new options hold: port 5432 and 10.31/16 are captured now.
                #expect(try Self.connect(lab, cgroup, to: CaptureLab.worldIPv4, port: 5432) == "error=ECONNREFUSED")
                #expect(try Self.connect(lab, cgroup, to: CaptureLab.world2IPv4, port: 80) == "error=ECONNREFUSED")
            }
        }
    }

    @Test("a cgroup removed without --cleanup: status calls its pins gone, and the next init on the host removes them")
    func goneCgroup() throws {
        try withCaptureLab(prefix: "bpfgone") { lab in
            let first = try LabCgroup.create(prefix: "turnout-bpfgone")
            defer { try? first.remove() }
            let installed = try Self.initialize(lab, first)
            try #require(installed.status == 0, "\(installed.standardError)")
            let pins = try Self.pinDirectory(lab, first)
            try first.remove()
            // The kernel detaches the cgroup's links once it releases the cgroup, a moment after rmdir.
            let expected = "socket capture pins of a cgroup that is gone (removed without `init --cleanup`): \(pins); the next `init --backend bpf` on this host removes them"
            var lines: [String] = []
            let reported = ProxyLab.eventually(within: .seconds(10)) {
                lines = (try? Self.statusLines(lab)) ?? []
                return lines.contains(expected)
            }
            #expect(reported, "\(lines)")
            try withLabCgroup(prefix: "turnout-bpfgone") { second in
                let next = try Self.initialize(lab, second)
                defer { _ = try? Self.initialize(lab, second, ["--cleanup"]) }
                #expect(next.status == 0, "\(next.standardError)")
                #expect(next.standardOutput.contains("  - pins of a cgroup that is gone: \(pins)\n"), "\(next.standardOutput)")
                #expect(access(pins, F_OK) != 0)
                #expect(try Self.captureStatus(lab, second).first == "socket capture (bpf) of cgroup \(second.path): 7 of 7 programs attached")
            }
        }
    }

    @Test("two inits take turns: an init waits while another holds the lock on /sys/fs/bpf/turnout, then installs")
    func lockedInit() throws {
        try withCaptureLab(prefix: "bpflock") { lab in
            try withLabCgroup(prefix: "turnout-bpflock") { cgroup in
                #expect(mkdir("/sys/fs/bpf/turnout", 0o700) == 0 || errno == EEXIST)
                let lock = open("/sys/fs/bpf/turnout", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                try #require(lock >= 0 && flock(lock, LOCK_EX) == 0)
                let waiting = BackgroundCall { try Self.initialize(lab, cgroup) }
                Thread.sleep(forTimeInterval: 0.3)
                #expect(!waiting.isFinished)
                close(lock)
                let installed = try waiting.result(within: .seconds(15))
                defer { _ = try? Self.initialize(lab, cgroup, ["--cleanup"]) }
                #expect(installed.status == 0, "\(installed.standardError)")
                #expect(installed.standardOutput.contains("created via bpf"))
            }
        }
    }

    @Test("a --cgroup that is not a cgroup v2 directory → exit 1, one line saying so, nothing pinned")
    func notACgroup() throws {
        // Inside a lab cgroup only for what it sets up: the BPF filesystem, checked before --cgroup.
        try withLabCgroup(prefix: "turnout-bpfbad") { _ in
            let before = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/bpf/turnout")) ?? []
            let result = try turnout(["init", "--backend", "bpf", "--cgroup", "/tmp", "--ipv6", "off"])
            #expect(result.status == 1)
            #expect(result.standardError == "turnout init: failed: --cgroup /tmp: not a cgroup v2 directory (the programs attach to a cgroup v2 hierarchy)\n")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/bpf/turnout")) ?? []) == before)
        }
    }

    @Test("--validate proves the capture from inside the cgroup, and is refused outside it")
    func validate() throws {
        try withCaptureLab(prefix: "bpfval") { lab in
            try lab.stopProxy()
            try withLabCgroup(prefix: "turnout-bpfval") { cgroup in
                let outside = try Self.initialize(lab, cgroup, ["--validate"])
                #expect(outside.status == 2)
                #expect(outside.standardError.contains("not inside --cgroup"))
                let inside = try Self.initialize(lab, cgroup, ["--validate"], inside: true)
                defer { _ = try? Self.initialize(lab, cgroup, ["--cleanup"]) }
                #expect(inside.status == 0, "\(inside.standardOutput)\(inside.standardError)")
                #expect(inside.standardOutput.contains("validation passed"), "\(inside.standardOutput)")
            }
        }
    }
}

/// What `init --backend bpf` refuses before touching the kernel: exit 2, one line naming why.
@Suite("turnout init --backend bpf: refused options")
struct SocketCaptureOptionTests {
    @Test("refused with the reason", arguments: [
        (["--ipv6", "off"], "--backend bpf needs --cgroup PATH"),
        (["--ipv6", "off", "--dry-run", "-c", "eth1"], "--exclude-interfaces: the bpf backend captures at connect(2)"),
        (["--ipv6", "off", "--dry-run", "-u", "1,2,3,4,5,6,7,8,9"], "at most 16 proxy uids and gids together"),
        (["--ipv6", "off", "--cgroup", "/sys/fs/cgroup", "--cleanup", "--drain-timeout", "3"], "nothing to drain"),
    ])
    func refused(arguments: [String], reason: String) throws {
        let result = try turnout(["init", "--backend", "bpf"] + arguments)
        #expect(result.status == 2)
        #expect(result.standardError.contains(reason), "\(result.standardError)")
    }

    @Test("--cgroup needs --backend bpf")
    func cgroupWithoutBPF() throws {
        let result = try turnout(["init", "--cgroup", "/sys/fs/cgroup", "--dry-run"])
        #expect(result.status == 2)
        #expect(result.standardError.contains("--cgroup goes with --backend bpf"))
    }

    @Test("--dry-run prints what the maps get, no root needed")
    func dryRun() throws {
        let result = try turnout(["init", "--backend", "bpf", "--ipv6", "off", "--dry-run", "-o", "5432", "-q", "443,5432", "-d", "15020", "-x", "169.254.169.254/32"])
        #expect(result.status == 0, "\(result.standardError)")
        for line in ["outbound ports excluded: 5432", "outbound ports always captured: 443", "outbound blocks excluded: 169.254.169.254/32",
                     "outbound blocks captured: 0.0.0.0/0", "inbound ports steered: 1-15019, 15021-65535", "proxy uids (never captured): 1337"] {
            #expect(result.standardOutput.contains(line), "\(line)")
        }
    }
}
