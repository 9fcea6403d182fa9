/// A document in the Prometheus text exposition format 0.0.4: what the admin server's `/metrics`
/// answers, with `PrometheusText.contentType`.
///
/// Families are written in the order they are added, each as `# HELP`, `# TYPE`, then its samples
/// in the order given, so the same stats give the same bytes. Label values and help text are
/// escaped here; names are not: a name that breaks the format (metric names
/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*` not starting with `__`), a
/// family added twice, a label named twice or a histogram whose buckets are not cumulative is a
/// programmer error and stops the program (precondition). Numbers: integral values without a
/// fraction (`3`, `-2`), others in Swift's shortest round-trip form (`0.25`, `1e-05`), and `+Inf`,
/// `-Inf`, `NaN`. A value; build one per scrape, on any thread.
public struct PrometheusText: Sendable {
    /// The `Content-Type` of the rendered text.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// One counter or gauge sample.
    public typealias Sample = (labels: PrometheusLabels, value: Double)
    /// One histogram's series: bucket upper bounds ascending with the count of observations at
    /// or under each (cumulative); a last `+Inf` bucket is added with `count` when absent.
    public typealias HistogramSample = (labels: PrometheusLabels, buckets: [(upperBound: Double, cumulativeCount: UInt64)], sum: Double, count: UInt64)

    /// The document so far, every line ending in a newline.
    public private(set) var rendered = ""
    /// Every sample name taken so far (a histogram takes `_bucket`, `_sum` and `_count` too).
    private var names: Set<String> = []

    public init() {}

    /// Adds a counter family (a value that only goes up; by convention `name` ends in `_total`).
    public mutating func counter(_ name: String, help: String, samples: [Sample]) {
        family(name, help: help, type: "counter", sampleNames: [name])
        for sample in samples { line(name, sample.labels, sample.value) }
    }

    /// Adds a gauge family (a value that goes up and down).
    public mutating func gauge(_ name: String, help: String, samples: [Sample]) {
        family(name, help: help, type: "gauge", sampleNames: [name])
        for sample in samples { line(name, sample.labels, sample.value) }
    }

    /// Adds a histogram family: for each series, `name_bucket{…,le="…"}` for every bucket up to
    /// `le="+Inf"`, then `name_sum` and `name_count`. No label may be called `le`.
    public mutating func histogram(_ name: String, help: String, samples: [HistogramSample]) {
        family(name, help: help, type: "histogram", sampleNames: [name, name + "_bucket", name + "_sum", name + "_count"])
        for sample in samples {
            precondition(!sample.labels.names.contains("le"), "\(name): the label le is the histogram's own")
            var buckets = sample.buckets
            if buckets.last?.upperBound != .infinity { buckets.append((upperBound: .infinity, cumulativeCount: sample.count)) }
            for (index, bucket) in buckets.enumerated() {
                precondition(!bucket.upperBound.isNaN, "\(name): a bucket bound is NaN")
                if index > 0 {
                    precondition(bucket.upperBound > buckets[index - 1].upperBound, "\(name): bucket bounds not ascending")
                    precondition(bucket.cumulativeCount >= buckets[index - 1].cumulativeCount, "\(name): bucket counts not cumulative")
                }
                var labels = sample.labels
                labels.append("le", Self.format(bucket.upperBound))
                line(name + "_bucket", labels, Double(bucket.cumulativeCount))
            }
            precondition(buckets.last!.cumulativeCount == sample.count, "\(name): the +Inf bucket differs from the count")
            line(name + "_sum", sample.labels, sample.sum)
            line(name + "_count", sample.labels, Double(sample.count))
        }
    }

    private mutating func family(_ name: String, help: String, type: String, sampleNames: [String]) {
        precondition(Self.isMetricName(name), "invalid Prometheus metric name \"\(name)\"")
        for sampleName in sampleNames {
            precondition(names.insert(sampleName).inserted, "Prometheus metric \(sampleName) written twice")
        }
        rendered += "# HELP \(name) \(Self.escape(help, quotes: false))\n# TYPE \(name) \(type)\n"
    }

    private mutating func line(_ name: String, _ labels: PrometheusLabels, _ value: Double) {
        rendered += name
        if !labels.pairs.isEmpty {
            rendered += "{"
            rendered += labels.pairs.map { "\($0.name)=\"\(Self.escape($0.value, quotes: true))\"" }.joined(separator: ",")
            rendered += "}"
        }
        rendered += " \(Self.format(value))\n"
    }

    /// `value` as the format writes it: `+Inf`, `-Inf`, `NaN`, integral values without a
    /// fraction (up to 2⁵³, where every integer is exact), others in Swift's shortest
    /// round-trip form.
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Inf" : "+Inf" }
        if value == value.rounded(), abs(value) <= 9_007_199_254_740_992 { return String(Int64(value)) }
        return value.description
    }

    /// Backslash and newline escaped, and the double quote when `quotes` (label values; not help).
    static func escape(_ text: String, quotes: Bool) -> String {
        guard text.contains(where: { $0 == "\\" || $0 == "\n" || (quotes && $0 == "\"") }) else { return text }
        var escaped = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\"" where quotes: escaped += "\\\""
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    static func isMetricName(_ name: String) -> Bool { isName(name, colons: true) }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved for Prometheus itself).
    static func isLabelName(_ name: String) -> Bool { isName(name, colons: false) && !name.hasPrefix("__") }

    private static func isName(_ name: String, colons: Bool) -> Bool {
        guard let first = name.utf8.first else { return false }
        func isStart(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || byte == UInt8(ascii: "_") || (colons && byte == UInt8(ascii: ":"))
        }
        return isStart(first) && name.utf8.dropFirst().allSatisfy { isStart($0) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) }
    }
}

/// The labels of one Prometheus sample, in the order written: `["service": "shop/api:http"]`.
///
/// Ordered (unlike a dictionary) so that output is deterministic. A label name that breaks the
/// format or appears twice is a programmer error (precondition); values may hold anything.
public struct PrometheusLabels: Sendable, Hashable, ExpressibleByDictionaryLiteral {
    /// One label.
    public struct Pair: Sendable, Hashable {
        public var name: String
        public var value: String
    }

    /// The labels in the order given.
    public private(set) var pairs: [Pair] = []

    /// The label names in order.
    public var names: [String] { pairs.map(\.name) }

    /// No labels.
    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements { append(name, value) }
    }

    /// Adds `name="value"` after the labels already there.
    public mutating func append(_ name: String, _ value: String) {
        precondition(PrometheusText.isLabelName(name), "invalid Prometheus label name \"\(name)\"")
        precondition(!pairs.contains { $0.name == name }, "Prometheus label \(name) given twice")
        pairs.append(Pair(name: name, value: value))
    }
}
