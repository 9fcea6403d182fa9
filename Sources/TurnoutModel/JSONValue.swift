/// A JSON value built in code, written with its object keys sorted: what `/stats`, `/config`
/// and `--format json` print; ``quoted(_:)`` also serves the table's JSON encoding.
///
/// Sorted keys make the output stable from run to run, for diffs and for tests. Integers are
/// written exactly; a number that is not finite (which JSON cannot say) is written as null.
/// Foundation's `JSONSerialization` did this before; it is full Foundation's, which the product
/// does not link. A value; its text is built on the caller's thread.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// An integer; one beyond `Int64` is clamped (counters never get there).
    public init(_ value: some BinaryInteger) { self = .integer(Int64(clamping: value)) }

    /// The value, or null for nil.
    public init(_ value: JSONValue?) { self = value ?? .null }

    /// The JSON text: compact, or indented by two spaces a level (`"key" : value`, as
    /// `JSONSerialization`'s pretty printing).
    public func text(pretty: Bool = false) -> String {
        var output = ""
        write(to: &output, pretty: pretty, indent: "")
        return output
    }

    private func write(to output: inout String, pretty: Bool, indent: String) {
        switch self {
        case .null: output += "null"
        case .bool(let value): output += value ? "true" : "false"
        case .integer(let value): output += String(value)
        case .number(let value): output += value.isFinite ? "\(value)" : "null"
        case .string(let value): Self.quote(value, to: &output)
        case .array(let elements):
            writeContainer(elements, open: "[", close: "]", to: &output, pretty: pretty, indent: indent) { element, output, inner in
                element.write(to: &output, pretty: pretty, indent: inner)
            }
        case .object(let members):
            let separator = pretty ? " : " : ":"
            writeContainer(members.sorted { $0.key < $1.key }, open: "{", close: "}", to: &output, pretty: pretty,
                           indent: indent) { member, output, inner in
                Self.quote(member.key, to: &output)
                output += separator
                member.value.write(to: &output, pretty: pretty, indent: inner)
            }
        }
    }

    private func writeContainer<Element>(_ elements: [Element], open: String, close: String, to output: inout String,
                                         pretty: Bool, indent: String,
                                         _ writeElement: (Element, inout String, String) -> Void) {
        output += open
        guard !elements.isEmpty else { return output += close }
        let inner = pretty ? indent + "  " : ""
        for (index, element) in elements.enumerated() {
            if index > 0 { output += "," }
            if pretty { output += "\n" + inner }
            writeElement(element, &output, inner)
        }
        if pretty { output += "\n" + indent }
        output += close
    }

    /// `text` as a JSON string literal: in quotes, with quotes, backslashes and control
    /// characters escaped (RFC 8259 §7).
    public static func quoted(_ text: String) -> String {
        var output = ""
        quote(text, to: &output)
        return output
    }

    private static func quote(_ text: String, to output: inout String) {
        output += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: output.unicodeScalars.append(scalar)
            }
        }
        output += "\""
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral members: (String, JSONValue)...) {
        self = .object(Dictionary(members, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
}
