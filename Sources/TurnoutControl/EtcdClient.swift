import FoundationEssentials
import Glibc
import Synchronization
import TurnoutModel

/// A client for etcd's v3 JSON gateway (etcd 3.4: `POST /v3/kv/range`, `/v3/kv/put`,
/// `/v3/kv/deleterange`, `/v3/kv/txn`, and `/v3/watch` through ``EtcdWatch``), written over
/// ``HTTPExchange`` so Turnout needs no gRPC stack.
///
/// Keys are text (Turnout's keys are); values are bytes. Every request runs on a connection of
/// its own and must finish within ``requestTimeout`` (connecting at most
/// ``HTTPExchange/connectTimeout`` of it), and is abandoned at once when the optional
/// `interrupt` descriptor becomes readable. Calls block the calling thread. `http://` and
/// `https://` (with a ``TLSClientConfiguration``: the CAs to trust, a client certificate) with
/// an IP address, `localhost` or a host name (resolved at each connection, see ``Member``).
/// With ``EtcdCredentials`` every request carries a token (etcd's `Authorization` header),
/// fetched before the first one and again when etcd calls it invalid (expired). A value;
/// `Sendable`, usable from any thread. Errors are ``EtcdError``.
///
/// Given several members (`http://A:2379,http://B:2379,http://C:2379`, as `etcdctl
/// --endpoints` takes them), a request goes to the member that last answered and moves on to
/// the next when that one fails: a read (range, watch) after any failure to get an answer or an
/// HTTP 503 (a member without a leader); a write only when its connection was never made, so
/// no member can have applied it twice. Copies of a client share which member answered last.
public struct EtcdClient: Sendable {
    /// The members, in the order given.
    public let members: [Member]
    /// The URL as given, for messages.
    public let url: String
    /// The TLS files for `https://` members; nil for `http://`.
    public let tls: TLSClientConfiguration?
    /// The user requests authenticate as; nil for an etcd without authentication.
    public let credentials: EtcdCredentials?
    /// How long one request may take on one member, from connect to the last byte of its
    /// response.
    public var requestTimeout: Duration = .seconds(5)
    /// Made readable to abandon a request in flight (a ``Wakeup``'s descriptor); nil for none.
    public var interrupt: Int32?
    /// The index in ``members`` of the member that answered last: where requests start.
    private let lastAnswered = MemberIndex()
    /// Each host name's addresses as last resolved: used when a lookup fails or times out.
    private let lastResolved = ResolvedAddresses()
    /// The token the credentials were last traded for.
    private let token = AuthToken()

    /// The token every copy of the client uses; a class so that one authentication serves them
    /// all. Two requests that find it invalid at once may both authenticate: each token works.
    private final class AuthToken: Sendable {
        let value = Mutex<String?>(nil)
        /// How many times a token was fetched, for tests.
        let fetched = Atomic<Int>(0)
    }

    /// How many times this client and its copies fetched a token (authenticated).
    var authentications: Int { token.fetched.load(ordering: .relaxed) }

    /// Which member a request tries first; a class so that every copy of the client (the
    /// source's thread holds one) learns of a failover. An atomic, not a lock: a request only
    /// needs a recent value, and two requests failing over at once may both store theirs.
    private final class MemberIndex: Sendable {
        let value = Atomic<Int>(0)
    }

    /// What each host name resolved to last; a class so that every copy of the client shares
    /// it. A DNS server that drops one packet (glibc waits 5 s for it, a whole request timeout)
    /// then costs a stale address, not the request.
    private final class ResolvedAddresses: Sendable {
        let byHost = Mutex<[String: [SocketAddress]]>([:])
    }

    /// One etcd member: where to connect, and the name its certificate must carry.
    public struct Member: Sendable, Hashable, CustomStringConvertible {
        /// The host as the URL wrote it: an IP address, `localhost`, or a host name. What an
        /// https member's certificate is checked against.
        public let host: String
        public let port: UInt16
        /// The address, when the host is one (`localhost`: 127.0.0.1); nil for a host name,
        /// which is resolved again at each connection (``HostResolver``), so a member that moves
        /// to another address is followed.
        public let address: SocketAddress?

