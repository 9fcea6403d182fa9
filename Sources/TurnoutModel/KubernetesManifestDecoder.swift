/// Imports Kubernetes `Service` and `discovery.k8s.io/v1` `EndpointSlice` manifests.
///
/// Follows kube-proxy's reading of them: a service needs an assigned `clusterIP` (export with
/// `kubectl get -o yaml`); headless and `ExternalName` services are skipped; an endpoint is used
/// when `ready` (unset counts as ready), and only when a service has no ready endpoint are its
/// `serving` + `terminating` ones used, so connections drain instead of failing. Each endpoint's
/// port per service port comes from its slice's port of the same name. Unknown keys are ignored:
/// manifests carry many fields Turnout has no use for. Other kinds are ignored, `List` is unpacked.
struct KubernetesManifestDecoder {

    private struct SliceEndpoint {
        var address: IPAddress
        var namedPorts: [String: UInt16]
        var zone: String?
        var ready: Bool
        var servingTerminating: Bool
        var source: FieldSource
    }

    private var services: [DecodedService] = []
    private var slices: [ServiceName: [SliceEndpoint]] = [:]

    mutating func add(_ root: YAMLCursor, log: inout IssueLog) {
        guard let fields = root.fields(allowed: nil, log: &log) else { return }
        let kind = fields["kind"].flatMap { $0.string(log: &log) } ?? ""
        switch kind {
        case "List":
            for item in fields["items"]?.sequence(log: &log) ?? [] { add(item, log: &log) }
        case "Service":
            addService(root, fields, log: &log)
        case "EndpointSlice":
            addSlice(root, fields, log: &log)
        default:
            break
        }
    }

    /// The imported services with their endpoints; call once every document has been added.
    func services(log: inout IssueLog) -> [DecodedService] {
        services.map { imported in
            var decoded = imported
            let portNames = Set(decoded.service.ports.map(\.name))
            let candidates = slices[decoded.service.name] ?? []
            let ready = candidates.filter(\.ready)
            let chosen = ready.isEmpty ? candidates.filter(\.servingTerminating) : ready
            var seen: Set<String> = []
            for endpoint in chosen {
                let key = "\(endpoint.address) \(endpoint.namedPorts.sorted { $0.key < $1.key })"
                guard seen.insert(key).inserted else { continue } // the same endpoint in two slices during a rollout
                // A slice port the Service no longer has (a stale slice) is not an error of the table.
                let namedPorts = endpoint.namedPorts.filter { portNames.contains($0.key) }
                decoded.service.endpoints.append(Endpoint(address: endpoint.address, namedPorts: namedPorts, zone: endpoint.zone))
                decoded.endpoints.append(endpoint.source)
            }
            return decoded
        }
    }

    private static func name(_ root: YAMLCursor, _ fields: [String: YAMLCursor], log: inout IssueLog) -> (ServiceName, YAMLCursor, [String: YAMLCursor])? {
        guard let metadata = fields["metadata"], let meta = metadata.fields(allowed: nil, log: &log) else {
            log.report(root, "missing key 'metadata'")
            return nil
        }
        guard let nameCursor = meta["name"], let name = nameCursor.nonEmptyString(log: &log) else {
            if meta["name"] == nil { log.report(metadata, "missing key 'name'") }
            return nil
        }
        let namespace = meta["namespace"].flatMap { $0.string(log: &log) } ?? "default"
        guard let serviceName = ServiceName(namespace: namespace, name: name) else {
            log.report(nameCursor, "'\(namespace)/\(name)' is not a valid namespace/name")
            return nil
        }
        return (serviceName, nameCursor, meta)
    }

