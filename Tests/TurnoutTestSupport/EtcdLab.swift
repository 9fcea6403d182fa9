import Foundation
import Synchronization

/// A throwaway etcd for tests: `/usr/bin/etcd` (Debian's etcd-server) as a single member on
/// free loopback ports with a temporary data directory, or one member of a cluster
/// (``startCluster(members:)``).
///
/// `start()` returns once etcd serves clients; ``stop()`` ends the process (SIGTERM, SIGKILL
/// after 5 s) and keeps the data, so ``restart()`` brings the same member back on the same
/// ports (an outage); ``pause()`` and ``resume()`` freeze it (SIGSTOP/SIGCONT) with its sockets
/// open; ``compact(to:)`` drops history. ``destroy()`` stops it and removes the
/// data directory; prefer `withEtcdLab { lab in … }`, which always does. Only the process
/// started here is ever signalled, by its pid.
///
/// Tests that need it are gated like kernel tests:
/// `.enabled(if: EtcdLab.isEnabled, Comment(rawValue: EtcdLab.skipReason))`: they skip when
/// etcd is not installed, and fail (cannot start) when `TURNOUT_REQUIRE_NETNS=1`.
public final class EtcdLab: Sendable {
    public static let executable = "/usr/bin/etcd"

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    /// Whether etcd tests run: etcd is installed, or they are required (and then fail without it).
    public static var isEnabled: Bool { isInstalled || KernelLab.isRequired }

    public static var skipReason: String {
        "etcd test: \(executable) is not installed (scripts/bootstrap installs etcd-server; "
            + "\(KernelLab.requireVariable)=1 makes these tests fail instead of skipping)"
    }

    public let clientPort: UInt16
    public let peerPort: UInt16
    public let dataDirectory: String
    /// etcd's `--max-txn-ops`.
    public let maximumTransactionOperations: Int
    /// The namespace etcd runs in (nil: this process's own) and the address its clients use.
    public let namespace: NetworkNamespace?
    public let host: String
    /// For an https etcd: the PKI, and the certificate and key the member serves clients with;
    /// it then also asks clients for a certificate signed by the PKI's CA (`--client-cert-auth`).
    public let tls: TLS?
    /// The member's name and every member's peer URL (`lab=http://127.0.0.1:PORT` alone).
    public let name: String
    let initialCluster: String
    /// etcd's `--auth-token-ttl` in seconds (nil: etcd's 300).
    public let authTokenTTL: Int?
    /// The user the lab's own requests authenticate as once ``enableAuthentication(user:password:)`` ran.
    private let user = Mutex<(name: String, password: String)?>(nil)
    private let process = Mutex<LabProcess?>(nil)
    /// Every run's stderr, for failure messages.
    private let logs = Locked<[String]>([])

    /// What an https member serves: `serving` is a certificate and key from `certificates`.
    public struct TLS: Sendable {
        public var certificates: TestCertificates
        public var serving: (certificate: String, key: String)

        public init(certificates: TestCertificates, serving: (certificate: String, key: String)) {
            self.certificates = certificates
            self.serving = serving
        }
    }

    /// The client URL, `http://127.0.0.1:PORT` (or the host given; `https://` with TLS).
    public var url: String { "\(tls == nil ? "http" : "https")://\(host):\(clientPort)" }

    private init(clientPort: UInt16, peerPort: UInt16, dataDirectory: String, maximumTransactionOperations: Int,
                 namespace: NetworkNamespace?, host: String, tls: TLS? = nil, name: String = "lab", initialCluster: String? = nil,
                 authTokenTTL: Int? = nil) {
        self.authTokenTTL = authTokenTTL
        self.tls = tls
        self.name = name
        self.initialCluster = initialCluster ?? "\(name)=http://127.0.0.1:\(peerPort)"
        self.namespace = namespace
        self.host = host
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.dataDirectory = dataDirectory
        self.maximumTransactionOperations = maximumTransactionOperations
    }

