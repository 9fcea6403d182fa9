/// A short, stable, base32 digest of a string for object names (kube-proxy uses SHA-256 the same way).
///
/// Two FNV-1a 64-bit passes with different offset bases give up to 128 bits; names only need
/// stability across runs and machines (Swift's `Hasher` is seeded per process, so it cannot be used)
/// and uniqueness, which the compilers also guarantee by keeping the readable part unique.
enum StableHash {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    static func base32(_ text: String, length: Int) -> String {
        precondition(length <= 25, "two 64-bit passes give 25 base32 characters")
        let bits = [fnv1a(text, basis: 0xcbf2_9ce4_8422_2325), fnv1a(text, basis: 0x6c62_272e_07bb_0142)]
        var out: [UInt8] = []
        var accumulator: UInt64 = 0, available = 0, index = 0
        while out.count < length {
            if available < 5 {
                let next = bits[index]
                index += 1
                // Take the next 64 bits in two halves so the accumulator never overflows.
                for half in [next >> 32, next & 0xFFFF_FFFF] {
                    accumulator = accumulator << 32 | half
                    available += 32
                    while available >= 5 && out.count < length {
                        available -= 5
                        out.append(alphabet[Int((accumulator >> UInt64(available)) & 31)])
                    }
                    accumulator &= (1 << UInt64(available)) - 1
                }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func fnv1a(_ text: String, basis: UInt64) -> UInt64 {
        var hash = basis
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}
