import Glibc
import TurnoutModel

extension SocketAddress {
    /// The socket family (`AF_INET` / `AF_INET6`) of this address.
    var socketFamily: Int32 { address.family == .ipv4 ? AF_INET : AF_INET6 }

    /// Calls `body` with this address as a `sockaddr_in` or `sockaddr_in6` and its length.
    func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        switch address {
        case .v4(let value):
            var raw = sockaddr_in()
            raw.sin_family = sa_family_t(AF_INET)
            raw.sin_port = port.bigEndian
            raw.sin_addr.s_addr = value.bigEndian
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6:
            var raw = sockaddr_in6()
            raw.sin6_family = sa_family_t(AF_INET6)
            raw.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &raw.sin6_addr) { $0.copyBytes(from: address.bytes) }
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }

    /// The address in a `sockaddr_in` or `sockaddr_in6` (what `accept`, `recvfrom` and
    /// `getsockname` fill in); nil for any other family.
    public init?(storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let raw = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            self.init(address: .v4(UInt32(bigEndian: raw.sin_addr.s_addr)), port: UInt16(bigEndian: raw.sin_port))
        case AF_INET6:
            let raw = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            let bytes = withUnsafeBytes(of: raw.sin6_addr) { Array($0) }
            self.init(address: IPAddress(v6Bytes: bytes), port: UInt16(bigEndian: raw.sin6_port))
        default:
            return nil
        }
    }

    /// The unspecified address of `family` (`0.0.0.0`, `::`) with `port`: a wildcard listener.
    public static func wildcard(_ family: IPFamily, port: UInt16) -> SocketAddress {
        SocketAddress(address: family == .ipv4 ? .v4(0) : .v6(0, 0), port: port)
    }
}
