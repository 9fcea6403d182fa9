// swift-tools-version:6.1
import PackageDescription

// Layering (DESIGN.md §2): TurnoutModel ← TurnoutRules ← TurnoutNetlink/TurnoutProxy/TurnoutSocketCapture ← TurnoutControl ← turnout.
// A target depends only on targets to its left.
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "turnout",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "turnout", targets: ["turnout"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // libyaml (Debian's libyaml-dev): the YAML parser under the table decoder. Linked from its
        // static archive (see the module map), so no pkg-config: its -lyaml would add the shared one.
        .systemLibrary(name: "CYAML", providers: [.apt(["libyaml-dev"])]),
        .target(name: "TurnoutModel", dependencies: ["CYAML"], swiftSettings: strict),
        .target(name: "TurnoutRules", dependencies: ["TurnoutModel"], swiftSettings: strict),
        // libnftnl + libmnl (Debian's libnftnl-dev, libmnl-dev), linked by the module map: libnftnl
        // from its static archive, libmnl shared (Debian ships no libmnl.a). No pkg-config: its
        // -lnftnl would add the shared libnftnl.
        .systemLibrary(name: "CNetfilter", providers: [.apt(["libnftnl-dev", "libmnl-dev"])]),
        // Wrappers for Linux calls Glibc exports only under _GNU_SOURCE; every symbol prefixed CTurnoutLinux_.
        .target(name: "CTurnoutLinux", cSettings: [.define("_GNU_SOURCE")]),
        // OpenSSL 3 for the etcd client's https, loaded with dlopen on first use (so a proxy never
        // maps it): Debian's libssl-dev for the headers, libssl3 at run time; every symbol
        // prefixed CTurnoutTLS_.
        .target(name: "CTurnoutTLS"),
        // io_uring (Debian's liburing-dev) for the proxy's completion workers: one ring and its
        // provided buffers behind a few request shapes; every symbol prefixed CTurnoutUring_.
        // Linked from liburing's static archive (`-l:liburing.a`), so a host needs no liburing2.
        .target(name: "CTurnoutUring", cSettings: [.define("_GNU_SOURCE")], linkerSettings: [.linkedLibrary(":liburing.a")]),
        // libbpf (Debian's libbpf-dev) for the socket capture of `init --backend bpf`: open the
        // embedded BPF object, fill its maps, attach or replace pinned links; every symbol
        // prefixed CTurnoutBPF_. libbpf from its static archive (a host needs no libbpf1), with
        // libelf and zlib shared (libelf1 comes with iproute2).
        .target(name: "CTurnoutBPF", linkerSettings: [.linkedLibrary(":libbpf.a"), .linkedLibrary("elf"), .linkedLibrary("z")]),
        // Runs at build time only: embeds a compiled BPF object in a Swift file (see the plugin).
        .executableTarget(name: "turnout-embed-object", path: "BuildTools/EmbedObject"),
        // Compiles Programs/*.bpf.c of a target with the toolchain's clang for the BPF target.
        .plugin(name: "SocketCaptureProgram", capability: .buildTool(), dependencies: ["turnout-embed-object"]),
        // Capture at connect(2) and at the listener lookup instead of NAT (`init --backend bpf`).
        .target(name: "TurnoutSocketCapture", dependencies: ["CTurnoutBPF", "CTurnoutLinux", "TurnoutModel", "TurnoutRules"], exclude: ["Programs"],
                swiftSettings: strict, plugins: ["SocketCaptureProgram"]),
        .target(name: "TurnoutNetlink", dependencies: ["CNetfilter", "CTurnoutLinux", "TurnoutModel", "TurnoutRules"], swiftSettings: strict),
        // The data plane: sockets, original destination, (with issue 5) the splice workers.
        .target(name: "TurnoutProxy", dependencies: ["CTurnoutLinux", "CTurnoutUring", "TurnoutModel", "TurnoutRules"], swiftSettings: strict),
        .target(name: "TurnoutControl", dependencies: ["CTurnoutLinux", "CTurnoutTLS", "TurnoutModel", "TurnoutRules", "TurnoutNetlink", "TurnoutProxy"], swiftSettings: strict),
        .executableTarget(
            name: "turnout",
            dependencies: [
                "TurnoutModel", "TurnoutRules", "TurnoutNetlink", "TurnoutProxy", "TurnoutSocketCapture", "TurnoutControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "turnout-bench-compile",
            dependencies: ["TurnoutModel", "TurnoutRules", "TurnoutBenchmarkSupport"],
            path: "Benchmarks/CompileBenchmark",
            swiftSettings: strict
        ),
        // Shared by the benchmarks: synthetic tables, samples, text tables, child processes.
        .target(name: "TurnoutBenchmarkSupport", dependencies: ["TurnoutModel"], path: "Benchmarks/BenchmarkSupport", swiftSettings: strict),
        .executableTarget(
            name: "turnout-bench-apply",
            dependencies: ["CTurnoutLinux", "TurnoutModel", "TurnoutRules", "TurnoutNetlink", "TurnoutControl", "TurnoutBenchmarkSupport"],
            path: "Benchmarks/ApplyBenchmark",
            swiftSettings: strict
        ),
        // Shared by every test target: the network-namespace lab and the helpers that run real tools.
        // TurnoutProxy for the socket decoding and SO_ORIGINAL_DST the recording proxy shares with the product;
        // TurnoutSocketCapture for the filesystem check LabCgroup shares with it.
        .target(name: "TurnoutTestSupport", dependencies: ["TurnoutModel", "TurnoutProxy", "TurnoutSocketCapture"], path: "Tests/TurnoutTestSupport", swiftSettings: strict),
        .testTarget(name: "TurnoutModelTests", dependencies: ["TurnoutModel", "TurnoutTestSupport"], swiftSettings: strict),
        .testTarget(name: "TurnoutRulesTests", dependencies: ["CTurnoutBPF", "TurnoutModel", "TurnoutRules", "TurnoutSocketCapture", "TurnoutControl", "TurnoutTestSupport"], swiftSettings: strict),
        .testTarget(name: "TurnoutNetlinkTests", dependencies: ["TurnoutModel", "TurnoutRules", "TurnoutNetlink", "TurnoutControl", "TurnoutTestSupport"], swiftSettings: strict),
        // TurnoutControl only for TableFile, to load rules/ examples as the CLI does (as TurnoutRulesTests).
        .testTarget(name: "TurnoutProxyTests", dependencies: ["TurnoutModel", "TurnoutRules", "TurnoutProxy", "TurnoutControl", "TurnoutTestSupport"], swiftSettings: strict),
        .testTarget(name: "TurnoutControlTests", dependencies: ["TurnoutModel", "TurnoutRules", "TurnoutNetlink", "TurnoutProxy", "TurnoutControl", "TurnoutTestSupport"], swiftSettings: strict),
        .testTarget(name: "TurnoutCLITests", dependencies: ["turnout", "TurnoutProxy", "TurnoutTestSupport"], swiftSettings: strict),
    ]
)
