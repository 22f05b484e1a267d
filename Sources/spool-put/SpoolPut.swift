import ArgumentParser
import CommandLineSupport
import Foundation
import PipelineStorage

/// Writes one resource (a file or standard input) into a bundle of the spool: the shell's way to produce.
@main
struct SpoolPut: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-put",
        abstract: "Write one resource (a file or standard input) into a bundle of the spool.",
        discussion: """
            The resource is durable in the spool when the command exits 0; spool-drain delivers it. A new bundle \
            needs a destination (--bucket or --directory); later calls for the same bundle reuse it. Add --seal to \
            the last call (or use --seal-only) so that _bundle.json is written after the bundle's resources.

            With --unzip the input is expanded first: gzip is stored decompressed ('.gz' dropped from the URL), a \
            zip as one resource per member ('{url}/{member}'); a corrupt archive is stored unchanged with an \
            'unzip-warning' metadata entry; zip-slip members and zip bombs are refused (exit 65).

            Exit status: 0 written; 65 invalid input; 73 spool not writable or too new; 75 spool full or busy \
            (retry later); 1 other failure.
            """)

    @OptionGroup var spoolDirectory: SpoolDirectoryOptions

    @Option(help: "Bundle id (letters, digits, . _ - ~ = , @). Default: a new sortable id, printed.")
    var bundle: String?

    @Option(help: "The URL the resource was fetched from.")
    var url: String?

    @Option(help: "Media type of the resource.")
    var contentType = "application/octet-stream"

    @Option(help: "HTTP status of the fetch (100...599).")
    var statusCode = 200

    @Option(name: .customLong("meta"), help: ArgumentHelp("Resource metadata, repeatable.", valueName: "key=value"))
    var metadata: [String] = []

    @Option(
        name: .customLong("bundle-meta"),
        help: ArgumentHelp("Bundle metadata when the bundle is created, repeatable.", valueName: "key=value"))
    var bundleMetadata: [String] = []

    @Option(help: "Key segment after the sequence number. Default: the URL's last path segment.")
    var name: String?

    @Flag(help: "Expand a gzip or zip input first (see above).")
    var unzip = false

    @Flag(help: "Seal the bundle after writing: no more resources; _bundle.json is delivered after them.")
    var seal = false

    @Flag(help: "Only seal the bundle; write nothing.")
    var sealOnly = false

    @Option(help: "fsync (each write its own commit) or batched (group commit).")
    var durability: DurabilityChoice = .fsync

    @OptionGroup(title: "Destination (for a new bundle)") var destination: DestinationOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Argument(help: "The file to spool; '-' or nothing reads standard input.")
    var file: String?

    func validate() throws {
        if !sealOnly && url == nil { throw ValidationError("--url is required (the URL the resource came from)") }
        if sealOnly && bundle == nil { throw ValidationError("--seal-only needs --bundle") }
        if sealOnly && file != nil { throw ValidationError("--seal-only writes nothing; drop the file argument") }
    }

    func run() async throws {
        try await runReportingErrors(tool: "spool-put") {
            var options = SpoolOptions()
            options.durability = durability == .batched ? .batched : .fsync
            let spool = try SpoolStore.open(spoolDirectory.directory, options: options)
            let bundleID = bundle ?? PipelineStorage.newBundleID()
            if sealOnly {
                let record = try await spool.sealBundle(bundleID)
                try report(PutResult(bundleID: bundleID, sealed: true, resourceCount: record.resourceCount))
                return
            }
            let (destinationID, prefix) = try await resolveDestination(spool: spool, bundleID: bundleID)
            _ = try await spool.openBundle(
                bundleID, destinationID: destinationID, keyPrefix: prefix,
                metadata: try parseKeyValuePairs(bundleMetadata, option: "--bundle-meta"))
            let draft = ResourceDraft(
                url: url!, contentType: contentType, statusCode: statusCode,
                metadata: try parseKeyValuePairs(metadata, option: "--meta"), name: name)
            let chunks: FileChunks
            if let file, file != "-" {
                chunks = FileChunks(path: file)
            } else {
                if isatty(STDIN_FILENO) == 1 {
                    throw ValidationError("no input: pass a file, or pipe the resource into standard input")
                }
                chunks = FileChunks(fileDescriptor: STDIN_FILENO)
            }
            var result = PutResult(bundleID: bundleID, sealed: seal)
            if unzip {
                let bundle = try UnzippingBundle(
                    base: BundleWriter(id: bundleID, spool: spool), scratchDirectory: spool.layout.temporaryDirectory)
                let stored = try await bundle.writeResource(draft, stream: chunks)
                result.resources = stored.compactMap(\.spooled)
                result.resource = result.resources?.first
                result.unzipWarning = stored.compactMap { $0.metadata[DecoratorMetadata.unzipWarning] }.first
            } else {
                result.resource = try await spool.writeResource(bundleID: bundleID, draft: draft, chunks: chunks)
            }
            if seal { result.resourceCount = try await spool.sealBundle(bundleID).resourceCount }
            try report(result)
        }
    }

    /// The destination for this bundle: from the options for a new bundle, or the bundle's own when it exists.
    private func resolveDestination(spool: SpoolStore, bundleID: String) async throws -> (Int64, String) {
        let existing = try await spool.bundle(bundleID)
        guard let spec = try destination.spec() else {
            guard let existing else {
                throw ValidationError(
                    "bundle '\(bundleID)' is new: say where it goes with --bucket NAME or --directory PATH")
            }
            return (existing.destinationID, existing.keyPrefix)
        }
        return (try await spool.registerDestination(spec), try ObjectKey.normalizePrefix(destination.prefix ?? ""))
    }

    private func report(_ result: PutResult) throws {
        if json {
            try JSONOutput.print(result)
            return
        }
        for resource in result.resources ?? result.resource.map({ [$0] }) ?? [] {
            print(
                "spooled resource \(resource.id): bundle \(resource.bundleID) seq \(resource.seq), "
                    + "\(Units.bytes(resource.size)), sha256 \(resource.sha256)")
            print("  key \(resource.objectKey)")
        }
        if let warning = result.unzipWarning { print("  not expanded: \(warning)") }
        if result.sealed {
            print("sealed bundle \(result.bundleID) (\(result.resourceCount ?? 0) resources)")
        }
    }
}

