import FoundationEssentials
import TurnoutModel

/// An open watch on etcd's gateway: one streaming `POST /v3/watch` whose chunked response
/// carries one JSON message per watch response, read as the bytes arrive.
///
/// Made by ``EtcdClient/watch(prefix:from:progressNotify:)``. The owner polls
/// ``fileDescriptor`` for `POLLIN` and calls ``receive()``, which never waits: it returns the
/// responses completed so far (a message may be split across reads, several may come in one).
/// The first response says `created`; a progress notification is a response with no events.
/// A canceled watch (`compactRevision` set when the start revision was compacted) is reported
/// as a response, and the stream is of no further use. The connection closes when the watch
/// goes away. Not thread-safe: one thread owns it. Throws ``EtcdError``: the stream broke,
/// ended, or carried an error.
public final class EtcdWatch {
    /// One watch response.
    public struct Response: Sendable {
        /// The store's revision when etcd sent it.
        public var revision: Int64
        public var created: Bool
        public var canceled: Bool
        /// Set when the watch was canceled because its start revision was compacted away: the
        /// oldest revision still available.
        public var compactRevision: Int64?
        public var cancelReason: String?
        public var events: [Event]
    }

    /// One change to one key.
    public enum Event: Sendable, Hashable {
        case put(EtcdClient.KeyValue)
        case delete(key: String, modRevision: Int64)
    }

    /// How much of the stream one ``receive()`` takes at most.
    static let maximumBytesPerReceive = 4 << 20

    private let exchange: HTTPExchange
    private var splitter = JSONStreamSplitter()

    /// The address the watch streams from (a member's, or one of a host name's).
    public var server: SocketAddress { exchange.server }

    init(exchange: HTTPExchange) {
        self.exchange = exchange
    }

    /// The stream's socket, lent for `poll(2)`; never close it.
    public var fileDescriptor: Int32 { exchange.fileDescriptor }

    /// The responses that arrived complete since the last call, in order; empty when none did.
    public func receive() throws(EtcdError) -> [Response] {
        var responses: [Response] = []
        // Several reads may be waiting (a burst): take them, so the owner rebuilds once. At most
        // `maximumBytesPerReceive` per call, so an endless flood cannot keep the owner from its
        // other duties (the rest stays readable for its next poll).
        var taken = 0
        while taken < Self.maximumBytesPerReceive {
            let bytes: [UInt8]?
            do {
                bytes = try exchange.readAvailable()
            } catch {
                throw .unreachable(error)
            }
            guard let bytes else {
                throw .badResponse(request: exchange.request, what: "the watch stream ended")
            }
            if bytes.isEmpty { return responses }
            taken += bytes.count
            let messages: [[UInt8]]
            do {
                messages = try splitter.feed(bytes)
            } catch {
                throw .unreachable(HTTPError(request: exchange.request, kind: error))
            }
            for message in messages {
                responses.append(try Self.response(message, request: exchange.request))
            }
        }
        return responses
    }

    static func response(_ message: [UInt8], request: String) throws(EtcdError) -> Response {
        let decoded: EtcdGatewayJSON.WatchMessage = try EtcdClient.decode(message, request: request)
        if let error = decoded.error {
            throw .refused(request: request, status: 200, message: error.message, code: error.code)
        }
        guard let result = decoded.result else {
            throw .badResponse(request: request, what: "a watch message without a result: '\(String(decoding: message.prefix(200), as: UTF8.self))'")
        }
        var events: [Event] = []
        for event in result.events ?? [] {
            guard let pair = event.kv else { throw .badResponse(request: request, what: "a watch event without a key") }
            let keyValue = try EtcdClient.keyValue(pair, request: request)
            switch event.type ?? "PUT" {
            case "PUT": events.append(.put(keyValue))
            case "DELETE": events.append(.delete(key: keyValue.key, modRevision: keyValue.modRevision))
            case let other: throw .badResponse(request: request, what: "a watch event of type '\(other)'")
            }
        }
        let compactRevision = result.compactRevision?.value ?? 0
        return Response(revision: result.header?.revision?.value ?? 0, created: result.created ?? false,
                        canceled: result.canceled ?? false, compactRevision: compactRevision > 0 ? compactRevision : nil,
                        cancelReason: result.cancelReason, events: events)
    }
}
