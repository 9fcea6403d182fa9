import Foundation
import TurnoutTestSupport
import Testing
import TurnoutModel

@Suite("Importing Kubernetes Service and EndpointSlice manifests")
struct KubernetesImportTests {
    static func slice(_ service: String, endpoints: String, ports: String = "  - {name: http, port: 8080}") -> String {
        """
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: \(service)-x, namespace: shop, labels: {kubernetes.io/service-name: \(service)}}
        addressType: IPv4
        ports:
        \(ports)
        endpoints:
        \(endpoints)
        """
    }

    static let webService = """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          clusterIP: 10.96.0.70
          ports: [{name: http, port: 80, targetPort: http}]
        sessionAffinityIgnored: true

        """

    @Test("ready endpoints are used and named target ports resolve through the slice")
    func readyEndpoints() throws {
        let text = Self.webService + Self.slice("web", endpoints: """
              - {addresses: [10.1.0.41], conditions: {ready: true}, zone: a}
              - {addresses: [10.1.0.42]}
              - {addresses: [10.1.0.43], conditions: {ready: false, serving: false}}
            """)
        let service = try #require(try TableDecoder.decode(text, name: "k8s.yaml").services.first)
        #expect(service.name.description == "shop/web")
        #expect(service.endpoints.map(\.address.description) == ["10.1.0.41", "10.1.0.42"])
        #expect(service.endpoints.map { $0.targetPort(for: service.ports[0]) } == [8080, 8080])
        #expect(service.endpoints[0].zone == "a")
    }

    @Test("with no ready endpoint, serving and terminating ones keep the service reachable")
    func terminatingFallback() throws {
        let text = Self.webService + Self.slice("web", endpoints: """
              - {addresses: [10.1.0.41], conditions: {ready: false, serving: true, terminating: true}}
              - {addresses: [10.1.0.42], conditions: {ready: false, serving: false, terminating: true}}
            """)
        let service = try #require(try TableDecoder.decode(text, name: "k8s.yaml").services.first)
        #expect(service.endpoints.map(\.address.description) == ["10.1.0.41"])
    }

    @Test("headless and ExternalName services are skipped; other kinds are ignored")
    func skipped() throws {
        let text = """
            apiVersion: v1
            kind: Service
            metadata: {name: db}
            spec: {clusterIP: None, ports: [{port: 5432}]}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: ext}
            spec: {type: ExternalName, externalName: example.org}
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: c}
            """
        #expect(try TableDecoder.decode(text, name: "k8s.yaml").services.isEmpty)
    }

    @Test("a List of items, session affinity and the default namespace")
    func listAndAffinity() throws {
        let text = """
            apiVersion: v1
            kind: List
            items:
              - apiVersion: v1
                kind: Service
                metadata: {name: cart}
                spec:
                  clusterIPs: [10.96.0.9, "fd00::9"]
                  ports: [{port: 80, targetPort: 8080, protocol: TCP}]
                  sessionAffinity: ClientIP
                  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}
            """
        let service = try #require(try TableDecoder.decode(text, name: "k8s.yaml").services.first)
        #expect(service.name.description == "default/cart")
        #expect(service.addresses.count == 2)
        #expect(service.affinity == SessionAffinity(timeoutSeconds: 300))
        #expect(service.ports[0].targetPort == 8080)
    }

    @Test("a Service without an assigned clusterIP → error naming spec")
    func missingClusterIP() throws {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80}]\n"
        let error = #expect(throws: TableError.self) { try TableDecoder.decode(text, name: "k8s.yaml") }
        #expect(error?.issues.first?.message.contains("clusterIP") == true)
        #expect(error?.issues.first?.location.line == 5)
    }

    @Test("the rules/kubernetes.yaml example imports two services with their endpoints")
    func example() throws {
        let table = try TableDecoder.decode(try String(contentsOfFile: Repository.path("rules/kubernetes.yaml"), encoding: .utf8),
                                            name: "kubernetes.yaml")
        #expect(table.services.map(\.name.description) == ["shop/legacy", "shop/web"])
        #expect(table.services[1].endpoints.count == 2)
        #expect(table.services[1].endpoints.map { $0.targetPort(for: table.services[1].ports[1]) } == [9090, 9090])
    }
}
