import Testing
import TurnoutControl

/// The Prometheus text writer: families in → exact 0.0.4 text out, checked line by line by a
/// strict parser of the format (below) on a larger mixed document.
@Suite("Prometheus text exposition")
struct PrometheusTextTests {
    @Test("a counter with two labelled samples → HELP, TYPE counter, the samples in order")
    func counter() {
        var text = PrometheusText()
        text.counter("turnout_connections_total", help: "Connections accepted.", samples: [
            (labels: ["service": "shop/api:http", "worker": "0"], value: 3),
            (labels: ["service": "shop/web:http", "worker": "0"], value: 0),
        ])
        #expect(text.rendered == """
            # HELP turnout_connections_total Connections accepted.
            # TYPE turnout_connections_total counter
            turnout_connections_total{service="shop/api:http",worker="0"} 3
            turnout_connections_total{service="shop/web:http",worker="0"} 0

            """)
    }

    @Test("a gauge without labels, then one with → `name value` and `name{…} value`")
    func gauge() {
        var text = PrometheusText()
        text.gauge("turnout_ready", help: "1 once the first table is loaded.", samples: [(labels: [:], value: 1)])
        text.gauge("turnout_endpoint_weight_share", help: "Share of picks.", samples: [(labels: ["endpoint": "10.1.0.5:8080"], value: 0.9)])
        #expect(text.rendered == """
            # HELP turnout_ready 1 once the first table is loaded.
            # TYPE turnout_ready gauge
            turnout_ready 1
            # HELP turnout_endpoint_weight_share Share of picks.
            # TYPE turnout_endpoint_weight_share gauge
            turnout_endpoint_weight_share{endpoint="10.1.0.5:8080"} 0.9

            """)
    }

    @Test("a histogram without a +Inf bucket → cumulative buckets, +Inf = count added, then _sum and _count")
    func histogram() {
        var text = PrometheusText()
        text.histogram("turnout_connect_seconds", help: "Upstream connect latency.", samples: [
            (labels: ["service": "a"], buckets: [(upperBound: 0.005, cumulativeCount: 1), (upperBound: 0.01, cumulativeCount: 3), (upperBound: 1, cumulativeCount: 3)],
             sum: 0.0345, count: 4),
        ])
        #expect(text.rendered == """
            # HELP turnout_connect_seconds Upstream connect latency.
            # TYPE turnout_connect_seconds histogram
            turnout_connect_seconds_bucket{service="a",le="0.005"} 1
            turnout_connect_seconds_bucket{service="a",le="0.01"} 3
            turnout_connect_seconds_bucket{service="a",le="1"} 3
            turnout_connect_seconds_bucket{service="a",le="+Inf"} 4
            turnout_connect_seconds_sum{service="a"} 0.0345
            turnout_connect_seconds_count{service="a"} 4

            """)
    }

    @Test("a histogram whose buckets already end at +Inf → no second +Inf")
    func histogramWithInfinity() {
        var text = PrometheusText()
        text.histogram("h", help: "h", samples: [(labels: [:], buckets: [(upperBound: 1, cumulativeCount: 2), (upperBound: .infinity, cumulativeCount: 5)], sum: 7.5, count: 5)])
        #expect(text.rendered == "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 5\nh_sum 7.5\nh_count 5\n")
    }

    @Test("label value with backslash, quote, newline → \\\\, \\\", \\n; help with backslash, newline → \\\\, \\n, quotes kept")
    func escaping() throws {
        var text = PrometheusText()
        text.counter("c_total", help: "path C:\\temp\nsecond \"line\"", samples: [(labels: ["v": "a\\b\"c\nd"], value: 1)])
        #expect(text.rendered == #"""
            # HELP c_total path C:\\temp\nsecond "line"
            # TYPE c_total counter
            c_total{v="a\\b\"c\nd"} 1

            """#)
        let document = try PrometheusDocument(parsing: text.rendered)
        #expect(document.samples.first?.labels.first?.value == "a\\b\"c\nd")
    }

    static let numbers: [(Double, String)] = [
        (3, "3"), (0, "0"), (-0.0, "0"), (-2, "-2"), (0.5, "0.5"), (0.0345, "0.0345"), (1e-05, "1e-05"),
        (9_007_199_254_740_992, "9007199254740992"), (1e20, "1e+20"), (.infinity, "+Inf"), (-.infinity, "-Inf"), (.nan, "NaN"),
    ]

    @Test("value → text: integers without a fraction, shortest round trip otherwise, ±Inf, NaN", arguments: numbers)
    func number(_ value: Double, _ expected: String) {
        #expect(PrometheusText.format(value) == expected)
    }

    @Test("a family with no samples → its HELP and TYPE only")
    func emptyFamily() {
        var text = PrometheusText()
        text.counter("turnout_rejected_total", help: "Rejected.", samples: [])
        #expect(text.rendered == "# HELP turnout_rejected_total Rejected.\n# TYPE turnout_rejected_total counter\n")
    }

    @Test("content type → version 0.0.4, UTF-8")
    func contentType() {
        #expect(PrometheusText.contentType == "text/plain; version=0.0.4; charset=utf-8")
    }

    @Test("a mixed document of counters, gauges and histograms → every line valid, families typed, buckets consistent")
    func mixedDocumentParses() throws {
        var text = PrometheusText()
        let services = ["shop/api:http", "shop/web:http", "odd \"name\"\\x\ny"]
        text.counter("turnout_connections_total", help: "Connections accepted, by service.",
                     samples: services.enumerated().map { (labels: ["service": $1], value: Double($0 * 1_000)) })
        text.gauge("turnout_active_connections", help: "Open connections.", samples: services.map { (labels: ["service": $0], value: 2) })
        text.gauge("turnout_odd_values", help: "Special values\\ and a second\nline.", samples: [
            (labels: ["kind": "inf"], value: .infinity), (labels: ["kind": "-inf"], value: -.infinity),
            (labels: ["kind": "nan"], value: .nan), (labels: ["kind": "tiny"], value: 1e-9), (labels: ["kind": "negative"], value: -3.25),
        ])
        text.histogram("turnout_connect_seconds", help: "Connect latency.", samples: services.enumerated().map { index, service in
            let bounds = [0.001, 0.005, 0.025, 0.1, 0.5, 2.5]
            let counts = bounds.indices.map { UInt64($0 * index + 1) }
            return (labels: ["service": service, "worker": "\(index)"], buckets: zip(bounds, counts).map { (upperBound: $0, cumulativeCount: $1) },
                    sum: Double(index) * 0.3, count: counts.last! + UInt64(index))
        })
        text.histogram("turnout_bytes", help: "Bytes per connection.", samples: [
            (labels: [:], buckets: [(upperBound: 1_024, cumulativeCount: 0), (upperBound: 65_536, cumulativeCount: 0)], sum: 0, count: 0),
        ])
        text.counter("turnout_scrapes_total", help: "Scrapes.", samples: [(labels: [:], value: 1)])

        let document = try PrometheusDocument(parsing: text.rendered)
        #expect(document.types == ["turnout_connections_total": "counter", "turnout_active_connections": "gauge", "turnout_odd_values": "gauge",
                                   "turnout_connect_seconds": "histogram", "turnout_bytes": "histogram", "turnout_scrapes_total": "counter"])
        #expect(document.samples.count == 3 + 3 + 5 + 3 * (7 + 2) + (3 + 2) + 1)
        // Label values come back exactly as given, escapes undone.
        #expect(document.samples.filter { $0.name == "turnout_connections_total" }.map { $0.labels[0].value } == services)
    }

    static let invalidDocuments: [(String, String)] = [
        ("a sample before its TYPE", "c_total 1\n# TYPE c_total counter\n"),
        ("no final newline", "# TYPE c_total counter\nc_total 1"),
        ("a value that is not a number", "# TYPE g gauge\ng one\n"),
        ("an unknown escape in a label value", "# TYPE g gauge\ng{a=\"\\t\"} 1\n"),
        ("an unquoted label value", "# TYPE g gauge\ng{a=b} 1\n"),
        ("TYPE twice", "# TYPE g gauge\n# TYPE g gauge\ng 1\n"),
        ("a family interrupted by another", "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n"),
        ("buckets decreasing", "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"),
        ("no +Inf bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_sum 1\nh_count 3\n"),
        ("+Inf differs from _count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 4\n"),
        ("a bad metric name", "# TYPE 9lives gauge\n9lives 1\n"),
    ]

    @Test("the checker itself: a broken document → rejected", arguments: invalidDocuments)
    func checkerRejects(_ name: String, _ document: String) {
        #expect(throws: PrometheusDocument.Invalid.self, "\(name)") { try PrometheusDocument(parsing: document) }
    }

    @Test("a metric name outside [a-zA-Z_:][a-zA-Z0-9_:]* → the writer stops the program")
    func badNameIsAPreconditionFailure() async {
        await #expect(processExitsWith: .failure) {
            var text = PrometheusText()
            text.gauge("turnout-ready", help: "dash", samples: [])
        }
    }

    @Test("a family added twice → the writer stops the program")
    func duplicateFamilyIsAPreconditionFailure() async {
        await #expect(processExitsWith: .failure) {
            var text = PrometheusText()
            text.gauge("g", help: "once", samples: [])
            text.gauge("g", help: "twice", samples: [])
        }
    }
}

/// A strict reader of the text exposition format 0.0.4, for checking what the writer produces:
/// every line is `# HELP name text`, `# TYPE name type` or `name{label="value",…} value`; a
/// family's TYPE comes before its samples, at most once, and its lines are contiguous;
/// histogram series have cumulative buckets ending in `le="+Inf"` equal to their `_count`, and a
/// `_sum`. Timestamps and other comments are rejected (the writer emits none).
struct PrometheusDocument {
    struct Invalid: Error, CustomStringConvertible {
        let line: Int
        let reason: String
        var description: String { "line \(line): \(reason)" }
    }

    struct Sample {
        let name: String
        let labels: [(name: String, value: String)]
        let value: Double
    }

    private(set) var types: [String: String] = [:]
    private(set) var samples: [Sample] = []

    init(parsing text: String) throws(Invalid) {
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

    /// The family a sample name belongs to: itself when typed, else the histogram it is a
    /// `_bucket`, `_sum` or `_count` of; nil when none.
    static func family(of name: String, types: [String: String]) -> String? {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" { return base }
        }
        return nil
    }

    /// `name{a="x",b="y"} value` or `name value`.
    static func sample(_ line: Substring, number: Int) throws(Invalid) -> Sample {
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

    static func number(_ text: some StringProtocol) -> Double? {
        switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: text.allSatisfy { $0.isASCII && ($0.isNumber || "+-.e".contains($0)) } ? Double(String(text)) : nil
        }
    }

    /// Only `\\` and `\n` (and `\"` when `quotes`) after a backslash; no raw newline.
    static func isEscaped(_ text: some StringProtocol, quotes: Bool) -> Bool {
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

    static func isMetricName(_ name: some StringProtocol) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" || first == ":" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
    }

    static func isLabelName(_ name: some StringProtocol) -> Bool {
        !name.contains(":") && isMetricName(name)
    }
}
