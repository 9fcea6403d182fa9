/// An HTTP/1.1 response's status line and header fields, and how its body is framed.
///
/// Parsed from the bytes before the blank line (RFC 9112 §4, §5); field names compare without
/// case. A value; pure.
struct HTTPResponseHead: Sendable {
    /// How the body's end is known (RFC 9112 §6.3).
    enum Framing: Sendable, Hashable {
        case contentLength(Int)
        case chunked
        /// No length: the body ends when the server closes the connection.
        case untilClose
        /// 1xx, 204 and 304 have no body.
        case none
    }

    /// The largest head accepted, status line and fields together.
    static let maximumSize = 65_536

    var status: Int
    var reason: String
    /// The fields in order, names as sent.
    var fields: [(name: String, value: String)]

    /// The first field named `name` (any case), its value without surrounding whitespace.
    func field(_ name: String) -> String? {
        fields.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var framing: Framing {
        get throws(HTTPError.Kind) {
            if (100..<200).contains(status) || status == 204 || status == 304 { return .none }
            if let encoding = field("Transfer-Encoding") {
                guard encoding.lowercased().split(separator: ",").last?.trimmingSpaces == "chunked" else {
                    throw .malformed("transfer coding '\(encoding)' is not chunked")
                }
                return .chunked
            }
            if let length = field("Content-Length") {
                guard let count = Int(length), count >= 0 else { throw .malformed("Content-Length '\(length)'") }
                return .contentLength(count)
            }
            return .untilClose
        }
    }

    /// Where the head ends in `bytes`: the index just after its blank line, nil when the blank
    /// line has not arrived yet.
    static func end(in bytes: [UInt8]) -> Int? {
        var index = 0
        while let newline = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) {
            let next = newline + 1
            if next < bytes.count, bytes[next] == UInt8(ascii: "\n") { return next + 1 }
            if next + 1 < bytes.count, bytes[next] == UInt8(ascii: "\r"), bytes[next + 1] == UInt8(ascii: "\n") { return next + 2 }
            index = next
        }
        return nil
    }

    /// Parses the head (without its blank line). Lines end in CRLF or a bare LF.
    init(parsing bytes: ArraySlice<UInt8>) throws(HTTPError.Kind) {
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .map { line in String(decoding: line.last == UInt8(ascii: "\r") ? line.dropLast() : line, as: UTF8.self) }
            .filter { !$0.isEmpty }
        guard let statusLine = lines.first else { throw .malformed("an empty response head") }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
            throw .malformed("status line '\(statusLine.prefix(80))'")
        }
        self.status = status
        reason = parts.count == 3 ? String(parts[2]) : ""
        fields = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw .malformed("header line '\(line.prefix(80))'")
            }
            fields.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingSpaces))
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
