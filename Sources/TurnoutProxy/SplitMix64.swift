/// A small, fast, seedable random number generator (Steele, Lea and Flood's SplitMix64) for the
/// balancers' random choices.
///
/// Not cryptographic, and not meant to be: it only has to spread picks. A worker seeds one from
/// the system generator when it starts (`SplitMix64(seed: .random(in: .min ... .max))`), which
/// avoids a `getrandom` call per pick; tests seed it with a constant, so every pick is
/// reproducible. A value type: each owner has its own sequence.
public struct SplitMix64: RandomNumberGenerator, Sendable, Hashable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
