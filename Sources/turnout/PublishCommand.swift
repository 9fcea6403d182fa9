import ArgumentParser
import TurnoutControl
import TurnoutModel

/// `turnout publish`: writes a table into etcd, where `turnout apply --watch` and `turnout proxy`
/// with `--source etcd:URL` follow it. Needs no privileges.
struct PublishCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Write a table into etcd in one transaction (keys under /turnout/v1/).",
        discussion: """
        Each service is the key /turnout/v1/services/<namespace>/<name> and each endpoint the
        key /turnout/v1/endpoints/<namespace>/<name>/<address>[-<port>]. Only keys whose value
        changed are written, keys the table no longer has are deleted, all in one etcd
        transaction: a watcher sees the old table or the new one, never a mix. Publishing the
        same table again writes nothing.

        etcd allows 128 operations per transaction unless started with --max-txn-ops; a change
        larger than --max-txn-ops (one operation per changed or deleted key) is refused before
        anything is written, exit status 1.

        Examples:
          turnout publish -f rules/canary.yaml --etcd http://127.0.0.1:2379
          turnout publish -f tables/ --etcd http://10.0.0.5:2379 --max-txn-ops 1024
          turnout publish -f rules/canary.yaml --etcd http://10.0.0.5:2379,http://10.0.0.6:2379,http://10.0.0.7:2379
          turnout publish -f rules/canary.yaml --etcd https://10.0.0.5:2379 \\
            --etcd-cacert /etc/etcd/ca.crt --etcd-cert /etc/etcd/client.crt --etcd-key /etc/etcd/client.key

        Exit status: 0 published (or already there), 1 etcd unreachable or refused, 2 bad table.
        """
    )

    @Option(name: [.customShort("f"), .customLong("file")], help: "The table: a YAML/JSON file or a directory of them.")
    var file: String

    @Option(help: "etcd's client URL: http://HOST:PORT or https://HOST:PORT (HOST an IP address, [IPv6], localhost or a host name), or several members' separated by commas (the next is tried when one cannot be reached).")
    var etcd: String

    @Option(help: "The most operations one transaction may hold: etcd's --max-txn-ops (default 128).")
    var maxTxnOps: Int = 128

    @OptionGroup var tls: EtcdTLSOptions

    @OptionGroup var user: EtcdCredentialOptions

    func validate() throws {
        guard maxTxnOps > 0 else { throw ValidationError("--max-txn-ops must be at least 1") }
    }

    func run() throws {
        let tlsFiles = try tls.configuration()
        let credentials = try user.credentials()
        let client: EtcdClient
        do {
            client = try EtcdClient(url: etcd, tls: tlsFiles, credentials: credentials)
        } catch {
            throw BadInput(message: "--etcd \(error)")
        }
        // A bad table ends here (TableError: exit 2) before etcd is contacted.
        let table = try TableFile.load(file)
        let outcome: EtcdPublisher.Outcome
        do {
            outcome = try EtcdPublisher.publish(table, to: client, maximumOperations: maxTxnOps)
        } catch {
            throw RuntimeFailure(message: "turnout publish: \(error)")
        }
        let plan = outcome.plan
        for key in plan.puts { print("put     \(key)") }
        for key in plan.deletes { print("delete  \(key)") }
        if plan.operationCount == 0 {
            print("etcd \(client.url) already holds \(file): \(plan.unchanged) keys unchanged, nothing written (revision \(outcome.revision))")
        } else {
            print("published \(file) to etcd \(client.url): \(plan.puts.count) put, \(plan.deletes.count) deleted, "
                  + "\(plan.unchanged) unchanged; revision \(outcome.revision)")
        }
    }
}
