// Shared by every test that reads Prometheus text: the writer's own tests (TurnoutControlTests)
// and the proxy's `/metrics` scenario (TurnoutCLITests).

/// A strict reader of the text exposition format 0.0.4, for checking what the writer produces:
/// every line is `# HELP name text`, `# TYPE name type` or `name{label="value",…} value`; a
/// family's TYPE comes before its samples, at most once, and its lines are contiguous;
/// histogram series have cumulative buckets ending in `le="+Inf"` equal to their `_count`, and a
/// `_sum`. Timestamps and other comments are rejected (the writer emits none).
public struct PrometheusDocument: Sendable {
    public struct Invalid: Error, CustomStringConvertible {
        public let line: Int
        public let reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    public struct Sample: Sendable {
        public let name: String
        public let labels: [(name: String, value: String)]
        public let value: Double

        /// The value of the label called `name`, nil when the sample has none.
        public func label(_ name: String) -> String? { labels.first { $0.name == name }?.value }
    }

    public private(set) var types: [String: String] = [:]
    public private(set) var samples: [Sample] = []

    public init(parsing text: String) throws(Invalid) {
        guard text.hasSuffix("\n") else { throw Invalid(line: 0, reason: "no final newline") }
        var helps: Set<String> = []
        var finished: Set<String> = []  // families whose lines ended
        var current: String?
        /// Histogram series by family and labels without `le`: bucket (le, count) pairs, _sum, _count.
        var series: [String: [String: (buckets: [(Double, Double)], sum: Double?, count: Double?)]] = [:]

        func enter(_ family: String, line: Int) throws(Invalid) {
            guard family != current else { return }
            guard !finished.contains(family) else { throw Invalid(line: line, reason: "\(family) continues after another family") }
            if let current { finished.insert(current) }
            current = family
        }

        for (offset, line) in text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            if line.hasPrefix("#") {
                let words = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard words.count >= 3, words[0] == "#", Self.isMetricName(words[2]) else { throw Invalid(line: number, reason: "bad comment") }
                let family = String(words[2])
                try enter(family, line: number)
                switch words[1] {
                case "HELP":
                    guard helps.insert(family).inserted else { throw Invalid(line: number, reason: "HELP twice for \(family)") }
                    guard words.count == 4, Self.isEscaped(words[3], quotes: false) else { throw Invalid(line: number, reason: "bad help text") }
                case "TYPE":
                    guard words.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(words[3]) else {
                        throw Invalid(line: number, reason: "bad type")
                    }
                    guard types[family] == nil else { throw Invalid(line: number, reason: "TYPE twice for \(family)") }
                    guard !samples.contains(where: { Self.family(of: $0.name, types: types) == family }) else {
                        throw Invalid(line: number, reason: "TYPE after samples of \(family)")
                    }
                    types[family] = String(words[3])
                default:
                    throw Invalid(line: number, reason: "comment neither HELP nor TYPE")
                }
                continue
            }

            let sample = try Self.sample(line, number: number)
            guard let family = Self.family(of: sample.name, types: types) else {
                throw Invalid(line: number, reason: "\(sample.name) has no TYPE before it")
            }
            try enter(family, line: number)
            samples.append(sample)
            guard types[family] == "histogram" else {
                guard sample.name == family else { throw Invalid(line: number, reason: "\(sample.name) in \(family)") }
                continue
            }
            let key = sample.labels.filter { $0.name != "le" }.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
            var entry = series[family, default: [:]][key] ?? (buckets: [], sum: nil, count: nil)
            switch sample.name.dropFirst(family.count) {
            case "_bucket":
                guard let le = sample.labels.last, le.name == "le", let bound = Self.number(le.value) else {
                    throw Invalid(line: number, reason: "bucket without a last le label")
                }
                if let previous = entry.buckets.last {
                    guard bound > previous.0 else { throw Invalid(line: number, reason: "le not ascending") }
                    guard sample.value >= previous.1 else { throw Invalid(line: number, reason: "buckets not cumulative") }
                }
                guard entry.sum == nil, entry.count == nil else { throw Invalid(line: number, reason: "bucket after _sum/_count") }
                entry.buckets.append((bound, sample.value))
            case "_sum": entry.sum = sample.value
            case "_count": entry.count = sample.value
            default: throw Invalid(line: number, reason: "\(sample.name) in histogram \(family)")
            }
            series[family, default: [:]][key] = entry
        }

