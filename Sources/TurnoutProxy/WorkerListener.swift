import Glibc
import TurnoutModel

/// One of a worker's listening sockets: its descriptor, whether it takes captured outbound
/// connections or inbound ones, and the address it is bound to.
///
/// Every worker binds its own socket to each address (`SO_REUSEPORT`), and the kernel spreads
/// connections over them; the worker closes its sockets when it goes away.
struct WorkerListener {
    enum Kind { case outbound, inbound }

    let descriptor: Int32
    let kind: Kind
    let address: SocketAddress

    /// Binds every address of `configuration` (outbound ones first); on a failure the sockets
    /// already made are closed and the error (EADDRINUSE, …) is thrown.
    static func bindAll(_ configuration: ProxyConfiguration) throws(SystemCallError) -> [WorkerListener] {
        var listeners: [WorkerListener] = []
        do throws(SystemCallError) {
            for (kind, addresses) in [(Kind.outbound, configuration.outbound), (.inbound, configuration.inbound)] {
                for address in addresses {
                    listeners.append(WorkerListener(descriptor: try listen(on: address), kind: kind, address: address))
                }
            }
        } catch {
            for listener in listeners { close(listener.descriptor) }
            throw error
        }
        return listeners
    }

    /// A listening socket with `SO_REUSEPORT`, so every worker binds the same address and the
    /// kernel spreads connections over them.
    private static func listen(on address: SocketAddress) throws(SystemCallError) -> Int32 {
        let fd = try Syscalls.socket(family: address.socketFamily, type: Int32(SOCK_STREAM.rawValue))
        do throws(SystemCallError) {
            try Syscalls.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR")
            try Syscalls.setOption(fd, level: SOL_SOCKET, name: SO_REUSEPORT, value: 1, "SO_REUSEPORT")
            // Accepted sockets inherit it: the proxy must not hold back the small writes an app
            // made (Nagle already ran at the app's own socket); Envoy, HAProxy and nginx do the same.
            try Syscalls.setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1, "TCP_NODELAY")
            if address.address.family == .ipv6 {
                try Syscalls.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 1, "IPV6_V6ONLY")
            }
            try Syscalls.bind(fd, to: address)
            try Syscalls.listen(fd, backlog: 4096, address)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }
}
