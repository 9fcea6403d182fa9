import Glibc
import TurnoutModel

/// The addresses of the caller's network namespace, as the socket capture needs them.
public enum NamespaceAddresses {
    /// Every address on an interface of this namespace, both families (loopback ones included);
    /// the corresponding C call is getifaddrs(3). Read once, when init runs: an address added
    /// later is not known to the capture (see the README).
    public static func all() throws(SocketCaptureError) -> [IPAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { throw .system("getifaddrs", errno) }
        defer { freeifaddrs(list) }
        var addresses: [IPAddress] = []
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let socketAddress = current.pointee.ifa_addr else { continue }
            if socketAddress.pointee.sa_family == sa_family_t(AF_INET) {
                let address = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                addresses.append(.v4(UInt32(bigEndian: address)))
            } else if socketAddress.pointee.sa_family == sa_family_t(AF_INET6) {
                var raw = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                addresses.append(IPAddress(v6Bytes: withUnsafeBytes(of: &raw) { Array($0) }))
            }
        }
        return Array(Set(addresses)).sorted()
    }
}
