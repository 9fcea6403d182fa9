import ArgumentParser
import TurnoutModel
import TurnoutRules

extension DispatchMode: ExpressibleByArgument {}

/// How a table's services are dispatched: by the kernel, or to the local proxy.
struct DispatchOptions: ParsableArguments {
    @Option(help: "direct: the kernel picks the endpoint; proxy: TCP goes to the local proxy.")
    var mode: DispatchMode = .direct

    @Option(help: "The proxy port that proxy mode redirects TCP to.")
    var proxyPort: UInt16 = ServiceCompilerOptions.defaultProxyPort

    var compilerOptions: ServiceCompilerOptions {
        ServiceCompilerOptions(mode: mode, proxyPort: proxyPort)
    }

    func validate() throws {
        guard proxyPort != 0 else { throw ValidationError("--proxy-port must be between 1 and 65535") }
    }
}

/// The options every command that compiles a table file shares: the table and how to dispatch it.
struct RuleOptions: ParsableArguments {
    @Option(name: [.customShort("f"), .customLong("file")], help: "The table: a YAML/JSON file or a directory of them.")
    var file: String

    @OptionGroup var dispatch: DispatchOptions

    var mode: DispatchMode { dispatch.mode }
    var compilerOptions: ServiceCompilerOptions { dispatch.compilerOptions }
}