        for (family, byLabels) in series {
            for (labels, entry) in byLabels {
                guard let last = entry.buckets.last, last.0 == .infinity else {
                    throw Invalid(line: 0, reason: "\(family){\(labels)} has no +Inf bucket")
                }
                guard entry.sum != nil, entry.count == last.1 else {
                    throw Invalid(line: 0, reason: "\(family){\(labels)}: _sum missing or +Inf ≠ _count")
                }
            }
        }
    }

    /// The samples of `name` whose labels include every pair of `labels` (other labels allowed).
    public func samples(_ name: String, _ labels: [String: String] = [:]) -> [Sample] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.label($0.key) == $0.value } }
    }

    /// The value of the one sample of `name` whose labels are exactly `labels`; nil when there is
    /// none (or more than one).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { sample in
            sample.name == name && sample.labels.count == labels.count && labels.allSatisfy { sample.label($0.key) == $0.value }
        }
        return matching.count == 1 ? matching[0].value : nil
    }

    /// The family a sample name belongs to: itself when typed, else the histogram it is a
    /// `_bucket`, `_sum` or `_count` of; nil when none.
    public static func family(of name: String, types: [String: String]) -> String? {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" { return base }
        }
        return nil
    }

    /// `name{a="x",b="y"} value` or `name value`.
    public static func sample(_ line: Substring, number: Int) throws(Invalid) -> Sample {
        let nameEnd = line.firstIndex { $0 == "{" || $0 == " " } ?? line.endIndex
        let name = line[..<nameEnd]
        guard isMetricName(name) else { throw Invalid(line: number, reason: "bad metric name") }
        var labels: [(name: String, value: String)] = []
        var rest = line[nameEnd...]
        if rest.hasPrefix("{") {
            rest = rest.dropFirst()
            while !rest.hasPrefix("}") {
                if !labels.isEmpty {
                    guard rest.hasPrefix(",") else { throw Invalid(line: number, reason: "labels not comma-separated") }
                    rest = rest.dropFirst()
                }
                guard let equals = rest.firstIndex(of: "="), isLabelName(rest[..<equals]),
                      rest[rest.index(after: equals)...].hasPrefix("\"") else { throw Invalid(line: number, reason: "bad label") }
                let labelName = String(rest[..<equals])
                guard !labels.contains(where: { $0.name == labelName }) else { throw Invalid(line: number, reason: "label twice") }
                rest = rest[rest.index(equals, offsetBy: 2)...]
                var value = ""
                while true {
                    guard let character = rest.first else { throw Invalid(line: number, reason: "unterminated label value") }
                    rest = rest.dropFirst()
                    if character == "\"" { break }
                    if character == "\\" {
                        switch rest.first {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw Invalid(line: number, reason: "bad escape in label value")
                        }
                        rest = rest.dropFirst()
                    } else {
                        value.append(character)
                    }
                }
                labels.append((labelName, value))
            }
            rest = rest.dropFirst()
        }
        guard rest.hasPrefix(" "), let value = Self.number(rest.dropFirst()) else { throw Invalid(line: number, reason: "bad value") }
        return Sample(name: String(name), labels: labels, value: value)
    }

    public static func number(_ text: some StringProtocol) -> Double? {
        switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: text.allSatisfy { $0.isASCII && ($0.isNumber || "+-.e".contains($0)) } ? Double(String(text)) : nil
        }
    }

    /// Only `\\` and `\n` (and `\"` when `quotes`) after a backslash; no raw newline.
    public static func isEscaped(_ text: some StringProtocol, quotes: Bool) -> Bool {
        var afterBackslash = false
        for character in text {
            if afterBackslash {
                guard character == "\\" || character == "n" || (quotes && character == "\"") else { return false }
                afterBackslash = false
            } else if character == "\\" {
                afterBackslash = true
            } else if character == "\n" {
                return false
            }
        }
        return !afterBackslash
    }

    public static func isMetricName(_ name: some StringProtocol) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" || first == ":" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
    }

    public static func isLabelName(_ name: some StringProtocol) -> Bool {
        !name.contains(":") && isMetricName(name)
    }
}
