import CTurnoutTLS

/// OpenSSL 3, loaded into the process the first time TLS is needed (an etcd source with an
/// https URL): turnout does not link it, so a proxy or `init` never maps it.
///
/// The corresponding C call is `dlopen("libssl.so.3")` (in `CTurnoutTLS_load`), done once per
/// process; every later call returns the first one's outcome. Thread-safe. Throws a
/// ``TLSFailure`` naming the library and the loader's reason (Debian's `libssl3` not installed).
enum OpenSSLLibrary {
    static func load() throws(TLSFailure) {
        var reason = [CChar](repeating: 0, count: 256)
        guard CTurnoutTLS_load(&reason, reason.count) == 0 else {
            let why = String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw TLSFailure("https needs OpenSSL 3 (libssl.so.3, Debian's libssl3): \(why)")
        }
    }
}
