import Foundation
import PackagePlugin

/// Compiles the BPF programs of a target (`Programs/*.bpf.c`) for the BPF target with the
/// toolchain's clang, and embeds each object in the target as a Swift file
/// (`enum <Name>Object { static let base64 }`), so turnout carries the exact programs it was
/// built with: nothing to install beside the binary, no compiler on the host that runs it.
///
/// The programs include the kernel's UAPI headers (linux-libc-dev), libbpf's
/// `bpf/bpf_helpers.h` (libbpf-dev) and the map layouts in `CTurnoutBPF/include`.
@main
struct SocketCaptureProgram: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let clang = try context.tool(named: "clang")
        let embed = try context.tool(named: "turnout-embed-object")
        let programs = target.directoryURL.appending(path: "Programs")
        let shared = context.package.directoryURL.appending(path: "Sources/CTurnoutBPF/include")
        let headers = try FileManager.default.contentsOfDirectory(at: shared, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "h" }
        let sources = try FileManager.default.contentsOfDirectory(at: programs, includingPropertiesForKeys: nil)
            .filter { $0.lastPathComponent.hasSuffix(".bpf.c") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        return sources.map { source in
            let stem = String(source.lastPathComponent.dropLast(".bpf.c".count))
            let swift = context.pluginWorkDirectoryURL.appending(path: "\(stem).bpf.swift")
            let name = stem.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined() + "Object"
            // One command that compiles and embeds: an object file declared as a command's output
            // would become a resource of the target (a Foundation bundle accessor in turnout).
            return .buildCommand(
                displayName: "Compiling and embedding BPF program \(source.lastPathComponent)",
                executable: embed.url,
                // -g: the maps' BTF, which the kernel needs for socket storage.
                arguments: [swift.path, name, clang.url.path, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror",
                            "-I/usr/include/\(Self.multiarch)", "-I\(shared.path)", "-c", source.path],
                inputFiles: [source] + headers,
                outputFiles: [swift])
        }
    }

    /// Debian's directory of the host's `asm/` headers, which the kernel's UAPI headers include.
    static var multiarch: String {
        #if arch(x86_64)
        "x86_64-linux-gnu"
        #elseif arch(arm64)
        "aarch64-linux-gnu"
        #else
        #error("add this architecture's Debian multiarch name")
        #endif
    }
}
