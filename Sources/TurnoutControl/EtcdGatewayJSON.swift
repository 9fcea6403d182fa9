import FoundationEssentials

/// etcd's v3 JSON gateway messages as they arrive: grpc-gateway's JSON mapping of etcd's
/// protobufs, in which int64 fields are strings, bytes are base64 and zero values are left out
/// (so every field is optional here, and absent means zero).
///
/// Decoded with ``decoder`` (snake_case keys). Only the fields Turnout reads are declared;
/// unknown ones are ignored, so a newer etcd adding fields does not break the client.
enum EtcdGatewayJSON {
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }()

    /// An int64 as the gateway writes it: a JSON string of digits (a number is accepted too).
    struct Integer: Decodable {
        var value: Int64

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Int64.self) {
                value = number
                return
            }
            let text = try container.decode(String.self)
            guard let number = Int64(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an int64")
            }
            value = number
        }
    }

    struct Header: Decodable {
        var revision: Integer?
    }

    struct KeyValue: Decodable {
        var key: String?
        var value: String?
        var createRevision: Integer?
        var modRevision: Integer?
    }

    struct RangeResponse: Decodable {
        var header: Header?
        var kvs: [KeyValue]?
        var count: Integer?
        var more: Bool?
    }

    /// Put, delete-range and compaction answers: only the revision is read.
    struct WriteResponse: Decodable {
        var header: Header?
        var deleted: Integer?
    }

    struct TxnResponse: Decodable {
        var header: Header?
        var succeeded: Bool?
    }

    /// One message of a watch stream: a result, or the error that ended the stream.
    struct WatchMessage: Decodable {
        var result: WatchResult?
        var error: ErrorDetail?
    }

    struct WatchResult: Decodable {
        var header: Header?
        var created: Bool?
        var canceled: Bool?
        var compactRevision: Integer?
        var cancelReason: String?
        var events: [Event]?
    }

    struct Event: Decodable {
        /// `DELETE`, or absent for a put (the enum's zero value).
        var type: String?
        var kv: KeyValue?
    }

    /// `/v3/auth/authenticate`'s answer.
    struct AuthenticateResponse: Decodable {
        var token: String?
    }

    /// The body of an error answer: `{"error": "...", "message": "...", "code": 11}`.
    struct ErrorBody: Decodable {
        var error: ErrorDetail?
        var message: String?
        var code: Int?
    }

    /// An error as a string (unary calls) or as an object (`{"grpc_code": 14, "message": ...}`,
    /// in a stream).
    struct ErrorDetail: Decodable {
        var message: String
        var code: Int?

        private enum Keys: String, CodingKey {
            case message
            case grpcCode
        }

        init(from decoder: any Decoder) throws {
            if let text = try? decoder.singleValueContainer().decode(String.self) {
                message = text
                code = nil
                return
            }
            let container = try decoder.container(keyedBy: Keys.self)
            message = try container.decodeIfPresent(String.self, forKey: .message) ?? "(no message)"
            code = try container.decodeIfPresent(Int.self, forKey: .grpcCode)
        }
    }
}
