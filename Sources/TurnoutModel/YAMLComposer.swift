import CYAML

/// Composes YAML texts (JSON too: it is YAML) into ``YAMLNode``s, over libyaml's parser. The
/// corresponding C calls are `yaml_parser_initialize`, `yaml_parser_parse` and
/// `yaml_parser_delete`.
///
/// A text composes whole or throws a ``YAMLSyntaxError`` with libyaml's message and position: no
/// documents before the error are returned. Aliases are replaced by the node of their anchor
/// (anchors are per document); lists and mappings nest at most ``maximumDepth`` deep, and
/// aliases may stand for at most ``maximumAliasedNodes`` nodes in all, so a pathological text
/// (deep nesting, or aliases of aliases that grow exponentially) is an error, not a stack
/// overflow or a decode that never ends. Pure and thread-safe: each call owns its parser.
enum YAMLComposer {
    /// How deep lists and mappings may nest; a table needs six levels.
    static let maximumDepth = 256
    /// How many nodes the aliases of one text may stand for, counted as their anchors' nodes
    /// expanded: far above any table's use of anchors, far below what would hang a decoder.
    static let maximumAliasedNodes = 1_000_000

    /// Every document of `text`, in order; none for an empty text.
    static func documents(in text: String) throws(YAMLSyntaxError) -> [YAMLNode] {
        var composition = Composition(events: try events(of: text))
        return try composition.documents()
    }

    /// The one document of `text`, or nil when it has none; a second document is an error.
    static func document(in text: String) throws(YAMLSyntaxError) -> YAMLNode? {
        let documents = try documents(in: text)
        guard documents.count <= 1 else {
            throw YAMLSyntaxError(line: documents[1].line, column: documents[1].column,
                                  message: "expected a single document, found \(documents.count)")
        }
        return documents.first
    }

