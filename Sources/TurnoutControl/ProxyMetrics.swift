import TurnoutProxy

/// The proxy's counters as Prometheus text (`/metrics`): one family per counter, labelled by
/// service port and endpoint, summed over workers at the moment of the scrape.
public enum ProxyMetrics {
    /// Renders `statistics`, and the table source's state when the proxy has a ``Reconciler``.
    public static func render(_ statistics: ProxyStatistics, source: Reconciler.Status? = nil) -> String {
        var text = PrometheusText()
        let upstreams = statistics.upstreams.sorted { $0.key < $1.key }
        func labels(_ key: UpstreamKey) -> PrometheusLabels { ["service": key.service, "endpoint": key.endpoint] }

        text.counter("turnout_upstream_connections_total", help: "Connections established to an upstream (endpoint, passthrough or inbound delivery).",
                     samples: upstreams.map { (labels($0.key), Double($0.value.connections)) })
        text.gauge("turnout_upstream_connections_active", help: "Connections to an upstream open now.",
                   samples: upstreams.map { (labels($0.key), Double($0.value.active)) })
        var failures: [PrometheusText.Sample] = []
        for (key, count) in upstreams {
            for reason in ConnectFailure.allCases {
                var failureLabels = labels(key)
                failureLabels.append("reason", "\(reason)")
                failures.append((failureLabels, Double(count.failures[reason.rawValue])))
            }
        }
        text.counter("turnout_upstream_connect_failures_total", help: "Upstream connect attempts that failed, by reason (refused, timeout, unreachable, other).",
                     samples: failures)
        text.counter("turnout_upstream_sent_bytes_total", help: "Bytes relayed from clients to the upstream.",
                     samples: upstreams.map { (labels($0.key), Double($0.value.bytesToUpstream)) })
        text.counter("turnout_upstream_received_bytes_total", help: "Bytes relayed from the upstream back to clients.",
                     samples: upstreams.map { (labels($0.key), Double($0.value.bytesToClient)) })
        var fullWaits: [PrometheusText.Sample] = []
        var pausedSeconds: [PrometheusText.Sample] = []
        for (key, count) in upstreams {
            for (destination, waits, nanoseconds) in [("upstream", count.upstreamFullWaits, count.upstreamPausedNanoseconds),
                                                      ("client", count.clientFullWaits, count.clientPausedNanoseconds)] {
                var waitLabels = labels(key)
                waitLabels.append("destination", destination)
                fullWaits.append((waitLabels, Double(waits)))
                pausedSeconds.append((waitLabels, Double(nanoseconds) / 1e9))
            }
        }
        text.counter("turnout_flow_control_waits_total", help: "Times a relay found its destination's socket full (it took less than was ready for it) and read no more from the other side until it had room: destination=upstream when the endpoint reads slower than clients send, client when clients read slower than the endpoint answers.",
                     samples: fullWaits)
        text.counter("turnout_flow_control_paused_seconds_total", help: "How long the waits of turnout_flow_control_waits_total lasted, added as each ended (when the destination had room again, or the connection closed).",
                     samples: pausedSeconds)
        text.histogram("turnout_upstream_connect_seconds", help: "Time from the start of a connect attempt to the established connection.",
                       samples: upstreams.map { key, count in
                           var cumulative: UInt64 = 0
                           var buckets: [(upperBound: Double, cumulativeCount: UInt64)] = []
                           for (index, bound) in TrafficCounters.latencyBucketBounds.enumerated() {
                               cumulative += count.latencyBuckets[index]
                               buckets.append((Double(bound) / 1e6, cumulative))
                           }
                           cumulative += count.latencyBuckets[TrafficCounters.latencyBucketBounds.count]
                           buckets.append((.infinity, cumulative))
                           return (labels(key), buckets, Double(count.latencySumMicroseconds) / 1e6, cumulative)
                       })

        text.counter("turnout_upstream_ejections_total", help: "Times outlier detection ejected the endpoint after consecutive connect failures.",
                     samples: upstreams.filter { statistics.endpoints[$0.key] != nil || $0.value.ejections > 0 }
                         .map { (labels($0.key), Double($0.value.ejections)) })
        let endpoints = statistics.endpoints.sorted { $0.key < $1.key }
        text.gauge("turnout_endpoint_healthy", help: "1 while active health checks pass the endpoint (1 with checks off), 0 once they mark it unhealthy.",
                   samples: endpoints.map { (labels($0.key), $0.value.healthy ? 1 : 0) })
        text.gauge("turnout_endpoint_ejected", help: "1 while outlier detection keeps the endpoint out of its service.",
                   samples: endpoints.map { (labels($0.key), $0.value.ejected ? 1 : 0) })

        let services = statistics.services.sorted { $0.key < $1.key }
        text.counter("turnout_service_circuit_breaker_rejections_total", help: "Connections refused because the service had its maximum of open connections.",
                     samples: services.map { (["service": $0.key], Double($0.value.circuitBreakerRejections)) })
        text.counter("turnout_service_unavailable_rejections_total", help: "Connections refused because no endpoint could take them.",
                     samples: services.map { (["service": $0.key], Double($0.value.unavailableRejections)) })
        text.counter("turnout_service_panic_picks_total", help: "Picks made among all endpoints because too few were available (panic threshold).",
                     samples: services.map { (["service": $0.key], Double($0.value.panicPicks)) })

        text.counter("turnout_accepted_connections_total", help: "Connections accepted on the proxy's listeners.", samples: [([:], Double(statistics.accepted))])
        text.counter("turnout_loop_rejections_total", help: "Connections refused because their original destination was the proxy itself.",
                     samples: [([:], Double(statistics.loopRejections))])
        text.counter("turnout_unknown_rejections_total", help: "Connections to unknown destinations refused (--unknown reject).",
                     samples: [([:], Double(statistics.unknownRejections))])
        text.counter("turnout_accept_pauses_total", help: "Times accepting paused because the process ran out of descriptors.",
                     samples: [([:], Double(statistics.acceptPauses))])
        text.counter("turnout_pipes_undersized_total", help: "Splice pipes the kernel made smaller than asked (the uid's pipe allowance, fs.pipe-user-pages-soft, is spent): one of at least the kernel's 64 KiB default is used, a smaller one closed and its relay copied.",
                     samples: [([:], Double(statistics.undersizedPipes))])
        text.counter("turnout_relay_copy_fallbacks_total", help: "Rounds of bulk relay directions that copied instead of splicing for want of a pipe (pipe budget spent, pipe undersized, no descriptor).",
                     samples: [([:], Double(statistics.copyFallbacks))])
        text.gauge("turnout_pipe_bytes", help: "Splice pipe capacity the proxy holds now (lent to relays or spare), in bytes.",
                   samples: [([:], Double(statistics.pipeBytes))])
        if let budget = statistics.pipeBudget {
            text.gauge("turnout_pipe_budget_bytes", help: "The most pipe capacity the proxy holds at once (--pipe-budget), in bytes.",
                       samples: [([:], Double(budget))])
        }
        text.gauge("turnout_relays_active", help: "Connections in the proxy now (connecting or relaying).", samples: [([:], Double(statistics.relays))])
        text.gauge("turnout_workers", help: "Worker threads.", samples: [([:], Double(statistics.workers))])
        text.gauge("turnout_table_generation", help: "Generation of the routing table in use (1, then +1 per accepted reload).",
                   samples: [([:], Double(statistics.generation))])
        if let source {
            let labels: PrometheusLabels = ["source": source.source]
            text.counter("turnout_table_reloads_refused_total", help: "Tables the source offered that were invalid; the previous table stayed.",
                         samples: [(labels, Double(source.invalidTables))])
            text.counter("turnout_source_installs_total", help: "Tables from the source installed.", samples: [(labels, Double(source.installs))])
            text.gauge("turnout_source_up", help: "1 while the source can be read and holds a valid table, 0 while the last good table is kept instead.",
                       samples: [(labels, source.sourceState == "up" ? 1 : 0)])
            text.counter("turnout_source_outages_total", help: "Times the source became unreadable.", samples: [(labels, Double(source.outages))])
            text.gauge("turnout_source_last_install_timestamp_seconds", help: "When the last table was installed (Unix time).",
                       samples: source.installedAt.map { [(labels, $0)] } ?? [])
        }
        return text.rendered
    }
}