    /// Starts a new member; `maximumTransactionOperations` is etcd's `--max-txn-ops` (etcd's own
    /// default is 128). With a `namespace` (whose `lo` is up), etcd runs there and serves clients
    /// on `host` (an address of that namespace other namespaces can reach); its ports are taken
    /// from this process's namespace's free ones, which in a new namespace are free too.
    /// With `tls`, it serves clients over https only and asks them for a certificate.
    /// `authTokenTTL` is etcd's `--auth-token-ttl` (seconds a token stays valid).
    public static func start(maximumTransactionOperations: Int = 128, in namespace: NetworkNamespace? = nil,
                             host: String = "127.0.0.1", tls: TLS? = nil, authTokenTTL: Int? = nil) throws -> EtcdLab {
        guard isInstalled else { throw ServiceLabError("\(executable) is not installed (scripts/bootstrap installs etcd-server)") }
        let lab = EtcdLab(clientPort: try freePort(), peerPort: try freePort(), dataDirectory: newDataDirectory(),
                          maximumTransactionOperations: maximumTransactionOperations, namespace: namespace, host: host, tls: tls,
                          authTokenTTL: authTokenTTL)
        do {
            try lab.restart()
        } catch {
            lab.destroy()
            throw error
        }
        return lab
    }

    /// Starts `members` members of one cluster (`m0`, `m1`, …) on free loopback ports; returns
    /// once every one serves clients (within 20 s), or stops them all and throws.
    public static func startCluster(members: Int) throws -> [EtcdLab] {
        guard isInstalled else { throw ServiceLabError("\(executable) is not installed (scripts/bootstrap installs etcd-server)") }
        let ports = try (0..<members).map { _ in (client: try freePort(), peer: try freePort()) }
        let cluster = ports.indices.map { "m\($0)=http://127.0.0.1:\(ports[$0].peer)" }.joined(separator: ",")
        let labs = ports.indices.map { index in
            EtcdLab(clientPort: ports[index].client, peerPort: ports[index].peer, dataDirectory: newDataDirectory(),
                    maximumTransactionOperations: 128, namespace: nil, host: "127.0.0.1", name: "m\(index)", initialCluster: cluster)
        }
        do {
            // Each member waits for a quorum before it serves: all start, then all are awaited.
            for lab in labs { try lab.launch() }
            for lab in labs { try lab.awaitServing() }
        } catch {
            for lab in labs { lab.destroy() }
            throw error
        }
        return labs
    }