/// What spool-put prints with `--json`.
struct PutResult: Encodable {
    /// The resource written (the first one with --unzip).
    var resource: SpooledResource?
    /// With --unzip: every resource written (one per zip member).
    var resources: [SpooledResource]?
    /// With --unzip: why the input was stored unchanged.
    var unzipWarning: String?
    var bundleID: String
    var sealed: Bool
    var resourceCount: Int?
}

enum DurabilityChoice: String, ExpressibleByArgument, CaseIterable {
    case fsync
    case batched
}

/// Where a new bundle's resources go.
struct DestinationOptions: ParsableArguments {
    @Option(help: "S3 bucket.")
    var bucket: String?

    @Option(help: "Local directory target (file://), instead of a bucket.")
    var directory: String?

    @Option(help: "Key prefix (normalised: 'data' and 'data/' both give 'data/...').")
    var prefix: String?

    @Option(help: "The bucket's region (default: resolved by spool-drain).")
    var region: String?

    @Option(help: "S3-compatible endpoint URL.")
    var endpoint: String?

    @Option(help: "Storage class of uploaded objects, e.g. STANDARD_IA.")
    var storageClass: String?

    @Flag(help: "Let spool-drain create the bucket when missing.")
    var createBucket = false

    @Flag(help: "Allow a plain http:// endpoint that is not loopback (data crosses the network in the clear).")
    var allowInsecureHttp = false

    func validate() throws {
        if bucket != nil && directory != nil { throw ValidationError("give --bucket or --directory, not both") }
        if bucket == nil && directory == nil && (region != nil || endpoint != nil || storageClass != nil) {
            throw ValidationError("--region, --endpoint and --storage-class need --bucket")
        }
    }

    func spec() throws -> DestinationSpec? {
        var options = StorageOptions()
        options.storageClass = storageClass
        options.createBucket = createBucket
        options.allowInsecureHTTP = allowInsecureHttp
        try options.validate()
        if let endpoint, DestinationSpec.isPlainHTTPToRemoteHost(endpoint), !allowInsecureHttp {
            throw SpoolError(
                .invalidConfiguration,
                "endpoint '\(endpoint)' is plain HTTP to a host that is not loopback: credentials and data would cross "
                    + "the network in the clear; use https, or pass --allow-insecure-http if you really mean it")
        }
        if let bucket {
            return try .s3(bucket: bucket, region: region, endpoint: endpoint, optionsJSON: options.encodedJSON())
        }
        if let directory { return try .directory(directory, optionsJSON: options.encodedJSON()) }
        return nil
    }
}
