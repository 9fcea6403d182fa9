/// Checks what no single field can: uniqueness across services, port and family consistency.
///
/// Runs after decoding, on services whose fields are individually valid.
enum TableValidator {
    /// Σweight per family must stay below this so `numgen random mod Σw` fits nft's 32-bit register.
    static let maximumWeightSum: UInt64 = 1 << 31

    static func validate(_ services: [DecodedService], log: inout IssueLog) {
        var firstName: [ServiceName: FieldSource] = [:]
        var firstFrontend: [Frontend: (ServiceName, FieldSource)] = [:]

        for decoded in services {
            let service = decoded.service
            if let earlier = firstName[service.name] {
                log.report(at: decoded.name.location, field: decoded.name.path,
                           "duplicate service name '\(service.name)' (first defined at \(earlier.location))")
            } else {
                firstName[service.name] = decoded.name
            }

            validateAddresses(decoded, log: &log)
            validatePorts(decoded, log: &log)
            validateEndpoints(decoded, log: &log)

            for (portIndex, port) in service.ports.enumerated() {
                for address in Set(service.addresses).sorted() {
                    let frontend = Frontend(address: address, port: port.port, transport: port.transport)
                    if let (owner, source) = firstFrontend[frontend], owner != service.name {
                        log.report(at: decoded.ports[portIndex].location, field: decoded.ports[portIndex].path,
                                   "\(frontend) is already used by service '\(owner)' (\(source.location))")
                    } else if firstFrontend[frontend] == nil {
                        firstFrontend[frontend] = (service.name, decoded.ports[portIndex])
                    }
                }
            }
        }
    }

    private static func validateAddresses(_ decoded: DecodedService, log: inout IssueLog) {
        var seen: Set<IPAddress> = []
        for (address, source) in zip(decoded.service.addresses, decoded.addresses) where !seen.insert(address).inserted {
            log.report(at: source.location, field: source.path, "address \(address) is listed twice")
        }
    }

    private static func validatePorts(_ decoded: DecodedService, log: inout IssueLog) {
        let ports = decoded.service.ports
        var seenNumbers: Set<String> = [], seenNames: Set<String> = []
        for (port, source) in zip(ports, decoded.ports) {
            if !seenNumbers.insert("\(port.transport)/\(port.port)").inserted {
                log.report(at: source.location, field: "\(source.path).port", "port \(port.transport)/\(port.port) is listed twice")
            }
            if ports.count > 1 && port.name.isEmpty {
                log.report(at: source.location, field: "\(source.path).name", "a service with several ports must name each of them")
            } else if !port.name.isEmpty && !seenNames.insert(port.name).inserted {
                log.report(at: source.location, field: "\(source.path).name", "port name '\(port.name)' is used twice")
            }
        }
    }

    private static func validateEndpoints(_ decoded: DecodedService, log: inout IssueLog) {
        let service = decoded.service
        let families = Set(service.addresses.map(\.family))
        let portNames = Set(service.ports.map(\.name))
        var seen: [EndpointIdentity: FieldSource] = [:]
        var weightSum: [IPFamily: UInt64] = [:]

        for (endpoint, source) in zip(service.endpoints, decoded.endpoints) {
            if !families.contains(endpoint.address.family) {
                let have = families.sorted().map(\.description).joined(separator: ", ")
                log.report(at: source.location, field: "\(source.path).address",
                           "endpoint \(endpoint.address) is \(endpoint.address.family) but the service's addresses are \(have)")
            }
            if endpoint.port != nil && service.ports.count > 1 {
                log.report(at: source.location, field: "\(source.path).port",
                           "'port' is ambiguous for a service with \(service.ports.count) ports; use 'ports: {name: number}'")
            }
            for name in endpoint.namedPorts.keys.sorted() where !portNames.contains(name) {
                log.report(at: source.location, field: "\(source.path).ports.\(name)",
                           "the service has no port named '\(name)'")
            }
            let identity = EndpointIdentity(address: endpoint.address, ports: service.ports.map { endpoint.targetPort(for: $0) })
            if let earlier = seen[identity] {
                log.report(at: source.location, field: "\(source.path).address",
                           "endpoint \(endpoint.address) with the same ports is listed twice (first at \(earlier.location))")
            } else {
                seen[identity] = source
            }
            weightSum[endpoint.address.family, default: 0] += UInt64(endpoint.weight)
        }
        for (family, sum) in weightSum.sorted(by: { $0.key < $1.key }) where sum >= maximumWeightSum {
            log.report(at: decoded.name.location, field: decoded.name.path,
                       "the \(family) endpoint weights add up to \(sum), more than nftables can draw from (\(maximumWeightSum - 1))")
        }
    }

    private struct Frontend: Hashable, CustomStringConvertible {
        var address: IPAddress
        var port: UInt16
        var transport: TransportProtocol
        var description: String { "\(SocketAddress(address: address, port: port))/\(transport)" }
    }

    private struct EndpointIdentity: Hashable {
        var address: IPAddress
        var ports: [UInt16]
    }
}
