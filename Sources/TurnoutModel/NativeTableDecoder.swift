/// Decodes Turnout's own table format (DESIGN.md §3): a document with a `services:` list.
///
/// Strict by design: unknown keys are errors, because a misspelt `wieght` silently defaulting to 1
/// is exactly the kind of mistake that sends canary traffic to the wrong place.
enum NativeTableDecoder {
    static let documentKeys: Set<String> = ["services"]
    static let serviceKeys: Set<String> = ["name", "addresses", "ports", "endpoints", "affinity"]
    static let portKeys: Set<String> = ["name", "port", "targetPort", "protocol"]
    static let endpointKeys: Set<String> = ["address", "port", "ports", "weight", "zone"]
    static let affinityKeys: Set<String> = ["clientIP"]
    static let clientIPKeys: Set<String> = ["timeoutSeconds"]

    /// Largest weight accepted; keeps Σweight of any realistic service inside nft's 32-bit numgen.
    static let maximumWeight = 1_000_000

    static func decode(_ root: YAMLCursor, log: inout IssueLog) -> [DecodedService] {
        guard let fields = root.fields(allowed: documentKeys, log: &log) else { return [] }
        guard let list = fields["services"] else {
            log.report(root, "missing key 'services'")
            return []
        }
        if list.isNull { return [] }
        return (list.sequence(log: &log) ?? []).compactMap { decodeService($0, log: &log) }
    }

    static func decodeService(_ cursor: YAMLCursor, log: inout IssueLog) -> DecodedService? {
        guard let fields = cursor.fields(allowed: serviceKeys, log: &log) else { return nil }
        let before = log.issues.count

        var name: ServiceName?
        if let nameCursor = fields["name"] {
            if let text = nameCursor.nonEmptyString(log: &log) {
                name = ServiceName(text)
                if name == nil {
                    log.report(nameCursor, "'\(text)' is not namespace/name (letters, digits, '.', '-', '_' in each half)")
                }
            }
        } else {
            log.report(cursor, "missing key 'name'")
        }

        var addresses: [IPAddress] = [], addressSources: [FieldSource] = []
        if let list = fields["addresses"]?.sequence(log: &log) {
            if list.isEmpty { log.report(fields["addresses"]!, "a service needs at least one address") }
            for item in list {
                if let address = item.address(log: &log) {
                    addresses.append(address)
                    addressSources.append(FieldSource(item))
                }
            }
        } else if fields["addresses"] == nil {
            log.report(cursor, "missing key 'addresses'")
        }

        var ports: [ServicePort] = [], portSources: [FieldSource] = []
        if let list = fields["ports"]?.sequence(log: &log) {
            if list.isEmpty { log.report(fields["ports"]!, "a service needs at least one port") }
            for item in list {
                if let port = decodePort(item, log: &log) {
                    ports.append(port)
                    portSources.append(FieldSource(item))
                }
            }
        } else if fields["ports"] == nil {
            log.report(cursor, "missing key 'ports'")
        }

        var endpoints: [Endpoint] = [], endpointSources: [FieldSource] = []
        if let list = fields["endpoints"], !list.isNull {
            for item in list.sequence(log: &log) ?? [] {
                if let endpoint = decodeEndpoint(item, log: &log) {
                    endpoints.append(endpoint)
                    endpointSources.append(FieldSource(item))
                }
            }
        }

        var affinity: SessionAffinity?
        if let affinityCursor = fields["affinity"] {
            affinity = decodeAffinity(affinityCursor, log: &log)
        }

        guard log.issues.count == before, let name, let nameCursor = fields["name"] else { return nil }
        return DecodedService(
            service: Service(name: name, addresses: addresses, ports: ports, endpoints: endpoints, affinity: affinity),
            name: FieldSource(nameCursor),
            addresses: addressSources,
            ports: portSources,
            endpoints: endpointSources
        )
    }

    private static func decodePort(_ cursor: YAMLCursor, log: inout IssueLog) -> ServicePort? {
        guard let fields = cursor.fields(allowed: portKeys, log: &log) else { return nil }
        let before = log.issues.count
        let name = fields["name"].flatMap { $0.nonEmptyString(log: &log) } ?? ""
        if !name.isEmpty, !ServiceName.isValidPart(Substring(name)) {
            log.report(fields["name"]!, "port name '\(name)' may use only letters, digits, '.', '-', '_'")
        }
        let port: UInt16?
        if let portCursor = fields["port"] {
            port = portCursor.port(log: &log)
        } else {
            port = nil
            log.report(cursor, "missing key 'port'")
        }
        let target = fields["targetPort"].flatMap { $0.port(log: &log) }
        var transport = TransportProtocol.tcp
        if let protocolCursor = fields["protocol"], let text = protocolCursor.string(log: &log) {
            if let parsed = TransportProtocol(rawValue: text.lowercased()) {
                transport = parsed
            } else {
                log.report(protocolCursor, "protocol must be tcp, udp or sctp, got '\(text)'")
            }
        }
        guard log.issues.count == before, let port else { return nil }
        return ServicePort(name: name, port: port, targetPort: target, transport: transport)
    }

    static func decodeEndpoint(_ cursor: YAMLCursor, log: inout IssueLog) -> Endpoint? {
        guard let fields = cursor.fields(allowed: endpointKeys, log: &log) else { return nil }
        let before = log.issues.count
        let address: IPAddress?
        if let addressCursor = fields["address"] {
            address = addressCursor.address(log: &log)
        } else {
            address = nil
            log.report(cursor, "missing key 'address'")
        }
        let weight = fields["weight"].flatMap { $0.integer(in: 0...maximumWeight, what: "weight", log: &log) } ?? 1
        let port = fields["port"].flatMap { $0.port(log: &log) }
        var namedPorts: [String: UInt16] = [:]
        if let portsCursor = fields["ports"], let map = portsCursor.fields(allowed: nil, log: &log) {
            for (portName, value) in map {
                if let number = value.port(log: &log) { namedPorts[portName] = number }
            }
        }
        let zone = fields["zone"].flatMap { $0.nonEmptyString(log: &log) }
        guard log.issues.count == before, let address else { return nil }
        return Endpoint(address: address, weight: UInt32(weight), port: port, namedPorts: namedPorts, zone: zone)
    }

    private static func decodeAffinity(_ cursor: YAMLCursor, log: inout IssueLog) -> SessionAffinity? {
        guard let fields = cursor.fields(allowed: affinityKeys, log: &log) else { return nil }
        guard let clientIP = fields["clientIP"] else {
            log.report(cursor, "missing key 'clientIP' (the only affinity Turnout implements)")
            return nil
        }
        if clientIP.isNull { return SessionAffinity() }
        guard let options = clientIP.fields(allowed: clientIPKeys, log: &log) else { return nil }
        guard let timeout = options["timeoutSeconds"] else { return SessionAffinity() }
        return timeout.integer(in: 1...Int(SessionAffinity.maximumTimeoutSeconds), what: "timeoutSeconds", log: &log)
            .map { SessionAffinity(timeoutSeconds: UInt32($0)) }
    }
}
