/// Writes tables in Turnout's own format as JSON that ``TableDecoder`` reads back to the same
/// table: the reconciler's last-good file, and the values `turnout publish` puts in etcd.
///
/// Deterministic (table order, fixed key order, no whitespace inside an object) so equal tables
/// give equal bytes. Defaults are spelled out (weight, protocol, targetPort) so a reader never
/// has to know them. Pure.
public enum TableEncoder {
    /// The whole table: `{"services": [...]}`, one service per line.
    public static func json(_ table: ServiceTable) -> String {
        let services = table.services.map { "  " + json($0) }
        return services.isEmpty ? "{\"services\": []}\n" : "{\"services\": [\n" + services.joined(separator: ",\n") + "\n]}\n"
    }

    /// One service as a JSON object; without its endpoints when `endpoints` is false (etcd keeps
    /// each endpoint under a key of its own).
    public static func json(_ service: Service, endpoints: Bool = true) -> String {
        var fields = [
            "\"name\":\(JSONValue.quoted("\(service.name)"))",
            "\"addresses\":[\(service.addresses.map { JSONValue.quoted("\($0)") }.joined(separator: ","))]",
            "\"ports\":[\(service.ports.map(json).joined(separator: ","))]",
        ]
        if endpoints { fields.append("\"endpoints\":[\(service.endpoints.map(json).joined(separator: ","))]") }
        if let affinity = service.affinity { fields.append("\"affinity\":{\"clientIP\":{\"timeoutSeconds\":\(affinity.timeoutSeconds)}}") }
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// One endpoint as a JSON object.
    public static func json(_ endpoint: Endpoint) -> String {
        var fields = ["\"address\":\(JSONValue.quoted("\(endpoint.address)"))", "\"weight\":\(endpoint.weight)"]
        if let port = endpoint.port { fields.append("\"port\":\(port)") }
        if !endpoint.namedPorts.isEmpty {
            let ports = endpoint.namedPorts.sorted { $0.key < $1.key }.map { "\(JSONValue.quoted($0.key)):\($0.value)" }
            fields.append("\"ports\":{\(ports.joined(separator: ","))}")
        }
        if let zone = endpoint.zone { fields.append("\"zone\":\(JSONValue.quoted(zone))") }
        return "{" + fields.joined(separator: ",") + "}"
    }

    private static func json(_ port: ServicePort) -> String {
        var fields: [String] = []
        if !port.name.isEmpty { fields.append("\"name\":\(JSONValue.quoted(port.name))") }
        fields += ["\"port\":\(port.port)", "\"targetPort\":\(port.targetPort)", "\"protocol\":\(JSONValue.quoted(port.transport.rawValue))"]
        return "{" + fields.joined(separator: ",") + "}"
    }
}
