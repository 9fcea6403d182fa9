/// Collects issues while decoding, so one run reports every problem instead of the first.
struct IssueLog {
    private(set) var issues: [TableIssue] = []

    mutating func report(_ cursor: YAMLCursor, _ message: String) {
        issues.append(TableIssue(location: cursor.location, field: cursor.path, message: message))
    }

    mutating func report(at location: SourceLocation, field: String, _ message: String) {
        issues.append(TableIssue(location: location, field: field, message: message))
    }
}

/// A YAML node with the file and field path that lead to it.
///
/// Every accessor reports what is wrong to an ``IssueLog`` and returns `nil`, so decoders read as
/// plain field lists. Lives only inside one decode call.
struct YAMLCursor {
    let node: YAMLNode
    let file: String
    let path: String

    var location: SourceLocation {
        SourceLocation(file: file, line: node.line, column: node.column)
    }

    func child(_ node: YAMLNode, key: String) -> YAMLCursor {
        YAMLCursor(node: node, file: file, path: path.isEmpty ? key : "\(path).\(key)")
    }

    func element(_ node: YAMLNode, index: Int) -> YAMLCursor {
        YAMLCursor(node: node, file: file, path: "\(path)[\(index)]")
    }

    /// The mapping's fields. Keys outside `allowed` are reported as unknown unless `allowed` is nil
    /// (foreign formats such as Kubernetes manifests carry many fields Turnout ignores).
    func fields(allowed: Set<String>?, log: inout IssueLog) -> [String: YAMLCursor]? {
        guard case .mapping(let mapping) = node.content else {
            log.report(self, "expected a mapping, found \(kind)")
            return nil
        }
        var result: [String: YAMLCursor] = [:]
        for (keyNode, valueNode) in mapping {
            let keyCursor = YAMLCursor(node: keyNode, file: file, path: path)
            guard let key = keyNode.scalarText else {
                log.report(keyCursor, "mapping keys must be plain strings")
                continue
            }
            let field = child(valueNode, key: key)
            if let allowed, !allowed.contains(key) {
                let known = allowed.sorted().joined(separator: ", ")
                log.report(at: keyCursor.location, field: field.path, "unknown key '\(key)' (known: \(known))")
                continue
            }
            if result[key] != nil {
                log.report(at: keyCursor.location, field: field.path, "duplicate key '\(key)'")
                continue
            }
            result[key] = field
        }
        return result
    }

    func sequence(log: inout IssueLog) -> [YAMLCursor]? {
        guard case .sequence(let sequence) = node.content else {
            log.report(self, "expected a list, found \(kind)")
            return nil
        }
        return sequence.enumerated().map { element($1, index: $0) }
    }

    func string(log: inout IssueLog) -> String? {
        guard let text = node.scalarText else {
            log.report(self, "expected a string, found \(kind)")
            return nil
        }
        return text
    }

    func nonEmptyString(log: inout IssueLog) -> String? {
        guard let text = string(log: &log) else { return nil }
        guard !text.allSatisfy(\.isWhitespace) else {
            log.report(self, "must not be empty")
            return nil
        }
        return text
    }

    /// An integer within `range`; `what` names it in the message ("port", "weight").
    func integer(in range: ClosedRange<Int>, what: String, log: inout IssueLog) -> Int? {
        guard let text = node.scalarText else {
            log.report(self, "expected an integer \(what), found \(kind)")
            return nil
        }
        guard let value = Int(text) else {
            log.report(self, "\(what) must be an integer, got '\(text)'")
            return nil
        }
        guard range.contains(value) else {
            log.report(self, "\(what) must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
            return nil
        }
        return value
    }

    func port(log: inout IssueLog) -> UInt16? {
        integer(in: 1...65_535, what: "port", log: &log).map { UInt16($0) }
    }

    func address(log: inout IssueLog) -> IPAddress? {
        guard let text = string(log: &log) else { return nil }
        guard let address = IPAddress(text) else {
            log.report(self, "'\(text)' is not an IPv4 or IPv6 address")
            return nil
        }
        guard !address.isUnroutable else {
            log.report(self, "'\(text)' is unspecified, multicast or broadcast; it cannot be a service or endpoint address")
            return nil
        }
        return address
    }

    /// YAML's null: a plain (unquoted) `~`, `null` or nothing at all; a quoted "null" is a string.
    var isNull: Bool {
        guard case .scalar(let scalar) = node.content, scalar.isPlain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.text)
    }

    private var kind: String {
        switch node.content {
        case .scalar(let scalar): "'\(scalar.text)'"
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }
}
