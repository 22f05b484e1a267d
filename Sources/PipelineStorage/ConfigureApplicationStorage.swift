import Foundation
import Spool

extension ApplicationStorageConfiguration {
    /// The bucket name with `{environment}` substituted.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` when the template needs an environment that is not set, has an
    ///   unknown placeholder, or gives a name S3 would refuse.
    public func resolvedBucket() throws -> String {
        guard let bucket else {
            throw SpoolError(
                .invalidConfiguration,
                "no bucket: set 'bucket' in the configuration file or PIPELINE_STORAGE_BUCKET (type s3), or use type file"
            )
        }
        // BucketName.expand checks the name (with or without placeholders); only the hint of where to set the
        // environment is this loader's to give.
        if bucket.contains("{environment}") && (environment ?? "").isEmpty {
            throw SpoolError(
                .invalidConfiguration,
                "bucket '\(bucket)' needs an environment name: set 'environment' or PIPELINE_STORAGE_ENVIRONMENT")
        }
        return try BucketName.expand(template: bucket, environment: environment ?? "")
    }

    /// Opens the storage this configuration describes, with the decorators it switches on
    /// (`createStorageStack`: archives expanded first, then bundles packed).
    ///
    /// - Throws: as `makeStorage()`, and `SpoolError.invalidConfiguration` for decorator options out of range.
    public func makeStorageStack() throws -> any ResourceStorage {
        try createStorageStack(
            base: try makeStorage(), bundleResources: bundleResources, unzipResources: unzipResources,
            bundleOptions: bundleOptions, unzipOptions: unzipOptions)
    }

    /// Opens the storage this configuration describes, without decorators.
    ///
    /// - Throws: `SpoolError` with `.invalidConfiguration` (bucket, directory, options), `.spoolUnwritable`,
    ///   `.schemaTooNew`.
    public func makeStorage() throws -> PipelineStorage {
        let spool: SpoolLocation = spoolDirectory.map { .directory($0) } ?? .default
        switch type {
        case .s3:
            return try PipelineStorage(
                bucket: try resolvedBucket(), prefix: prefix, region: region ?? awsRegion, endpoint: endpoint,
                options: options, spool: spool, spoolOptions: spoolOptions)
        case .file:
            guard let directory else {
                throw SpoolError(
                    .invalidConfiguration,
                    "type is file but no directory is set: set 'directory' in the configuration file or "
                        + "PIPELINE_STORAGE_DIRECTORY")
            }
            return try PipelineStorage(
                directory: directory, prefix: prefix, options: options, spool: spool, spoolOptions: spoolOptions)
        }
    }
}

/// Builds the application's storage stack from environment variables over an optional JSON configuration file
/// (SPEC §6):
/// storage type (`s3` or `file`), environment name and bucket template (`oc-fetcher-{environment}`), prefix, region,
/// endpoint, spool directory and limits, the decorators (unzip, bundle) and their limits, the drainer's AWS profile
/// and role, and every delivery and bucket option. The README lists every key and variable.
///
///     // PIPELINE_STORAGE_CONFIG=/etc/fetcher/storage.json PIPELINE_STORAGE_ENVIRONMENT=prod
///     let storage = try configureApplicationStorage()
///     try await storage.withBundle(id) { bundle in try await bundle.writeResource(...) }
///
/// - Parameters:
///   - environment: The process environment (or another, for tests).
///   - configFile: A JSON file; nil to use `PIPELINE_STORAGE_CONFIG` when set, else none.
/// - Throws: `SpoolError.invalidConfiguration` naming the key or variable and the value; `.spoolUnwritable`,
///   `.schemaTooNew` from opening the spool.
public func configureApplicationStorage(
    environment: [String: String] = ProcessInfo.processInfo.environment, configFile: String? = nil
) throws -> any ResourceStorage {
    try ApplicationStorageConfiguration.load(environment: environment, configFile: configFile).makeStorageStack()
}
