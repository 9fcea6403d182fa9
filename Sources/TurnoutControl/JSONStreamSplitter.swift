/// Splits a stream of JSON objects written one after another (etcd's watch: `{"result":…}`
/// per message, newline-separated) into one byte array per object, as the bytes arrive.
///
/// An object may be split across feeds anywhere, also inside a string or an escape, and one
/// feed may hold several. It finds where each top-level object ends by counting braces and
/// brackets outside strings; it does not check the JSON itself (the decoder that reads each
/// object does). Whitespace between objects is skipped. A value; not thread-safe. Throws
/// ``HTTPError/Kind/malformed(_:)`` for a byte that cannot start an object, or an object over
/// ``maximumObjectSize``; afterwards it must not be fed again.
struct JSONStreamSplitter {
    /// The largest message accepted. etcd's own limit on a watch response is its gRPC message
    /// size (2 MiB by default); 64 MiB leaves room for a server configured far larger.
    static let maximumObjectSize = 64 << 20

    private var partial: [UInt8] = []
    private var depth = 0
    private var inString = false
    private var escaped = false

    /// True while part of an object has been read and its end has not.
    var isInsideObject: Bool { depth > 0 }

    /// Takes the next bytes and returns every object they completed, in order.
    mutating func feed(_ input: ArraySlice<UInt8>) throws(HTTPError.Kind) -> [[UInt8]] {
        var objects: [[UInt8]] = []
        var start = input.startIndex
        var index = input.startIndex
        while index < input.endIndex {
            let byte = input[index]
            index += 1
            if depth == 0 {
                switch byte {
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"):
                    start = index
                    continue
                case UInt8(ascii: "{"):
                    depth = 1
                    continue
                default:
                    throw .malformed("expected a JSON object in the stream, found '\(String(decoding: [byte], as: UTF8.self))'")
                }
            }
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            default: break
            }
            if depth == 0 {
                partial.append(contentsOf: input[start..<index])
                objects.append(partial)
                partial.removeAll(keepingCapacity: true)
                start = index
            }
        }
        if depth > 0 {
            partial.append(contentsOf: input[start..<input.endIndex])
            guard partial.count <= Self.maximumObjectSize else {
                throw .malformed("a streamed JSON object larger than \(Self.maximumObjectSize) bytes")
            }
        }
        return objects
    }

    mutating func feed(_ input: [UInt8]) throws(HTTPError.Kind) -> [[UInt8]] {
        try feed(input[...])
    }
}
