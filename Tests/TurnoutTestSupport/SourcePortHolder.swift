import Glibc

extension NetworkNamespace {
    /// A listener on 127.0.0.1:9 and a connection to it whose source port is `port`, made inside
    /// the namespace: what an outgoing connection that took `port` from the ephemeral range looks
    /// like to a later `bind` (the source is bound without SO_REUSEADDR, as the kernel's own pick
    /// would be). Returns both descriptors; the caller closes them. On failure none stays open.
    public func holdSourcePort(_ port: UInt16) throws -> [Int32] {
        try NamespaceThread.run(in: path, timeLimit: .seconds(10)) { () throws -> [Int32] in
            let listener = try LabSocket.listen(family: AF_INET, port: 9)
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            do {
                guard client >= 0 else { throw ServiceLabError.system("socket") }
                let source = try LabSocket.Address("127.0.0.1", port: port)
                guard source.withSockaddr({ bind(client, $0, $1) }) == 0 else { throw ServiceLabError.system("bind(127.0.0.1:\(port))") }
                // The listener is non-blocking, the client not: loopback completes the handshake
                // in the call, and the backlog takes it before anyone accepts.
                let target = try LabSocket.Address("127.0.0.1", port: 9)
                guard target.withSockaddr({ connect(client, $0, $1) }) == 0 else { throw ServiceLabError.system("connect(127.0.0.1:9)") }
            } catch {
                close(listener)
                if client >= 0 { close(client) }
                throw error
            }
            return [listener, client]
        }
    }
}
