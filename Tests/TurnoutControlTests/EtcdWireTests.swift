import Foundation
import Testing
@testable import TurnoutControl
import TurnoutModel

/// The bytes between the etcd client and etcd's gateway: chunked bodies, a stream of JSON
/// messages, response heads, watch messages. Pure; no etcd.
@Suite("etcd wire: chunked decoding and the watch's JSON stream, split and merged")
struct EtcdWireTests {
    /// A watch stream exactly as etcd 3.4's gateway sent it (created, a batch of events with a
    /// delete, a progress notification), as chunked encoding with its trailer.
    static let messages = [
        #"{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},"created":true}}"#,
        #"{"result":{"header":{"revision":"5"},"events":[{"kv":{"key":"L3R1cm5vdXQvdjEvYg==","create_revision":"3","mod_revision":"5","version":"2","value":"eyJ9In0="}},{"type":"DELETE","kv":{"key":"L3R1cm5vdXQvdjEvYQ==","mod_revision":"5"}}]}}"#,
        #"{"result":{"header":{"revision":"5"}}}"#,
    ]

    static func chunked(_ pieces: [String], trailer: String = "Grpc-Trailer-Content-Type: application/grpc\r\n") -> [UInt8] {
        var bytes: [UInt8] = []
        for piece in pieces {
            bytes += Array("\(String(piece.utf8.count, radix: 16))\r\n".utf8) + Array(piece.utf8) + Array("\r\n".utf8)
        }
        return bytes + Array("0\r\n\(trailer)\r\n".utf8)
    }

    /// Feeds `bytes` in pieces of `size` bytes; every body byte returned, in order.
    static func decodeChunked(_ bytes: [UInt8], pieces size: Int) throws -> (body: [UInt8], finished: Bool) {
        var decoder = ChunkedDecoder()
        var body: [UInt8] = []
        var start = 0
        while start < bytes.count {
            body += try decoder.feed(bytes[start..<min(bytes.count, start + size)])
            start += size
        }
        return (body, decoder.isFinished)
    }

    @Test("a chunked body fed 1, 2, 3, 7, 64 bytes at a time or all at once → the same body, finished", arguments: [1, 2, 3, 7, 64, 100_000])
    func chunkedSplit(_ size: Int) throws {
        let stream = Self.chunked(Self.messages.map { $0 + "\n" })
        let (body, finished) = try Self.decodeChunked(stream, pieces: size)
        #expect(String(decoding: body, as: UTF8.self) == Self.messages.map { $0 + "\n" }.joined())
        #expect(finished)
    }

    @Test("chunk extensions and upper-case sizes are read; no trailer is fine")
    func chunkedExtensions() throws {
        let stream = Array("A;name=value\r\n0123456789\r\n0\r\n\r\n".utf8)
        let (body, finished) = try Self.decodeChunked(stream, pieces: 4)
        #expect(body == Array("0123456789".utf8) && finished)
    }

    @Test("not chunked encoding → malformed", arguments: [
        "zz\r\nabc\r\n", "-3\r\nabc\r\n", "3\r\nabcX\r\n", "\r\n", "0\r\n\r\nextra",
    ])
    func chunkedMalformed(_ text: String) {
        #expect(throws: HTTPError.Kind.self) { try Self.decodeChunked(Array(text.utf8), pieces: 2) }
    }

    @Test("the stream's messages split at every byte → each message once, whole, in order")
    func splitterEveryCut() throws {
        let stream = Array(Self.messages.map { $0 + "\n" }.joined().utf8)
        for cut in 0...stream.count {
            var splitter = JSONStreamSplitter()
            let objects = try splitter.feed(stream[0..<cut]) + splitter.feed(stream[cut...])
            #expect(objects.map { String(decoding: $0, as: UTF8.self) } == Self.messages, "cut at \(cut)")
            #expect(!splitter.isInsideObject)
        }
    }

    @Test("objects back to back without newlines, braces and escaped quotes inside strings → split right", arguments: [1, 5, 1_000])
    func splitterStrings(_ size: Int) throws {
        let objects = [#"{"a":"}{\"","b":[{"c":"\\"}]}"#, #"{"d":"]]\\\"{"}"#, #"{}"#]
        let stream = Array(objects.joined().utf8)
        var splitter = JSONStreamSplitter()
        var found: [[UInt8]] = []
        var start = 0
        while start < stream.count {
            found += try splitter.feed(stream[start..<min(stream.count, start + size)])
            start += size
        }
        #expect(found.map { String(decoding: $0, as: UTF8.self) } == objects)
    }

    @Test("something other than an object in the stream → malformed")
    func splitterMalformed() {
        var splitter = JSONStreamSplitter()
        #expect(throws: HTTPError.Kind.self) { try splitter.feed(Array("[1]".utf8)) }
    }

    @Test("response heads: status, fields without case, the body's framing", arguments: [
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", 200, HTTPResponseHead.Framing.chunked),
        ("HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n", 400, .contentLength(12)),
        ("HTTP/1.0 200 OK\nContent-Type: application/json\n", 200, .untilClose),
        ("HTTP/1.1 204 No Content\r\n", 204, .none),
    ])
    func heads(_ text: String, _ status: Int, _ framing: HTTPResponseHead.Framing) throws {
        let bytes = Array((text + "\r\n").utf8)
        #expect(HTTPResponseHead.end(in: bytes) == bytes.count)
        #expect(HTTPResponseHead.end(in: Array(bytes.dropLast())) == nil)
        let head = try HTTPResponseHead(parsing: bytes[...])
        #expect(head.status == status)
        #expect(try head.framing == framing)
    }

    @Test("not HTTP → malformed", arguments: ["SSH-2.0-OpenSSH\r\n", "HTTP/1.1 abc\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n",
                                               "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"])
    func badHeads(_ text: String) {
        #expect(throws: HTTPError.Kind.self) { _ = try HTTPResponseHead(parsing: Array(text.utf8)[...]).framing }
    }

    @Test("watch messages → created; a put and a delete at revision 5; a progress notification with no events")
    func watchMessages() throws {
        let responses = try Self.messages.map { message throws(EtcdError) in try EtcdWatch.response(Array(message.utf8), request: "test") }
        #expect(responses[0].created && responses[0].revision == 4 && responses[0].events.isEmpty)
        #expect(responses[1].events == [
            .put(EtcdClient.KeyValue(key: "/turnout/v1/b", value: Array(#"{"}"}"#.utf8), createRevision: 3, modRevision: 5)),
            .delete(key: "/turnout/v1/a", modRevision: 5),
        ])
        #expect(responses[2].revision == 5 && responses[2].events.isEmpty && !responses[2].canceled)
    }

    @Test("a watch from a compacted revision → canceled with the compact revision; an error message → refused")
    func watchCancel() throws {
        let canceled = try EtcdWatch.response(Array(#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"5"}}"#.utf8), request: "test")
        #expect(canceled.canceled && canceled.compactRevision == 5)
        let error = #"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#
        #expect {
            _ = try EtcdWatch.response(Array(error.utf8), request: "POST http://127.0.0.1:2379/v3/watch")
        } throws: { error in
            "\(error)" == "etcd POST http://127.0.0.1:2379/v3/watch: HTTP 200: etcdserver: no leader (code 14)"
        }
    }
}
