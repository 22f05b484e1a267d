import Foundation
import Synchronization

/// Where the spool directory is.
public enum SpoolLocation: Sendable, Hashable {
    /// This directory.
    case directory(String)
    /// `$PIPELINE_SPOOL_DIR`, else `$XDG_STATE_HOME/pipeline-storage/spool`, else
    /// `~/.local/state/pipeline-storage/spool`.
    case `default`

    /// The directory this location names, resolved against the process environment.
    public var path: String {
        switch self {
        case .directory(let path): path
        case .default: SpoolOptions.defaultDirectory(environment: ProcessInfo.processInfo.environment)
        }
    }
}

/// The producer's entry point: hands resources to a durable local spool, from which `spool-drain` delivers them to
/// S3 (or a local directory) exactly once.
///
/// Every call only touches local disk; none waits for the network.
///
///     let storage = try PipelineStorage(bucket: "my-fetcher-bucket", prefix: "data/", region: "us-east-1",
///                                       spool: .directory("/var/spool/fetcher"))
///     try await storage.withBundle("bundle-1", metadata: ["source": "example.com"]) { bundle in
///         try await bundle.writeResource(url: "https://example.com/data", contentType: "application/json",
///                                        statusCode: 200, stream: chunks)
///     }
public final class PipelineStorage: Sendable {
    /// The spool resources are appended to.
    public let spool: SpoolStore
    /// Where they will be delivered.
    public let destination: DestinationSpec
    /// The normalised key prefix (`''` or ending in `/`).
    public let prefix: String
    /// Delivery and bucket options recorded for the drainer.
    public let options: StorageOptions

    private let destinationID = Mutex<Int64?>(nil)

    /// Storage delivering to an S3 bucket.
    ///
    /// - Parameters:
    ///   - bucket: The bucket name.
    ///   - prefix: Key prefix; normalised (`data` and `data/` both give `data/…`).
    ///   - region: The bucket's region; nil lets the drainer resolve it (`AWS_REGION`, profile).
    ///   - endpoint: An S3-compatible endpoint URL; nil for AWS.
    ///   - options: Delivery and bucket options (SPEC §6), applied by the drainer.
    ///   - spool: The spool directory.
    ///   - spoolOptions: Durability (`.fsync` or `.batched`), limits (`maxSpoolBytes`, `minFreeDiskBytes`) and
    ///     tunables.
    /// - Throws: `SpoolError` with `.invalidConfiguration` (bucket, prefix, region, endpoint, options),
    ///   `.spoolUnwritable`, `.schemaTooNew`.
    public convenience init(
        bucket: String, prefix: String = "", region: String? = nil, endpoint: String? = nil,
        options: StorageOptions = StorageOptions(), spool: SpoolLocation = .default,
        spoolOptions: SpoolOptions = SpoolOptions()
    ) throws {
        try options.validate()
        if let endpoint, DestinationSpec.isPlainHTTPToRemoteHost(endpoint), !options.allowInsecureHTTP {
            throw SpoolError(
                .invalidConfiguration,
                "endpoint '\(endpoint)' is plain HTTP to a host that is not loopback: credentials and data would "
                    + "cross the network in the clear; use https, or set allowInsecureHTTP if you really mean it")
        }
        let destination = try DestinationSpec.s3(
            bucket: bucket, region: region, endpoint: endpoint, optionsJSON: try options.encodedJSON())
        try self.init(
            destination: destination, prefix: prefix, options: options, spool: spool, spoolOptions: spoolOptions)
    }

    /// Storage delivering to a local directory with the same object layout (the `file://` target).
    ///
    /// - Throws: `SpoolError` with `.invalidConfiguration`, `.spoolUnwritable`, `.schemaTooNew`.
    public convenience init(
        directory: String, prefix: String = "", options: StorageOptions = StorageOptions(),
        spool: SpoolLocation = .default, spoolOptions: SpoolOptions = SpoolOptions()
    ) throws {
        try options.validate()
        let destination = try DestinationSpec.directory(directory, optionsJSON: try options.encodedJSON())
        try self.init(
            destination: destination, prefix: prefix, options: options, spool: spool, spoolOptions: spoolOptions)
    }

    /// Storage for any destination, on an already open spool or a new one.
    ///
    /// - Throws: `SpoolError` with `.invalidConfiguration`, `.spoolUnwritable`, `.schemaTooNew`.
    public init(
        destination: DestinationSpec, prefix: String, options: StorageOptions, spool: SpoolLocation,
        spoolOptions: SpoolOptions
    ) throws {
        self.prefix = try ObjectKey.normalizePrefix(prefix)
        self.destination = destination
        self.options = options
        self.spool = try SpoolStore.open(spool.path, options: spoolOptions)
    }

    /// A new bundle id: sortable by creation time, unique across hosts (26 characters, ULID layout).
    public static func newBundleID() -> String { BundleIDGenerator.next() }

    /// Opens a bundle for writing (creating it, or continuing one that is still open). Call `close()` when done.
    ///
    /// - Throws: `SpoolError` with `.invalidBundleID`, `.invalidMetadata`, `.bundleNotOpen`, `.bundleConflict`.
    public func openBundle(_ id: String, metadata: [String: String] = [:]) async throws -> BundleWriter {
        let record = try await spool.openBundle(
            id, destinationID: try await registeredDestination(), keyPrefix: prefix, metadata: metadata)
        return BundleWriter(id: record.id, spool: spool)
    }

    private func registeredDestination() async throws -> Int64 {
        if let id = destinationID.withLock({ $0 }) { return id }
        let id = try await spool.registerDestination(destination)
        destinationID.withLock { $0 = id }
        return id
    }
}

/// `PipelineStorage` is the base of every storage stack: decorators wrap it (`createStorageStack`), and code written
/// against `ResourceStorage` runs on it unchanged. `withBundle(_:metadata:_:)` comes from `ResourceStorage`: it opens a
/// bundle, runs the body and seals the bundle when the body returns; if the body throws, the bundle stays open
/// (resources already written are kept; `spool-inspect` reports it, and it can be continued, sealed or discarded)
/// and the error is rethrown.
extension PipelineStorage: ResourceStorage {
    /// The spool's `tmp/`.
    public var scratchDirectory: String { spool.layout.temporaryDirectory }
}