    /// A data directory of its own under the temporary directory (created by etcd).
    private static func newDataDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("turnout-etcdlab-\(getpid())-\(UUID().uuidString)").path
    }

    /// Starts the member again on the same ports and data (after ``stop()``); returns once it
    /// serves clients (within 20 s).
    public func restart() throws {
        try launch()
        try awaitServing()
    }

    private func launch() throws {
        let prefix = namespace.map { ["netns", "exec", $0.name, Self.executable] } ?? []
        let child = try LabProcess(namespace == nil ? Self.executable : try Subprocess.locate("ip"), prefix + [
            "--name", name, "--data-dir", dataDirectory,
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
            "--initial-cluster", initialCluster,
            "--max-txn-ops", "\(maximumTransactionOperations)",
            // Loopback peers answer in microseconds: elect within half a second.
            "--heartbeat-interval", "50", "--election-timeout", "500",
        ] + (authTokenTTL.map { ["--auth-token-ttl", "\($0)"] } ?? []) + (tls.map { tls in
            ["--cert-file", tls.serving.certificate, "--key-file", tls.serving.key,
             "--trusted-ca-file", tls.certificates.caFile, "--client-cert-auth"]
        } ?? []))
        process.withLock { $0 = child }
    }

    private func awaitServing() throws {
        guard let child = process.withLock({ $0 }) else { throw ServiceLabError("etcd \(name): not started") }
        guard child.waitForOutput("ready to serve client requests", inStandardError: true, within: .seconds(20)) else {
            child.stop()
            logs.mutate { $0.append(child.standardError) }
            throw ServiceLabError("etcd \(name) did not start on \(url): \(child.standardError.suffix(2_000))")
        }
    }

    /// Ends the process (SIGTERM, then SIGKILL after 5 s); the data stays for ``restart()``.
    public func stop() {
        let child = process.withLock { process in
            defer { process = nil }
            return process
        }
        guard let child else { return }
        child.signal(SIGCONT) // a paused etcd cannot handle SIGTERM
        child.stop()
        logs.mutate { $0.append(child.standardError) }
    }

    /// Freezes the process (SIGSTOP): its sockets stay open, nothing answers.
    public func pause() { process.withLock { $0 }?.signal(SIGSTOP) }

    /// Lets a paused process run again (SIGCONT).
    public func resume() { process.withLock { $0 }?.signal(SIGCONT) }

    /// Turns etcd's authentication on with `user` in the root role (etcdctl's `role add root`,
    /// `user add`, `user grant-role`, `auth enable`; a user `root` too, with the same password,
    /// as etcd requires): from then on every request needs a token, the lab's own ones included
    /// (they authenticate as `user`).
    public func enableAuthentication(user name: String, password: String) throws {
        // etcd turns authentication on only with a user named root in the root role.
        _ = try gateway("/v3/auth/role/add", try json(["name": "root"]))
        for user in Set(["root", name]) {
            _ = try gateway("/v3/auth/user/add", try json(["name": user, "password": password]))
            _ = try gateway("/v3/auth/user/grant", try json(["user": user, "role": "root"]))
        }
        _ = try gateway("/v3/auth/enable", "{}")
        user.withLock { $0 = (name, password) }
    }

    /// Changes `name`'s password (etcdctl's `user passwd`): etcd then refuses every token issued
    /// before. The lab's own requests use the new one when `name` is the lab's user.
    public func changePassword(user name: String, to password: String) throws {
        _ = try gateway("/v3/auth/user/changepw", try json(["name": name, "password": password]))
        user.withLock { if $0?.name == name { $0?.password = password } }
    }

    /// Compacts the history up to `revision`, so a watch from before it is canceled.
    public func compact(to revision: Int64) throws {
        _ = try gateway("/v3/kv/compaction", #"{"revision": "\#(revision)", "physical": true}"#)
    }

    /// Every key under `prefix` with its value as text, and the store's revision, read by
    /// python3 (so a test of Turnout's etcd client does not check it with itself).
    public func contents(prefix: String = "/turnout/") throws -> (revision: Int64, values: [String: String]) {
        var end = Array(prefix.utf8)
        end[end.count - 1] += 1
        let request = #"{"key": "\#(Data(prefix.utf8).base64EncodedString())", "range_end": "\#(Data(end).base64EncodedString())"}"#
        let json = try gateway("/v3/kv/range", request)
        guard let header = json["header"] as? [String: Any], let revision = (header["revision"] as? String).flatMap({ Int64($0) }) else {
            throw ServiceLabError("etcd range \(prefix): no revision in \(json)")
        }
        var values: [String: String] = [:]
        for pair in json["kvs"] as? [[String: Any]] ?? [] {
            guard let key = (pair["key"] as? String).flatMap({ Data(base64Encoded: $0) }),
                  let value = Data(base64Encoded: pair["value"] as? String ?? "") else {
                throw ServiceLabError("etcd range: a key or value that is not base64: \(pair)")
            }
            values[String(decoding: key, as: UTF8.self)] = String(decoding: value, as: UTF8.self)
        }
        return (revision, values)
    }

    /// `fields` as a JSON object, for a gateway request's body.
    private func json(_ fields: [String: String]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: fields), as: UTF8.self)
    }

    /// POSTs `body` to etcd's JSON gateway at `path` with python3's urllib; the JSON answer.
    private func gateway(_ path: String, _ body: String) throws -> [String: Any] {
        // Over https, python's ssl module checks etcd's certificate and presents the client's.
        // With authentication on, it trades the lab's user for a token first.
        let script = """
            import json, ssl, sys, urllib.request
            context = None
            if sys.argv[5]:
                context = ssl.create_default_context(cafile=sys.argv[5])
                context.load_cert_chain(sys.argv[6], sys.argv[7])
            headers = {}
            if sys.argv[3]:
                login = json.dumps({"name": sys.argv[3], "password": sys.argv[4]}).encode()
                answer = urllib.request.urlopen(urllib.request.Request(sys.argv[1].rsplit("/v3/", 1)[0] + "/v3/auth/authenticate",
                                                                       data=login, method="POST"), timeout=10, context=context)
                headers["Authorization"] = json.loads(answer.read().decode())["token"]
            request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST", headers=headers)
            sys.stdout.write(urllib.request.urlopen(request, timeout=10, context=context).read().decode())
            """
        let files = tls.map { [$0.certificates.caFile, $0.certificates.clientCertificateFile, $0.certificates.clientKeyFile] } ?? ["", "", ""]
        let login = user.withLock { $0 }.map { [$0.name, $0.password] } ?? ["", ""]
        let result = try Subprocess.run("/usr/bin/python3", ["-c", script, url + path, body] + login + files, timeLimit: .seconds(20))
        guard result.status == 0, let json = try? JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any] else {
            throw ServiceLabError("etcd \(path) \(body): \(result.standardError)\(result.standardOutput)")
        }
        return json
    }

    /// Stops the process and removes the data directory. Calling it again does nothing.
    public func destroy() {
        stop()
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }

    /// What etcd wrote to stderr in every run so far (the current one included).
    public var log: String {
        (logs.value + [process.withLock { $0 }?.standardError ?? ""]).joined(separator: "\n")
    }

    deinit { destroy() }

    /// A loopback TCP port nothing is bound to right now, below the kernel's ephemeral range
    /// (`ip_local_port_range`), and not handed out before by this process.
    ///
    /// Why not the kernel's choice for port 0: that is an ephemeral port, and in the full suite
    /// other tests open thousands of loopback connections whose source ports come from the same
    /// range, so one of them took the port before etcd bound it ("bind: address already in
    /// use"). Below the range only explicit binds compete, and the cursor keeps this process's
    /// own from colliding.
    public static func freePort() throws -> UInt16 {
        for _ in 0..<1_000 {
            let port = portCursor.withLock { cursor in
                defer { cursor = cursor + 1 < ephemeralStart ? cursor + 1 : ephemeralStart - candidateCount }
                return cursor
            }
            if try isBindable(port) { return port }
        }
        throw ServiceLabError("no free loopback port below \(ephemeralStart) after 1,000 tries")
    }

    /// How many ports below the ephemeral range ``freePort()`` hands out, in turn.
    private static let candidateCount: UInt16 = 10_000
    /// The first ephemeral port (Linux's default, 32768, when the sysctl cannot be read).
    private static let ephemeralStart: UInt16 = {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let first = range.split(whereSeparator: \.isWhitespace).first.flatMap { UInt16($0) } ?? 32_768
        return max(first, 1_024 + candidateCount)
    }()
    /// The next candidate; starts at a random place so two test processes rarely walk together.
    private static let portCursor = Mutex<UInt16>(ephemeralStart - UInt16.random(in: 1...candidateCount))

    private static func isBindable(_ port: UInt16) throws -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServiceLabError.system("socket") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// Runs `body` with a fresh cluster of `members` etcd members, all destroyed afterwards (also
/// when `body` throws).
public func withEtcdCluster<Result>(members: Int = 3, _ body: ([EtcdLab]) throws -> Result) throws -> Result {
    try withStartedLab("etcd cluster", start: { try EtcdLab.startCluster(members: members) },
                       stop: { labs in for lab in labs { lab.destroy() } }, body)
}

/// Runs `body` with a fresh etcd (https with `tls`), always destroyed afterwards (also when
/// `body` throws).
public func withEtcdLab<Result>(maximumTransactionOperations: Int = 128, tls: EtcdLab.TLS? = nil, authTokenTTL: Int? = nil,
                                _ body: (EtcdLab) throws -> Result) throws -> Result {
    try withStartedLab("etcd lab", start: { try EtcdLab.start(maximumTransactionOperations: maximumTransactionOperations, tls: tls, authTokenTTL: authTokenTTL) },
                       stop: { $0.destroy() }, body)
}
