/// `rules/canary.yaml`'s service (shop/checkout on 10.96.0.20:80 → 10.1.0.5:8080 and
/// 10.1.0.6:8081) with the two weights a test chooses, as table text.
public enum CanaryTable {
    public static func yaml(stable: UInt32, canary: UInt32) -> String {
        """
        services:
          - name: shop/checkout
            addresses: [10.96.0.20]
            ports:
              - {name: http, port: 80, targetPort: 8080}
            endpoints:
              - {address: 10.1.0.5, weight: \(stable)}
              - {address: 10.1.0.6, port: 8081, weight: \(canary)}
        """
    }
}