    private mutating func addService(_ root: YAMLCursor, _ fields: [String: YAMLCursor], log: inout IssueLog) {
        guard let (name, nameCursor, _) = Self.name(root, fields, log: &log) else { return }
        guard let specCursor = fields["spec"], let spec = specCursor.fields(allowed: nil, log: &log) else {
            log.report(root, "missing key 'spec'")
            return
        }
        let type = spec["type"].flatMap { $0.string(log: &log) } ?? "ClusterIP"
        if type == "ExternalName" { return }

        var addressCursors: [YAMLCursor] = []
        if let list = spec["clusterIPs"]?.sequence(log: &log), !list.isEmpty {
            addressCursors = list
        } else if let single = spec["clusterIP"] {
            addressCursors = [single]
        }
        let texts = addressCursors.compactMap { $0.string(log: &log) }
        if texts.contains("None") { return } // headless: DNS only, nothing to intercept
        guard !addressCursors.isEmpty else {
            log.report(specCursor, "missing key 'clusterIP': import a Service as the cluster returns it (kubectl get -o yaml)")
            return
        }
        let before = log.issues.count
        let addresses = addressCursors.compactMap { $0.address(log: &log) }

        var ports: [ServicePort] = [], portSources: [FieldSource] = []
        for item in spec["ports"]?.sequence(log: &log) ?? [] {
            guard let port = item.fields(allowed: nil, log: &log) else { continue }
            guard let number = port["port"].flatMap({ $0.port(log: &log) }) else {
                if port["port"] == nil { log.report(item, "missing key 'port'") }
                continue
            }
            let transportText = port["protocol"].flatMap { $0.string(log: &log) } ?? "TCP"
            guard let transport = TransportProtocol(rawValue: transportText.lowercased()) else {
                log.report(port["protocol"]!, "protocol must be TCP, UDP or SCTP, got '\(transportText)'")
                continue
            }
            // A named targetPort ("http") is resolved per endpoint from its slice's ports; an endpoint
            // whose slice lacks the port falls back to the port number itself.
            var target: UInt16? = nil
            if let targetCursor = port["targetPort"], let targetText = targetCursor.node.scalarText, Int(targetText) != nil {
                target = targetCursor.port(log: &log)
            }
            let portName = port["name"].flatMap { $0.string(log: &log) } ?? ""
            ports.append(ServicePort(name: portName, port: number, targetPort: target, transport: transport))
            portSources.append(FieldSource(item))
        }
        if ports.isEmpty && log.issues.count == before {
            log.report(specCursor, "a Service needs at least one port")
        }

        var affinity: SessionAffinity?
        if spec["sessionAffinity"].flatMap({ $0.string(log: &log) }) == "ClientIP" {
            affinity = SessionAffinity()
            if let config = spec["sessionAffinityConfig"]?.fields(allowed: nil, log: &log),
               let clientIP = config["clientIP"]?.fields(allowed: nil, log: &log),
               let timeout = clientIP["timeoutSeconds"]?.integer(in: 1...Int(SessionAffinity.maximumTimeoutSeconds), what: "timeoutSeconds", log: &log) {
                affinity = SessionAffinity(timeoutSeconds: UInt32(timeout))
            }
        }
        guard log.issues.count == before else { return }
        let service = Service(name: name, addresses: addresses, ports: ports, affinity: affinity)
        services.append(DecodedService(service: service, name: FieldSource(nameCursor), addresses: addressCursors.map(FieldSource.init),
                                       ports: portSources, endpoints: []))
    }

    private mutating func addSlice(_ root: YAMLCursor, _ fields: [String: YAMLCursor], log: inout IssueLog) {
        guard let (_, _, meta) = Self.name(root, fields, log: &log) else { return }
        let namespace = meta["namespace"].flatMap { $0.string(log: &log) } ?? "default"
        guard let labels = meta["labels"]?.fields(allowed: nil, log: &log),
              let owner = labels["kubernetes.io/service-name"]?.string(log: &log),
              let serviceName = ServiceName(namespace: namespace, name: owner) else {
            log.report(meta["name"] ?? root, "an EndpointSlice needs the label kubernetes.io/service-name")
            return
        }
        let addressType = fields["addressType"].flatMap { $0.string(log: &log) } ?? "IPv4"
        guard addressType == "IPv4" || addressType == "IPv6" else { return } // FQDN slices name no address to NAT to

        var slicePorts: [String: UInt16] = [:]
        for item in fields["ports"]?.sequence(log: &log) ?? [] {
            guard let port = item.fields(allowed: nil, log: &log), let number = port["port"]?.port(log: &log) else { continue }
            slicePorts[port["name"].flatMap { $0.string(log: &log) } ?? ""] = number
        }

        for item in fields["endpoints"]?.sequence(log: &log) ?? [] {
            guard let endpoint = item.fields(allowed: nil, log: &log) else { continue }
            // kube-proxy uses the first address only; the API allows more for future use.
            guard let first = endpoint["addresses"]?.sequence(log: &log)?.first, let address = first.address(log: &log) else {
                if endpoint["addresses"] == nil { log.report(item, "missing key 'addresses'") }
                continue
            }
            let conditions = endpoint["conditions"]?.fields(allowed: nil, log: &log) ?? [:]
            let ready = Self.flag(conditions["ready"], default: true, log: &log)
            let serving = Self.flag(conditions["serving"], default: ready, log: &log)
            let terminating = Self.flag(conditions["terminating"], default: false, log: &log)
            slices[serviceName, default: []].append(SliceEndpoint(
                address: address, namedPorts: slicePorts,
                zone: endpoint["zone"].flatMap { $0.string(log: &log) },
                ready: ready, servingTerminating: serving && terminating, source: FieldSource(item)))
        }
    }

    private static func flag(_ cursor: YAMLCursor?, default value: Bool, log: inout IssueLog) -> Bool {
        guard let cursor, !cursor.isNull, let text = cursor.string(log: &log) else { return value }
        switch text {
        case "true": return true
        case "false": return false
        default:
            log.report(cursor, "expected true or false, got '\(text)'")
            return value
        }
    }
}
