import Testing
@testable import TurnoutModel

/// The composer under the table decoder: libyaml's events → nodes with positions.
@Suite("Composing YAML over libyaml")
struct YAMLComposerTests {
    /// A node as a short string: scalars as their text (quoted ones in quotes), lists in
    /// brackets, mappings in braces, each with its line:column when `positions`.
    static func shape(_ node: YAMLNode, positions: Bool = false) -> String {
        let at = positions ? "@\(node.line):\(node.column)" : ""
        switch node.content {
        case .scalar(let scalar): return (scalar.isPlain ? scalar.text : "'\(scalar.text)'") + at
        case .sequence(let items): return "[" + items.map { shape($0, positions: positions) }.joined(separator: ",") + "]" + at
        case .mapping(let pairs):
            return "{" + pairs.map { shape($0.key, positions: positions) + ":" + shape($0.value, positions: positions) }
                .joined(separator: ",") + "}" + at
        }
    }

    struct Composed: CustomTestStringConvertible, Sendable {
        var yaml: String
        var shapes: [String]
        var testDescription: String { yaml.debugDescription }
    }

    @Test("text → documents of scalars, lists and mappings, in order", arguments: [
        Composed(yaml: "", shapes: []),
        Composed(yaml: "# only a comment\n", shapes: []),
        Composed(yaml: "---\n", shapes: [""]),
        Composed(yaml: "a: 1\nb: [x, 'y', \"z\"]\n", shapes: ["{a:1,b:[x,'y','z']}"]),
        Composed(yaml: "{\"a\": {\"b\": [1, 2.5, null, true]}}", shapes: ["{'a':{'b':[1,2.5,null,true]}}"]),
        Composed(yaml: "a: 1\n---\nb: 2\n...\n---\n- c\n", shapes: ["{a:1}", "{b:2}", "[c]"]),
        Composed(yaml: "base: &b {port: 80}\nother: *b\n", shapes: ["{base:{port:80},other:{port:80}}"]),
        Composed(yaml: "a: 1\na: 2\n", shapes: ["{a:1,a:2}"]),
        Composed(yaml: "text: |\n  two\n  lines\n", shapes: ["{text:'two\nlines\n'}"]),
        Composed(yaml: "empty:\nquoted: ''\n", shapes: ["{empty:,quoted:''}"]),
    ])
    func documents(_ case_: Composed) throws {
        let documents = try YAMLComposer.documents(in: case_.yaml)
        #expect(documents.map { Self.shape($0) } == case_.shapes)
    }

    @Test("every node knows its 1-based line and column")
    func positions() throws {
        let node = try #require(try YAMLComposer.document(in: "services:\n  - name: a/b\n    ports: [{port: 80}]\n"))
        #expect(Self.shape(node, positions: true)
            == "{services@1:1:[{name@2:5:a/b@2:11,ports@3:5:[{port@3:14:80@3:20}@3:13]@3:12}@2:5]@2:3}@1:1")
    }

    struct Invalid: CustomTestStringConvertible, Sendable {
        var yaml: String
        var line: Int
        var column: Int
        var message: String
        var testDescription: String { yaml.debugDescription }
    }

    @Test("text that is not YAML → libyaml's reason at its line and column", arguments: [
        Invalid(yaml: "services:\n  - name: [unclosed\n", line: 3, column: 1,
                message: "while parsing a flow sequence: did not find expected ',' or ']'"),
        Invalid(yaml: "a: {b: 1\n", line: 2, column: 1, message: "while parsing a flow mapping: did not find expected ',' or '}'"),
        Invalid(yaml: "a: b: c\n", line: 1, column: 5, message: "mapping values are not allowed in this context"),
        Invalid(yaml: "a: *missing\n", line: 1, column: 4, message: "found undefined alias 'missing'"),
        Invalid(yaml: "a: 1\nb: \u{1}\n", line: 2, column: 4, message: "control characters are not allowed (byte 0x1)"),
        // Each level lists the one below ten times: 10^7 nodes from 366 bytes; the 8th alias of
        // line 6 passes a million.
        Invalid(yaml: "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                    + (1...7).map { "\(Character(UnicodeScalar(UInt8(97 + $0)))): &\(Character(UnicodeScalar(UInt8(97 + $0)))) "
                        + "[" + Array(repeating: "*\(Character(UnicodeScalar(UInt8(96 + $0))))", count: 10).joined(separator: ", ") + "]\n" }.joined(),
                line: 6, column: 36, message: "aliases stand for more than 1000000 nodes"),
        Invalid(yaml: String(repeating: "[", count: YAMLComposer.maximumDepth + 1)
                    + String(repeating: "]", count: YAMLComposer.maximumDepth + 1),
                line: 1, column: YAMLComposer.maximumDepth + 1, message: "lists and mappings nest deeper than 256 levels"),
    ])
    func invalid(_ case_: Invalid) {
        #expect(throws: YAMLSyntaxError(line: case_.line, column: case_.column, message: case_.message)) {
            try YAMLComposer.documents(in: case_.yaml)
        }
    }

    @Test("a text that must hold one document → an error at the second")
    func singleDocument() throws {
        #expect(throws: YAMLSyntaxError(line: 3, column: 1, message: "expected a single document, found 2")) {
            try YAMLComposer.document(in: "a: 1\n---\nb: 2\n")
        }
        #expect(try YAMLComposer.document(in: "") == nil)
    }
}