        /// `ADDRESS:PORT`, or `NAME:PORT` for a host name.
        public var description: String { address?.description ?? "\(host):\(port)" }
    }

    /// `http` or `https`.
    public var scheme: String { tls == nil ? "http" : "https" }

    /// Parses `http://HOST:PORT` or `https://HOST:PORT`, or several separated by commas (one per
    /// etcd member, all of one scheme); HOST an IPv4 address, `[IPv6]`, `localhost` or a host
    /// name, PORT 2379 when absent, a trailing `/` allowed. `https://` members are reached with
    /// `tls` (nil: the system's CAs, no client certificate); `tls` naming files with `http://`
    /// members is an error, as the files would be ignored. `credentials` are for an etcd with
    /// authentication enabled. Throws a message naming what is wrong.
    public init(url: String, tls: TLSClientConfiguration? = nil, credentials: EtcdCredentials? = nil) throws(ValueError) {
        var members: [Member] = []
        var schemes: Set<String> = []
        for text in url.split(separator: ",", omittingEmptySubsequences: false) {
            guard !text.isEmpty else { throw ValueError("\(url): an empty member (a comma too many)") }
            let (scheme, member) = try Self.member(String(text))
            guard !members.contains(where: { $0.description == member.description }) else {
                throw ValueError("\(url): \(member) is listed twice")
            }
            members.append(member)
            schemes.insert(scheme)
        }
        guard schemes.count == 1 else { throw ValueError("\(url): every member must be http:// or every member https://, not a mix") }
        if schemes.contains("https") {
            if let tls {
                self.tls = tls
            } else {
                self.tls = try TLSClientConfiguration()
            }
        } else {
            if let tls, tls.namesFiles {
                throw ValueError("\(url): TLS certificates are given, but etcd's address is http:// (write https://)")
            }
            self.tls = nil
        }
        self.members = members
        self.url = url
        self.credentials = credentials
    }

    /// The member requests try first: the one that answered last.
    public var preferredMember: Member { members[lastAnswered.value.load(ordering: .relaxed)] }

