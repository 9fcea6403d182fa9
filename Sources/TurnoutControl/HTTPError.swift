import Glibc
import TurnoutModel

/// Why an HTTP exchange (``HTTPExchange``) failed: the request it was (`POST
/// http://127.0.0.1:2379/v3/kv/range`) and what went wrong, so the message alone names the
/// server, the path and the failure.
///
/// A status the server answered with is not an error here: the caller decides what a status
/// means (etcd's gateway answers 400 with a JSON error body).
public struct HTTPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: Error, Sendable, Hashable {
        /// The connection could not be made (ECONNREFUSED: nothing listens there).
        case connect(SystemCallError)
        /// Sending or receiving failed on an open connection (ECONNRESET, EPIPE).
        case transfer(SystemCallError)
        /// The deadline passed: while connecting, sending the request, or waiting for the
        /// response (`phase`).
        case timedOut(phase: String)
        /// The server closed the connection before the response was complete.
        case closedEarly
        /// What came back is not HTTP/1.1 as this client reads it.
        case malformed(String)
        /// The caller's interrupt descriptor became readable (a source being stopped).
        case interrupted
        /// The host name could not be resolved (`getaddrinfo(3)`'s reason): nothing was sent.
        case resolve(String)
        /// The TLS handshake failed (the server's certificate refused, no shared protocol, a
        /// client certificate file gone): the request was not sent.
        case handshake(String)
        /// TLS failed on the open connection (the server sent an alert, such as "certificate
        /// required" when a TLS 1.3 server refuses the client's certificate after the handshake).
        case tls(String)
    }

    /// The request, as `METHOD http://host:port/path` (`https://` over TLS).
    public var request: String
    public var kind: Kind

    public init(request: String, kind: Kind) {
        self.request = request
        self.kind = kind
    }

    /// True when the request never left: no connection (below), no address for the host name,
    /// or no finished TLS handshake. Any other failure may come after the server received it.
    public var requestNotSent: Bool {
        switch kind {
        case .resolve, .handshake, .timedOut(phase: HTTPExchange.handshakePhase), .timedOut(phase: HTTPExchange.resolvingPhase): true
        default: connectionNotMade
        }
    }

    /// True when the TCP connection was refused or not made in time: another address of the
    /// same host may still take it.
    public var connectionNotMade: Bool {
        switch kind {
        case .connect, .timedOut(phase: HTTPExchange.connectingPhase): true
        default: false
        }
    }

    /// True when nothing listens at the address (ECONNREFUSED).
    public var connectionRefused: Bool {
        if case .connect(let failure) = kind { return failure.errno == ECONNREFUSED }
        return false
    }

    public var description: String {
        switch kind {
        case .connect(let error): "\(request): cannot connect: \(error)"
        case .transfer(let error): "\(request): \(error)"
        case .timedOut(let phase): "\(request): timed out \(phase)"
        case .closedEarly: "\(request): the server closed the connection before the response was complete"
        case .malformed(let what): "\(request): not a valid HTTP response: \(what)"
        case .interrupted: "\(request): interrupted"
        case .resolve(let why): "\(request): \(why)"
        case .handshake(let why): "\(request): TLS: \(why)"
        case .tls(let why): "\(request): TLS: \(why)"
        }
    }
}