    /// libyaml's event stream, copied into Swift values (the stream start is left out).
    private static func events(of text: String) throws(YAMLSyntaxError) -> [Event] {
        let bytes = Array(text.utf8)
        // libyaml requires a non-null input, which an empty array does not have.
        guard !bytes.isEmpty else { return [] }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw YAMLSyntaxError(line: 1, column: 1, message: "cannot start the YAML parser: out of memory")
        }
        defer { yaml_parser_delete(&parser) }
        return try bytes.withUnsafeBufferPointer { buffer throws(YAMLSyntaxError) in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            var events: [Event] = []
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { throw failure(of: parser, in: buffer) }
                defer { yaml_event_delete(&event) }
                let mark = (line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    events.append(.streamEnd)
                    return events
                case YAML_DOCUMENT_START_EVENT:
                    events.append(.documentStart)
                case YAML_DOCUMENT_END_EVENT:
                    events.append(.documentEnd)
                case YAML_ALIAS_EVENT:
                    events.append(.alias(string(event.data.alias.anchor) ?? "", mark))
                case YAML_SCALAR_EVENT:
                    let scalar = event.data.scalar
                    let value = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
                    events.append(.scalar(YAMLScalar(text: value, isPlain: scalar.style == YAML_PLAIN_SCALAR_STYLE),
                                          anchor: string(scalar.anchor), mark))
                case YAML_SEQUENCE_START_EVENT:
                    events.append(.sequenceStart(anchor: string(event.data.sequence_start.anchor), mark))
                case YAML_SEQUENCE_END_EVENT:
                    events.append(.sequenceEnd)
                case YAML_MAPPING_START_EVENT:
                    events.append(.mappingStart(anchor: string(event.data.mapping_start.anchor), mark))
                case YAML_MAPPING_END_EVENT:
                    events.append(.mappingEnd)
                default:
                    break // the stream start, and YAML_NO_EVENT, which a successful parse never returns
                }
            }
        }
    }

    private static func string(_ characters: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        characters.map { String(cString: UnsafePointer($0)) }
    }

    /// The parser's error as one line and a position: "context: problem" at the problem's mark,
    /// or for bytes that are not UTF-8, the line and column of the byte offset.
    private static func failure(of parser: yaml_parser_t, in bytes: UnsafeBufferPointer<UInt8>) -> YAMLSyntaxError {
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown problem"
        switch parser.error {
        case YAML_READER_ERROR:
            let offset = min(Int(parser.problem_offset), bytes.count)
            let before = bytes[..<offset]
            let line = before.count { $0 == UInt8(ascii: "\n") } + 1
            let column = offset - (before.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0) + 1
            let value = parser.problem_value >= 0 ? " (byte 0x\(String(parser.problem_value, radix: 16)))" : ""
            return YAMLSyntaxError(line: line, column: column, message: problem + value)
        case YAML_SCANNER_ERROR, YAML_PARSER_ERROR:
            let context = parser.context.map { String(cString: $0) }
            let message = [context, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            return YAMLSyntaxError(line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1,
                                   message: message)
        default:
            return YAMLSyntaxError(line: 1, column: 1, message: problem)
        }
    }

    /// One libyaml event, with what composing needs of it.
    private enum Event {
        case streamEnd, documentStart, documentEnd, sequenceEnd, mappingEnd
        case scalar(YAMLScalar, anchor: String?, (line: Int, column: Int))
        case alias(String, (line: Int, column: Int))
        case sequenceStart(anchor: String?, (line: Int, column: Int))
        case mappingStart(anchor: String?, (line: Int, column: Int))

        var endsCollection: Bool {
            switch self {
            case .sequenceEnd, .mappingEnd: true
            default: false
            }
        }
    }

    /// Builds nodes from a well-formed event stream (libyaml only returns well-formed ones).
    private struct Composition {
        let events: [Event]
        var next = 0
        /// Anchored nodes, with how many nodes each stands for (aliases inside it expanded).
        var anchors: [String: (node: YAMLNode, size: Int)] = [:]
        /// Nodes the aliases so far stood for, over the whole text.
        var aliased = 0

        mutating func documents() throws(YAMLSyntaxError) -> [YAMLNode] {
            var documents: [YAMLNode] = []
            while next < events.count {
                defer { next += 1 }
                guard case .documentStart = events[next] else { continue } // the end of a document or the stream
                next += 1
                anchors = [:]
                documents.append(try node(depth: 0).node)
            }
            return documents
        }

        /// The node starting at the next event, which is consumed with its children, and how many
        /// nodes it stands for (aliases inside it expanded).
        private mutating func node(depth: Int) throws(YAMLSyntaxError) -> (node: YAMLNode, size: Int) {
            let event = events[next]
            next += 1
            switch event {
            case .scalar(let scalar, let anchor, let mark):
                return remember(YAMLNode(content: .scalar(scalar), line: mark.line, column: mark.column), size: 1, as: anchor)
            case .alias(let name, let mark):
                guard let anchored = anchors[name] else {
                    throw YAMLSyntaxError(line: mark.line, column: mark.column, message: "found undefined alias '\(name)'")
                }
                aliased += anchored.size
                guard aliased <= YAMLComposer.maximumAliasedNodes else {
                    throw YAMLSyntaxError(line: mark.line, column: mark.column,
                                          message: "aliases stand for more than \(YAMLComposer.maximumAliasedNodes) nodes")
                }
                return anchored
            case .sequenceStart(let anchor, let mark):
                try checkDepth(depth, mark)
                var items: [YAMLNode] = []
                var size = 1
                while !events[next].endsCollection {
                    let item = try node(depth: depth + 1)
                    items.append(item.node)
                    size += item.size
                }
                next += 1
                return remember(YAMLNode(content: .sequence(items), line: mark.line, column: mark.column), size: size, as: anchor)
            case .mappingStart(let anchor, let mark):
                try checkDepth(depth, mark)
                var pairs: [(key: YAMLNode, value: YAMLNode)] = []
                var size = 1
                while !events[next].endsCollection {
                    let key = try node(depth: depth + 1)
                    let value = try node(depth: depth + 1)
                    pairs.append((key.node, value.node))
                    size += key.size + value.size
                }
                next += 1
                return remember(YAMLNode(content: .mapping(pairs), line: mark.line, column: mark.column), size: size, as: anchor)
            case .streamEnd, .documentStart, .documentEnd, .sequenceEnd, .mappingEnd:
                preconditionFailure("libyaml returned \(event) where a node starts")
            }
        }

        private func checkDepth(_ depth: Int, _ mark: (line: Int, column: Int)) throws(YAMLSyntaxError) {
            guard depth < YAMLComposer.maximumDepth else {
                throw YAMLSyntaxError(line: mark.line, column: mark.column,
                                      message: "lists and mappings nest deeper than \(YAMLComposer.maximumDepth) levels")
            }
        }

        private mutating func remember(_ node: YAMLNode, size: Int, as anchor: String?) -> (node: YAMLNode, size: Int) {
            if let anchor { anchors[anchor] = (node, size) }
            return (node, size)
        }
    }
}
