// swift-tools-version:6.0
//
// PipelineStorage: producers append to a durable local spool; `spool-drain` delivers it to S3 exactly once.
// Dependency arrows point one way: executables → PipelineStorage/Drain → StorageDecorators → Spool and S3 → Hashing
// → C targets.
// `PipelineStorage` never imports a networking module: the writer cannot touch the network by construction.
import PackageDescription

let package = Package(
    name: "PipelineStorage",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "PipelineStorage", targets: ["PipelineStorage"]),
        .library(name: "Spool", targets: ["Spool"]),
        .library(name: "S3", targets: ["S3"]),
        .library(name: "CredentialChain", targets: ["CredentialChain"]),
        .executable(name: "spool-put", targets: ["spool-put"]),
        .executable(name: "spool-inspect", targets: ["spool-inspect"]),
        .executable(name: "spool-bench", targets: ["spool-bench"]),
        .executable(name: "spool-drain", targets: ["spool-drain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", exact: "0.9.20"),
    ],
    targets: [
        // System libraries: a module map and a shim header each, nothing else.
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]),
        .systemLibrary(
            name: "CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"]), .brew(["curl"])]),
        .systemLibrary(
            name: "COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]),
        // zlib's streaming inflate for gzip and zip members. Not "CZlib": ZIPFoundation's own zlib module has that name.
        .systemLibrary(
            name: "CZlibStream", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),
        // CRC32C with the SSE4.2 instruction where the CPU has it: a checksum S3 verifies, computed at disk speed.
        .target(name: "CCRC32C"),
        // Up to four SHA-256 digests at once with the SHA extensions: four multipart parts hashed in ~57% of the time.
        .target(name: "CSHA256Multi"),
        .target(name: "CProcessSpawn"),

        // Blocking calls (file I/O, libcurl, child programs) on threads of their own, off the task pool.
        .target(name: "BlockingWork"),

        // Digests and checksums behind a small Swift surface; the only importer of COpenSSL.
        .target(name: "Hashing", dependencies: ["COpenSSL", "CCRC32C", "CSHA256Multi"]),

        // SigV4, credentials, the libcurl transport and the S3 operations. Knows nothing of the spool.
        .target(name: "S3", dependencies: ["CCurl", "Hashing", "BlockingWork"]),

        // The AWS credential chain in botocore's order: environment, shared files and profiles, STS AssumeRole and
        // AssumeRoleWithWebIdentity, credential_process, container credentials, EC2 instance metadata; caching and
        // refresh before expiry.
        .target(name: "CredentialChain", dependencies: ["S3", "Hashing", "BlockingWork", "CProcessSpawn"]),

        // The durable spool: SQLite index, payload files, states, claims, audit. No networking.
        .target(
            name: "Spool",
            dependencies: ["CSQLite", "Hashing", "BlockingWork"],
            plugins: ["EmbedSchemaPlugin"]),

        // The delivery engine: claims, leases, conditional writes, multipart resume, backoff, pauses, cleanup —
        // over an ObjectStore (S3 or a local directory).
        .target(
            name: "Drain",
            dependencies: [
                "Spool", "S3", "CredentialChain", "Hashing", "BlockingWork",
                .product(name: "Logging", package: "swift-log"),
            ]),

        // The storage abstraction (ResourceStorage, ResourceBundle) and the decorators over it: unzip resources,
        // bundle resources into one zip. Writes only to the spool; no networking.
        .target(
            name: "StorageDecorators",
            dependencies: [
                "Spool", "Hashing", "CZlibStream", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]),

        // The public writer API; re-exports Spool's value types and StorageDecorators.
        .target(name: "PipelineStorage", dependencies: ["Spool", "StorageDecorators"]),

        // Shared by the command-line tools: tables, units, JSON output, common options.
        .target(
            name: "CommandLineSupport",
            dependencies: ["Spool", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .executableTarget(
            name: "spool-put",
            dependencies: [
                "PipelineStorage", "CommandLineSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "spool-drain",
            dependencies: [
                "Drain", "CredentialChain", "CommandLineSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "spool-inspect",
            dependencies: [
                "Spool", "Drain", "CommandLineSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "spool-bench",
            dependencies: [
                "PipelineStorage", "CommandLineSupport", "S3", "Hashing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // A producer process for crash, concurrency and chaos tests: writes bundles and reports each durable write.
        .executableTarget(
            name: "spool-load",
            dependencies: [
                "PipelineStorage", "CommandLineSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Fuzzes the parsers of outside bytes (S3's XML, the configuration): a deterministic mutation fuzzer, or a
        // libFuzzer binary when built with -sanitize=fuzzer -DLIBFUZZER (tools/chaos/fuzz).
        .executableTarget(
            name: "pipeline-fuzz",
            dependencies: [
                "S3", "CredentialChain", "PipelineStorage", "CommandLineSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Build-time: embeds schema/*.sql into the Spool module so the migrations ship inside the binary.
        .executableTarget(name: "embed-schema", path: "Sources/embed-schema"),
        .plugin(
            name: "EmbedSchemaPlugin", capability: .buildTool(), dependencies: ["embed-schema"],
            path: "Sources/EmbedSchemaPlugin"),

        .testTarget(name: "HashingTests", dependencies: ["Hashing"]),
        // Launches moto_server (SigV4 auth on) and the fault proxy for the integration tests of every module.
        .target(name: "LocalS3Support", dependencies: ["S3", "BlockingWork"], path: "Tests/LocalS3Support"),
        .testTarget(name: "S3Tests", dependencies: ["S3", "Hashing", "LocalS3Support"], exclude: ["testdata"]),
        .testTarget(
            name: "CredentialChainTests",
            dependencies: [
                "CredentialChain", "S3", "Drain", "Spool", "PipelineStorage", "LocalS3Support", "SpoolTestSupport",
            ]),
        .testTarget(
            name: "DrainTests",
            dependencies: ["Drain", "Spool", "S3", "Hashing", "PipelineStorage", "LocalS3Support", "SpoolTestSupport"]),
        // Assertions and helpers (eventually, unusedPID) shared by the spool's test targets.
        .target(name: "SpoolTestSupport", dependencies: ["Spool", "BlockingWork"], path: "Tests/SpoolTestSupport"),
        .testTarget(name: "SpoolTests", dependencies: ["Spool", "Hashing", "CSQLite", "SpoolTestSupport"]),
        .testTarget(
            name: "PipelineStorageTests", dependencies: ["PipelineStorage", "Spool", "Hashing", "SpoolTestSupport"]),
        .testTarget(
            name: "StorageDecoratorsTests",
            dependencies: [
                "StorageDecorators", "PipelineStorage", "Spool", "Hashing", "SpoolTestSupport", "LocalS3Support",
            ]),
        .testTarget(
            name: "CommandLineTests",
            dependencies: [
                "Spool", "Hashing", "S3", "LocalS3Support", "SpoolTestSupport", "PipelineStorage", "CommandLineSupport",
                "spool-put", "spool-inspect", "spool-bench", "spool-load", "spool-drain", "pipeline-fuzz",
            ]),
    ]
)
