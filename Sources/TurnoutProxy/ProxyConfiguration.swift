import TurnoutModel

/// How `turnout proxy` runs: where it listens, how many workers, how it treats destinations no
/// route knows, and its time limits. Fixed for the life of a ``TransparentProxy``; the routing
/// table is what reloads.
public struct ProxyConfiguration: Sendable, Hashable {
    /// What to do with a connection whose original destination no route knows.
    public enum UnknownDestination: String, Sendable, Hashable, CaseIterable {
        /// Connect to the original destination, as if there were no proxy (Istio's
        /// `PassthroughCluster`, its default `ALLOW_ANY`).
        case passthrough
        /// Refuse with a reset (Istio's `REGISTRY_ONLY`).
        case reject
    }

    /// Which balancer picks an endpoint.
    public enum Balancer: String, Sendable, Hashable, CaseIterable {
        /// Smooth weighted round robin: exact shares by weight.
        case weighted
        /// Power of two choices over peak-EWMA connect latency × in-flight, weights respected.
        case p2cEWMA = "p2c-ewma"
    }

    /// How workers wait on their sockets.
    public enum IOEngine: String, Sendable, Hashable, CaseIterable {
        /// io_uring where this process may have it, else epoll; the log says which at start.
        case auto
        /// io_uring (Linux 6.1 or later): requests and completions of a whole loop in one
        /// system call. Starting fails where it is refused: the default seccomp profiles of
        /// Docker and containerd, `kernel.io_uring_disabled`, older kernels.
        case uring
        /// epoll: readiness, then one system call per read and per write.
        case epoll
    }

    /// Outbound listeners (captured app traffic; routed by original destination). One per
    /// family is typical: `0.0.0.0:15001` and `[::]:15001`.
    public var outbound: [SocketAddress]
    /// Inbound listeners (captured traffic to the app; delivered to its original destination
    /// from the passthrough source 127.0.0.6 / ::6, which capture leaves alone).
    public var inbound: [SocketAddress]
    public var workers: Int
    public var unknown: UnknownDestination = .passthrough
    public var balancer: Balancer = .weighted
    public var io: IOEngine = .auto
    /// io_uring workers: receive buffers of 16 KiB per worker, a power of two (at most 32,768).
    /// A received message holds one until it is sent on; a direction holds at most four before
    /// its receive pauses, and bulk directions splice instead. When all are in use, receives
    /// wait for some to come back. Only pages a receive wrote are resident (256: up to 4 MiB).
    public var receiveBuffers = 256
    /// Connect timeout per attempt (Envoy's default is 5 s too).
    public var connectTimeout: Duration = .seconds(5)
    /// Attempts per connection, each to another endpoint while one is left (nothing was sent
    /// yet, so a retry is always safe).
    public var connectAttempts = 3
    /// A relay with no byte moved either way for this long is closed (Envoy's TCP proxy default
    /// idle timeout is 1 h).
    public var idleTimeout: Duration = .seconds(3600)
    /// Once one side finished sending, how long the other may go on before the relay is closed
    /// (bounds half-closed relays a peer forgot).
    public var halfClosedTimeout: Duration = .seconds(300)
    /// Requested pipe size in bytes (`F_SETPIPE_SZ`); 0 keeps the kernel's default (64 KiB).
    ///
    /// 1 MiB by default (the kernel's `fs.pipe-max-size`): one `splice(2)` pair then moves up
    /// to 1 MiB instead of 64 KiB, which measured 24.7 Gbit/s for one iperf3 stream on this
    /// machine's loopback against 19.9 with 64 KiB pipes, at less CPU per GiB. A pipe's pages
    /// exist only while bytes sit in it, but the kernel charges the whole size to the proxy's
    /// uid: an unprivileged uid gets `fs.pipe-user-pages-soft` (64 MiB by default), so 64 such
    /// pipes at once; past that the kernel hands out 8 KiB pipes. ``pipeBudget`` keeps the proxy
    /// inside that allowance. Few relays hold a pipe at any moment: only bulk directions with
    /// bytes in flight.
    public var pipeSize: Int32 = 1 << 20
    /// The most pipe capacity the proxy holds at once, over all workers (see ``PipeBudget``):
    /// by default three quarters of the uid's `fs.pipe-user-pages-soft`, none for a privileged
    /// proxy. Past half of it pipes are made at the kernel's 64 KiB; once it is spent, bulk
    /// directions copy instead of splicing.
    public var pipeBudget: PipeBudget = .automatic
    /// Pipes a worker keeps for reuse; more are closed when returned. Small, because every spare
    /// pipe counts against the uid's pipe budget (see ``pipeSize``).
    public var pipePoolLimit = 8
    /// The most connections a service port may have open at once (circuit breaker); over it,
    /// new ones are refused at once and counted. Envoy's default is 1,024.
    public var maxConnectionsPerService = 1024
    /// How long accepting pauses after the process ran out of descriptors.
    public var acceptPause: Duration = .milliseconds(100)
    /// Source addresses for inbound delivery, per family: Istio's passthrough sources.
    public var inboundSources: [IPFamily: IPAddress] = CaptureOptions.passthroughSources
    /// Active TCP checks of every routed endpoint (one checker thread for the proxy); nil
    /// turns them off. On by default: passive ejection only sees endpoints that get traffic,
    /// and the panic threshold needs to know how many are up. The cost is one handshake per
    /// endpoint per interval per proxy, which a large mesh may not want (`--health-interval 0`).
    public var healthCheck: HealthCheckPolicy? = .standard
    /// Passive outlier ejection on consecutive connect failures, per service port.
    public var outlier: OutlierPolicy = .standard
    /// Below this share of available endpoints, health is ignored for the service.
    public var panicThreshold: PanicThreshold = .standard

    public init(outbound: [SocketAddress], inbound: [SocketAddress] = [], workers: Int) {
        self.outbound = outbound
        self.inbound = inbound
        self.workers = workers
    }

    /// Reads the kernel's `fs.pipe-max-size`: the largest pipe a process without
    /// `CAP_SYS_RESOURCE` may ask for; nil when /proc cannot be read.
    public static func kernelPipeMaxSize() -> Int32? { Syscalls.pipeMaxSize() }
}
