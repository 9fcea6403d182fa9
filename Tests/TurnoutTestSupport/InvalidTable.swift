/// One table that must be refused: its text, and where and why the first issue must point.
///
/// Shared by the decoder tests and the CLI tests, so every case is proven at both layers:
/// the decoder reports it, and the binary exits 2 naming file:line and the field.
public struct InvalidTable: Sendable, CustomStringConvertible {
    public var name: String
    public var yaml: String
    public var line: Int
    public var field: String
    public var message: String

    public var description: String { name }
}

extension InvalidTable {
    static let service = "  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{name: http, port: 80}]\n"

    public static let all: [InvalidTable] = [
        InvalidTable(name: "duplicate service name",
                     yaml: "services:\n\(service)  - name: shop/api\n    addresses: [10.96.0.11]\n    ports: [{port: 80}]\n",
                     line: 5, field: "services[1].name", message: "duplicate service name 'shop/api'"),
        InvalidTable(name: "the same VIP:port:protocol in two services",
                     yaml: "services:\n\(service)  - name: shop/other\n    addresses: [10.96.0.10]\n    ports: [{port: 80}]\n",
                     line: 7, field: "services[1].ports[0]", message: "10.96.0.10:80/tcp is already used by service 'shop/api'"),
        InvalidTable(name: "a bad address",
                     yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.300]\n    ports: [{port: 80}]\n",
                     line: 3, field: "services[0].addresses[0]", message: "'10.96.0.300' is not an IPv4 or IPv6 address"),
        InvalidTable(name: "an IPv6 endpoint behind IPv4-only addresses (mixed-up families)",
                     yaml: "services:\n\(service)    endpoints:\n      - {address: 'fd00::5'}\n",
                     line: 6, field: "services[0].endpoints[0].address", message: "endpoint fd00::5 is ipv6 but the service's addresses are ipv4"),
        InvalidTable(name: "a multicast service address",
                     yaml: "services:\n  - name: shop/api\n    addresses: [224.0.0.1]\n    ports: [{port: 80}]\n",
                     line: 3, field: "services[0].addresses[0]", message: "unspecified, multicast or broadcast"),
        InvalidTable(name: "port 0",
                     yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{port: 0}]\n",
                     line: 4, field: "services[0].ports[0].port", message: "port must be between 1 and 65535, got 0"),
        InvalidTable(name: "port above 65535",
                     yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports:\n      - {port: 80, targetPort: 70000}\n",
                     line: 5, field: "services[0].ports[0].targetPort", message: "port must be between 1 and 65535, got 70000"),
        InvalidTable(name: "port 65536",
                     yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{port: 65536}]\n",
                     line: 4, field: "services[0].ports[0].port", message: "port must be between 1 and 65535, got 65536"),
        InvalidTable(name: "an empty port name",
                     yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{name: '', port: 80}]\n",
                     line: 4, field: "services[0].ports[0].name", message: "must not be empty"),
        InvalidTable(name: "a negative weight",
                     yaml: "services:\n\(service)    endpoints:\n      - {address: 10.1.0.5, weight: -1}\n",
                     line: 6, field: "services[0].endpoints[0].weight", message: "weight must be between 0 and 1000000, got -1"),
        InvalidTable(name: "a non-integer weight",
                     yaml: "services:\n\(service)    endpoints:\n      - {address: 10.1.0.5, weight: 1.5}\n",
                     line: 6, field: "services[0].endpoints[0].weight", message: "weight must be an integer, got '1.5'"),
        InvalidTable(name: "an unknown key (a misspelt weight)",
                     yaml: "services:\n\(service)    endpoints:\n      - {address: 10.1.0.5, wieght: 5}\n",
                     line: 6, field: "services[0].endpoints[0].wieght", message: "unknown key 'wieght'"),
        InvalidTable(name: "an empty service name",
                     yaml: "services:\n  - name: ''\n    addresses: [10.96.0.10]\n    ports: [{port: 80}]\n",
                     line: 2, field: "services[0].name", message: "must not be empty"),
        InvalidTable(name: "a name without a namespace",
                     yaml: "services:\n  - name: api\n    addresses: [10.96.0.10]\n    ports: [{port: 80}]\n",
                     line: 2, field: "services[0].name", message: "'api' is not namespace/name"),
        InvalidTable(name: "a missing address list",
                     yaml: "services:\n  - name: shop/api\n    ports: [{port: 80}]\n",
                     line: 2, field: "services[0]", message: "missing key 'addresses'"),
        InvalidTable(name: "an unknown protocol",
                     yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{port: 80, protocol: icmp}]\n",
                     line: 4, field: "services[0].ports[0].protocol", message: "protocol must be tcp, udp or sctp"),
        InvalidTable(name: "several unnamed ports",
                     yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{port: 80}, {port: 443}]\n",
                     line: 4, field: "services[0].ports[0].name", message: "a service with several ports must name each of them"),
        InvalidTable(name: "a single-port override on a multi-port service",
                     yaml: "services:\n  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{name: a, port: 80}, {name: b, port: 443}]\n    endpoints: [{address: 10.1.0.5, port: 8080}]\n",
                     line: 5, field: "services[0].endpoints[0].port", message: "'port' is ambiguous"),
        InvalidTable(name: "a named port override for a port the service lacks",
                     yaml: "services:\n\(service)    endpoints: [{address: 10.1.0.5, ports: {grpc: 9000}}]\n",
                     line: 5, field: "services[0].endpoints[0].ports.grpc", message: "the service has no port named 'grpc'"),
        InvalidTable(name: "the same endpoint twice",
                     yaml: "services:\n\(service)    endpoints:\n      - {address: 10.1.0.5}\n      - {address: 10.1.0.5}\n",
                     line: 7, field: "services[0].endpoints[1].address", message: "listed twice"),
        InvalidTable(name: "an affinity timeout above Kubernetes' maximum",
                     yaml: "services:\n\(service)    affinity: {clientIP: {timeoutSeconds: 90000}}\n",
                     line: 5, field: "services[0].affinity.clientIP.timeoutSeconds", message: "timeoutSeconds must be between 1 and 86400"),
        InvalidTable(name: "a key written twice in one mapping",
                     yaml: "services:\n\(service)    addresses: [10.96.0.11]\n",
                     line: 5, field: "services[0].addresses", message: "duplicate key 'addresses'"),
        InvalidTable(name: "text that is not YAML",
                     yaml: "services:\n  - name: [unclosed\n",
                     line: 3, field: "(document)", message: "not valid YAML"),
    ]
}
