import Testing
import TurnoutControl
import TurnoutTestSupport

/// The Prometheus text writer: families in → exact 0.0.4 text out, checked line by line by a
/// strict parser of the format (`PrometheusDocument`, in TurnoutTestSupport) on a larger mixed document.
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
