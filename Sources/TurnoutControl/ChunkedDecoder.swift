/// Decodes an HTTP/1.1 `Transfer-Encoding: chunked` body as its bytes arrive (RFC 9112 §7.1):
/// feed it whatever the socket gave, in pieces of any size, and it returns the body bytes
/// those pieces completed.
///
/// A chunk may be split anywhere (inside its size line, its data, its CRLF) and one read may
/// hold several chunks; extensions after `;` and trailer fields are read and dropped (etcd's
/// gateway sends a `Grpc-Trailer-Content-Type` trailer). A value; not thread-safe. Throws
/// ``HTTPError/Kind/malformed(_:)`` on anything that is not chunked encoding, after which the
/// decoder must not be fed again.
struct ChunkedDecoder {
    /// The longest size line or trailer line accepted; real ones are a few bytes.
    static let maximumLineLength = 4_096

    private enum State {
        /// Reading a chunk's size line into `line`.
        case size
        /// Inside a chunk's data, this many bytes to go.
        case data(Int)
        /// After a chunk's data, expecting its CRLF (`sawCR`: the CR came).
        case dataEnd(sawCR: Bool)
        /// After the last chunk, reading trailer lines until an empty one.
        case trailer
        case finished
    }

    private var state = State.size
    /// The line read so far (a size or trailer line split across feeds).
    private var line: [UInt8] = []

    /// True once the last chunk and the trailer were read: the body is complete.
    var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Takes the next bytes of the stream and returns the body bytes they completed (maybe
    /// none). Bytes after the end of the body are a protocol error.
    mutating func feed(_ input: ArraySlice<UInt8>) throws(HTTPError.Kind) -> [UInt8] {
        var body: [UInt8] = []
        var index = input.startIndex
        while index < input.endIndex {
            switch state {
            case .size:
                guard let complete = try takeLine(input, &index) else { continue }
                let size = try Self.chunkSize(complete)
                state = size == 0 ? .trailer : .data(size)
            case .data(let remaining):
                let end = min(input.endIndex, index + remaining)
                body.append(contentsOf: input[index..<end])
                state = end - index == remaining ? .dataEnd(sawCR: false) : .data(remaining - (end - index))
                index = end
            case .dataEnd(let sawCR):
                let byte = input[index]
                index += 1
                if !sawCR && byte == UInt8(ascii: "\r") {
                    state = .dataEnd(sawCR: true)
                } else if byte == UInt8(ascii: "\n") {
                    state = .size
                } else {
                    throw .malformed("chunk data not followed by CRLF")
                }
            case .trailer:
                guard let complete = try takeLine(input, &index) else { continue }
                if complete.isEmpty { state = .finished }
            case .finished:
                throw .malformed("\(input.endIndex - index) bytes after the last chunk")
            }
        }
        return body
    }

    mutating func feed(_ input: [UInt8]) throws(HTTPError.Kind) -> [UInt8] {
        try feed(input[...])
    }

    /// Moves bytes up to and including the next LF from `input` to `line`: the line without its
    /// CR LF once complete, nil when `input` ended first (the rest comes with the next feed).
    private mutating func takeLine(_ input: ArraySlice<UInt8>, _ index: inout Int) throws(HTTPError.Kind) -> [UInt8]? {
        let newline = input[index...].firstIndex(of: UInt8(ascii: "\n"))
        let end = newline ?? input.endIndex
        line.append(contentsOf: input[index..<end])
        guard line.count <= Self.maximumLineLength else {
            throw .malformed("a chunk size or trailer line longer than \(Self.maximumLineLength) bytes")
        }
        guard let newline else {
            index = input.endIndex
            return nil
        }
        index = newline + 1
        defer { line.removeAll(keepingCapacity: true) }
        return line.last == UInt8(ascii: "\r") ? Array(line.dropLast()) : line
    }

    /// A size line's value: hex digits, maybe followed by `;extensions`.
    static func chunkSize(_ line: [UInt8]) throws(HTTPError.Kind) -> Int {
        let digits = line.prefix { $0 != UInt8(ascii: ";") }.filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
        // 15 hex digits keep the size inside Int; no body of ours comes near it.
        let isHex = digits.allSatisfy { byte in
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
        }
        guard !digits.isEmpty, digits.count <= 15, isHex, let size = Int(String(decoding: digits, as: UTF8.self), radix: 16) else {
            throw .malformed("bad chunk size line '\(String(decoding: line.prefix(40), as: UTF8.self))'")
        }
        return size
    }
}
