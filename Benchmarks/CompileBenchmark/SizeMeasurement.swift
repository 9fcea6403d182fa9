import TurnoutBenchmarkSupport

/// Everything measured for one table size.
struct SizeMeasurement {
    let services: Int
    let endpoints: Int
    var nftCompile = Samples()
    var nftRender = Samples()
    /// Compile and render of the same run, so its median is a real median, not a sum of two.
    var nftTotal = Samples()
    var nftBytes = 0
    var iptablesTotal = Samples()
    var iptablesBytes = 0
    /// `nil` when decoding was not timed for this size (see `--decode-limit`).
    var yamlDecode: Samples?
    var yamlBytes = 0
    /// `nil` when the peer did not run for this size.
    var peer: PeerMeasurement?

    init(services: Int, endpoints: Int) {
        self.services = services
        self.endpoints = endpoints
    }

    /// Median nft compile+render per service, in microseconds.
    var microsecondsPerService: Double { nftTotal.medianMilliseconds * 1_000 / Double(services) }
    /// Fastest nft compile+render per service, in microseconds.
    var minimumMicrosecondsPerService: Double { nftTotal.minimumMilliseconds * 1_000 / Double(services) }
}

/// `nft --check` of the text measured in the same run.
enum PeerMeasurement {
    case measured(Samples)
    case failed(String)
}
