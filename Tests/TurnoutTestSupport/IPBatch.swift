/// `ip -batch -`: the labs' link, address and route commands, one a line, in one `ip` process.
///
/// One process for a lab's whole wiring instead of one per command: a lab makes dozens, and
/// each `ip` start costs more than the command. Throws ``ServiceLabError`` with ip's complaint
/// and the commands it was given.
public enum IPBatch {
    /// Runs `ip [options] -batch -` with `commands`, one a line (`options`: `["-n", NAME]` to
    /// work inside a namespace, or nothing for the host's).
    public static func run(_ commands: [String], options: [String] = []) throws {
        let arguments = options + ["-batch", "-"]
        let result = try Subprocess.run(try Subprocess.locate("ip"), arguments,
                                        input: commands.joined(separator: "\n") + "\n", timeLimit: .seconds(30))
        guard result.status == 0 else {
            throw ServiceLabError("ip \(arguments.joined(separator: " ")) failed: \(result.standardError)"
                                  + "\ncommands:\n" + commands.joined(separator: "\n"))
        }
    }

    /// Runs `commands` inside `namespace` (`ip -n NAME -batch -`).
    public static func run(in namespace: NetworkNamespace, _ commands: [String]) throws {
        try run(commands, options: ["-n", namespace.name])
    }
}