    /// One member's `SCHEME://HOST:PORT`: the scheme and the member.
    private static func member(_ url: String) throws(ValueError) -> (String, Member) {
        guard let scheme = ["http", "https"].first(where: { url.hasPrefix("\($0)://") }) else {
            throw ValueError("\(url): etcd's address must be http://HOST:PORT or https://HOST:PORT")
        }
        var authority = url.dropFirst(scheme.count + 3)
        if authority.hasSuffix("/") { authority = authority.dropLast() }
        guard !authority.contains("/"), !authority.isEmpty else {
            throw ValueError("\(url): etcd's address must be \(scheme)://HOST:PORT, without a path")
        }
        var host: Substring, portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw ValueError("\(url): an IPv6 address without its closing ]") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let rest = authority[authority.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { throw ValueError("\(url): after [IPv6] comes :PORT or nothing") }
            portText = rest.isEmpty ? nil : rest.dropFirst()
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
            portText = nil
        }
        let digits = portText.map { !$0.isEmpty && $0.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } } ?? true
        guard digits, let port = portText.map({ UInt16($0) }) ?? 2379, port != 0 else {
            throw ValueError("\(url): the port must be a number from 1 to 65535 (an IPv6 address needs brackets: [::1]:2379)")
        }
        if authority.hasPrefix("[") {
            guard let address = IPAddress(host), address.family == .ipv6 else {
                throw ValueError("\(url): brackets hold an IPv6 address ([::1]:2379)")
            }
        }
        // A fully qualified name may end with a dot; the certificate names it without.
        if host.hasSuffix("."), host.count > 1 { host = host.dropLast() }
        if host.lowercased() == "localhost" {
            return (scheme, Member(host: "localhost", port: port, address: SocketAddress(address: .v4(0x7F00_0001), port: port)))
        }
        if let address = IPAddress(host) {
            guard authority.hasPrefix("[") == (address.family == .ipv6) else {
                throw ValueError("\(url): an IPv6 address goes in brackets ([::1]:2379)")
            }
            return (scheme, Member(host: "\(address)", port: port, address: SocketAddress(address: address, port: port)))
        }
        guard Self.isHostName(host) else {
            throw ValueError("\(url): etcd's host must be an IP address ([IPv6]), localhost or a host name (\(scheme)://etcd-0.example:2379)")
        }
        return (scheme, Member(host: String(host).lowercased(), port: port, address: nil))
    }

    /// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters, at most 253
    /// in all, and not all digits (that is a mistyped IPv4 address).
    private static func isHostName(_ host: Substring) -> Bool {
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        return host.utf8.count <= 253 && !labels.isEmpty
            && labels.allSatisfy { label in
                (1...63).contains(label.utf8.count) && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "-" }
            }
            && !host.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || $0 == "." }
    }

    /// A key/value pair as etcd holds it.
    public struct KeyValue: Sendable, Hashable {
        public var key: String
        public var value: [UInt8]
        public var createRevision: Int64
        /// The revision of its last change.
        public var modRevision: Int64

        public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64) {
            self.key = key
            self.value = value
            self.createRevision = createRevision
            self.modRevision = modRevision
        }
    }

    /// A range's answer.
    public struct RangeResult: Sendable {
        /// The store's revision the range was read at.
        public var revision: Int64
        /// The pairs, sorted by key unless another order was asked for; without values when
        /// asked for keys only.
        public var keyValues: [KeyValue]
        /// How many keys are in the range (more than `keyValues.count` under a limit).
        public var count: Int64
        /// The address that answered (a member's, or one of a host name's).
        public var answeredBy: SocketAddress
    }

    /// One operation of a transaction.
    public enum Operation: Sendable, Hashable {
        case put(key: String, value: [UInt8])
        case delete(key: String)
    }

    /// What a transaction did.
    public struct TransactionResult: Sendable {
        /// False when its guard failed, and nothing was written.
        public var succeeded: Bool
        /// The store's revision after it (unchanged when nothing was written).
        public var revision: Int64
    }

    /// The first key after every key that starts with `prefix`: the `range_end` of a prefix
    /// range (its last byte plus one).
    public static func prefixEnd(_ prefix: String) -> [UInt8] {
        var bytes = Array(prefix.utf8)
        while let last = bytes.popLast() {
            if last < 0xFF { return bytes + [last + 1] }
        }
        return [0] // every byte 0xFF (or empty): "to the end of the keyspace"
    }

    /// Every key starting with `prefix`, at `revision` (nil: the latest).
    ///
    /// `keysOnly` leaves the values out; `limit` (0: none) with `newestFirst` sorts by
    /// modification revision, newest first, before limiting, so `limit: 1` answers "the newest
    /// change" and `count` "how many keys" in one cheap request.
    public func range(prefix: String, revision: Int64? = nil, keysOnly: Bool = false, limit: Int = 0,
                      newestFirst: Bool = false) throws(EtcdError) -> RangeResult {
        var fields = ["\"key\":\(Self.base64(prefix))", "\"range_end\":\(Self.base64(Self.prefixEnd(prefix)))"]
        if let revision { fields.append("\"revision\":\"\(revision)\"") }
        if keysOnly { fields.append("\"keys_only\":true") }
        if limit > 0 { fields.append("\"limit\":\"\(limit)\"") }
        if newestFirst { fields += ["\"sort_order\":\"DESCEND\"", "\"sort_target\":\"MOD\""] }
        let (request, body, server) = try post("/v3/kv/range", fields, .read)
        let answer: EtcdGatewayJSON.RangeResponse = try Self.decode(body, request: request)
        var keyValues: [KeyValue] = []
        for pair in answer.kvs ?? [] {
            keyValues.append(try Self.keyValue(pair, request: request))
        }
        return RangeResult(revision: answer.header?.revision?.value ?? 0, keyValues: keyValues,
                           count: answer.count?.value ?? 0, answeredBy: server)
    }

    /// Sets `key` to `value`; the store's revision after it.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) throws(EtcdError) -> Int64 {
        let (request, body, _) = try post("/v3/kv/put", ["\"key\":\(Self.base64(key))", "\"value\":\(Self.base64(value))"], .write)
        let answer: EtcdGatewayJSON.WriteResponse = try Self.decode(body, request: request)
        return answer.header?.revision?.value ?? 0
    }

    /// Deletes `key`; how many keys went (0 or 1).
    @discardableResult
    public func delete(_ key: String) throws(EtcdError) -> Int64 {
        let (request, body, _) = try post("/v3/kv/deleterange", ["\"key\":\(Self.base64(key))"], .write)
        let answer: EtcdGatewayJSON.WriteResponse = try Self.decode(body, request: request)
        return answer.deleted?.value ?? 0
    }

    /// Runs `operations` as one transaction: all of them or none. With `unchangedSince`, only
    /// if no key under `prefix` was created or modified after that revision (a deleted key is
    /// not seen by this guard); otherwise it reports `succeeded: false` and writes nothing.
    /// etcd refuses more than its `--max-txn-ops` operations (128 by default).
    public func transaction(_ operations: [Operation], prefix: String? = nil, unchangedSince revision: Int64? = nil) throws(EtcdError) -> TransactionResult {
        var fields: [String] = []
        if let prefix, let revision {
            fields.append("\"compare\":[{\"key\":\(Self.base64(prefix)),\"range_end\":\(Self.base64(Self.prefixEnd(prefix))),"
                          + "\"target\":\"MOD\",\"result\":\"LESS\",\"mod_revision\":\"\(revision + 1)\"}]")
        }
        let requests = operations.map { operation in
            switch operation {
            case .put(let key, let value):
                "{\"request_put\":{\"key\":\(Self.base64(key)),\"value\":\(Self.base64(value))}}"
            case .delete(let key):
                "{\"request_delete_range\":{\"key\":\(Self.base64(key))}}"
            }
        }
        fields.append("\"success\":[\(requests.joined(separator: ","))]")
        let (request, body, _) = try post("/v3/kv/txn", fields, .write)
        let answer: EtcdGatewayJSON.TxnResponse = try Self.decode(body, request: request)
        return TransactionResult(succeeded: answer.succeeded ?? false, revision: answer.header?.revision?.value ?? 0)
    }

    /// Starts a watch on every key under `prefix` from `startRevision` (see ``EtcdWatch``).
    public func watch(prefix: String, from startRevision: Int64, progressNotify: Bool = true) throws(EtcdError) -> EtcdWatch {
        var fields = ["\"key\":\(Self.base64(prefix))", "\"range_end\":\(Self.base64(Self.prefixEnd(prefix)))",
                      "\"start_revision\":\"\(startRevision)\""]
        if progressNotify { fields.append("\"progress_notify\":true") }
        let body = Array("{\"create_request\":{\(fields.joined(separator: ","))}}".utf8)
        // The token as it is, not ``authorized(_:)``: etcd takes a watch with a token it no longer
        // accepts (HTTP 200) and cancels it in the stream ("etcdserver: invalid auth token",
        // measured with 3.4), where no retry here sees it. The source reads the prefix just before it watches, and that read
        // renews an expired token; a watch cancelled all the same is read again from the start.
        let headers = try tokenHeader()
        return try onMembers("/v3/watch", .read) { member throws(EtcdError) in
            let exchange = try open("/v3/watch", on: member, headers: headers, body: body, until: .now + requestTimeout)
            guard exchange.head.status == 200 else {
                throw Self.refusal(exchange, body: (try? exchange.readBody(until: .now + requestTimeout)) ?? [])
            }
            return EtcdWatch(exchange: exchange)
        }
    }

    // MARK: Plumbing

    /// When a failed request may move on to the next member.
    private enum Retry {
        /// Reads: after any failure to get an answer, or a 503 (a member without a leader, or
        /// one that could not reach it in time).
        case read
        /// Writes: only when the connection was never made, so the member cannot have
        /// received it (a write that timed out may have been applied).
        case write

        func movesOn(after error: EtcdError) -> Bool {
            switch (self, error) {
            case (_, .unreachable(let failure)) where failure.kind == .interrupted: false
            case (.read, .unreachable): true
            case (.read, .refused(_, let status, _, _)): status == 503
            case (.write, .unreachable(let failure)): failure.requestNotSent
            default: false
            }
        }
    }

    /// Runs `attempt` (a request to `path`) on each member in turn, from the one that answered
    /// last, until one answers or a failure may not move on (`retry`); remembers who answered.
    /// With one member its failure is thrown as it is; with several and none answering, every
    /// member's. The interrupt is looked at before each next member: a connect does not watch
    /// it, and a stopping source must not wait out one connect timeout per member.
    private func onMembers<Answer>(_ path: String, _ retry: Retry, _ attempt: (Member) throws(EtcdError) -> Answer) throws(EtcdError) -> Answer {
        let first = lastAnswered.value.load(ordering: .relaxed)
        var failures: [EtcdError] = []
        for offset in members.indices {
            let index = (first + offset) % members.count
            if offset > 0 { try stopIfInterrupted(before: members[index], path) }
            do {
                let answer = try attempt(members[index])
                if offset > 0 { lastAnswered.value.store(index, ordering: .relaxed) }
                return answer
            } catch {
                guard retry.movesOn(after: error) else { throw error }
                failures.append(error)
            }
        }
        throw failures.count == 1 ? failures[0] : .noMemberAnswered(failures)
    }

    /// Whether `descriptor` is readable now (`poll(2)` without waiting).
    private static func isReadable(_ descriptor: Int32) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) > 0 && entry.revents != 0
    }

    /// Sends `{fields}` to `path`; the request's name, the body of a 200 answer and the member
    /// that gave it.
    private func post(_ path: String, _ fields: [String], _ retry: Retry) throws(EtcdError) -> (String, [UInt8], SocketAddress) {
        try authorized { headers throws(EtcdError) in try post(path, fields, retry, headers: headers) }
    }

    /// ``post(_:_:_:)`` with `headers`, and no token of its own.
    private func post(_ path: String, _ fields: [String], _ retry: Retry, headers: [(name: String, value: String)]) throws(EtcdError) -> (String, [UInt8], SocketAddress) {
        let payload = Array("{\(fields.joined(separator: ","))}".utf8)
        return try onMembers(path, retry) { member throws(EtcdError) in
            let deadline = ContinuousClock.now + requestTimeout
            let exchange = try open(path, on: member, headers: headers, body: payload, until: deadline)
            let body: [UInt8]
            do throws(HTTPError) {
                body = try exchange.readBody(until: deadline)
            } catch {
                throw .unreachable(error)
            }
            guard exchange.head.status == 200 else { throw Self.refusal(exchange, body: body) }
            return (exchange.request, body, exchange.server)
        }
    }

    /// Runs `request` with the token's header (none without credentials). When etcd calls the
    /// token invalid (it expired, or the auth store changed since), fetches another and runs the
    /// request once more: a request refused for its token was not carried out.
    private func authorized<Answer>(_ request: ([(name: String, value: String)]) throws(EtcdError) -> Answer) throws(EtcdError) -> Answer {
        let headers = try tokenHeader()
        do throws(EtcdError) {
            return try request(headers)
        } catch where error.isInvalidToken {
            return try request(try tokenHeader(replacing: headers.first?.value))
        }
    }

    /// The `Authorization` header with the token kept (fetched first if there is none), or no
    /// header without credentials. With `refused`, the token etcd just refused: another copy of
    /// the client may have replaced it meanwhile, and then that one is used rather than a new
    /// authentication.
    private func tokenHeader(replacing refused: String? = nil) throws(EtcdError) -> [(name: String, value: String)] {
        guard let credentials else { return [] }
        if let kept = token.value.withLock({ $0 }), kept != refused { return [("Authorization", kept)] }
        return [("Authorization", try authenticate(credentials))]
    }

    /// Trades `credentials` for a token (`POST /v3/auth/authenticate`) and keeps it. The
    /// password is read now (a file's, as it is at this moment).
    private func authenticate(_ credentials: EtcdCredentials) throws(EtcdError) -> String {
        let password: String
        do { password = try credentials.password() } catch { throw .credentials(error) }
        let (request, body, _) = try post("/v3/auth/authenticate", ["\"name\":\(JSONValue.quoted(credentials.user))", "\"password\":\(JSONValue.quoted(password))"],
                                          .read, headers: [])
        let answer: EtcdGatewayJSON.AuthenticateResponse = try Self.decode(body, request: request)
        guard let token = answer.token, !token.isEmpty, !token.contains(where: \.isNewline) else {
            throw .badResponse(request: request, what: "no token for user \(credentials.user)")
        }
        self.token.value.withLock { $0 = token }
        self.token.fetched.add(1, ordering: .relaxed)
        return token
    }

    /// Opens the request on `member`: on each of its addresses in turn (a host name's, resolved
    /// now) until one takes the connection.
    private func open(_ path: String, on member: Member, headers: [(name: String, value: String)], body: [UInt8],
                      until deadline: ContinuousClock.Instant) throws(EtcdError) -> HTTPExchange {
        let addresses = try addresses(of: member, path, until: deadline)
        var index = 0
        while true {
            if index > 0 { try stopIfInterrupted(before: member, path) }
            do {
                return try HTTPExchange(server: addresses[index], tls: tls, serverName: member.host, method: "POST", path: path,
                                        headers: headers, body: body, until: deadline, interrupt: interrupt)
            } catch {
                // Another address of the same name, only when this one took no connection.
                index += 1
                guard error.connectionNotMade, index < addresses.count, ContinuousClock.now < deadline else { throw .unreachable(error) }
            }
        }
    }

    /// The member's address, or its host name's addresses resolved now; the last ones resolved
    /// when this lookup fails or times out (not when it is interrupted).
    private func addresses(of member: Member, _ path: String, until deadline: ContinuousClock.Instant) throws(EtcdError) -> [SocketAddress] {
        if let address = member.address { return [address] }
        do throws(HTTPError.Kind) {
            let addresses = try HostResolver.addresses(of: member.host, port: member.port, until: deadline, interrupt: interrupt)
            lastResolved.byHost.withLock { $0[member.description] = addresses }
            return addresses
        } catch {
            if error != .interrupted, let known = lastResolved.byHost.withLock({ $0[member.description] }) { return known }
            throw .unreachable(HTTPError(request: requestName(member, path), kind: error))
        }
    }

    /// Throws `interrupted` when the interrupt is readable: looked at before each next member
    /// or address, since a connect does not watch it.
    private func stopIfInterrupted(before member: Member, _ path: String) throws(EtcdError) {
        guard let interrupt, Self.isReadable(interrupt) else { return }
        throw .unreachable(HTTPError(request: requestName(member, path), kind: .interrupted))
    }

    /// A request to `member` as errors name it before it has an address (`POST
    /// https://etcd-0.example:2379/v3/kv/range`).
    private func requestName(_ member: Member, _ path: String) -> String { "POST \(scheme)://\(member)\(path)" }

    /// An answer other than 200, with etcd's message when its body has one.
    static func refusal(_ exchange: HTTPExchange, body: [UInt8]) -> EtcdError {
        if let error = try? EtcdGatewayJSON.decoder.decode(EtcdGatewayJSON.ErrorBody.self, from: Data(body)),
           let message = error.message ?? error.error?.message {
            return .refused(request: exchange.request, status: exchange.head.status, message: message, code: error.code)
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingSpaces
        return .refused(request: exchange.request, status: exchange.head.status,
                        message: text.isEmpty ? exchange.head.reason : text, code: nil)
    }

    static func decode<Answer: Decodable>(_ body: [UInt8], request: String) throws(EtcdError) -> Answer {
        do {
            return try EtcdGatewayJSON.decoder.decode(Answer.self, from: Data(body))
        } catch {
            throw .badResponse(request: request, what: "\(error) in '\(String(decoding: body.prefix(200), as: UTF8.self))'")
        }
    }

    static func keyValue(_ pair: EtcdGatewayJSON.KeyValue, request: String) throws(EtcdError) -> KeyValue {
        guard let key = pair.key.flatMap({ Data(base64Encoded: $0) }) else {
            throw .badResponse(request: request, what: "a key that is not base64")
        }
        guard let value = Data(base64Encoded: pair.value ?? "") else {
            throw .badResponse(request: request, what: "the value of \(String(decoding: key, as: UTF8.self)) is not base64")
        }
        return KeyValue(key: String(decoding: key, as: UTF8.self), value: Array(value),
                        createRevision: pair.createRevision?.value ?? 0, modRevision: pair.modRevision?.value ?? 0)
    }

    static func base64(_ text: String) -> String { base64(Array(text.utf8)) }

    static func base64(_ bytes: [UInt8]) -> String { "\"\(Data(bytes).base64EncodedString())\"" }
}
