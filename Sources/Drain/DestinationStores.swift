import Foundation
import S3
import Spool
import Synchronization

/// Builds the object store of a destination as the spool recorded it: a local directory, or an S3 bucket with one
/// client per region and endpoint, shared. Used by `spool-drain` to deliver and by `spool-inspect abort` to abort an
/// upload, so both reach the destination the same way.
///
/// Credentials come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). A
/// destination's region and endpoint come from the spool, else from `region`/`endpoint`, else from `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3` and `AWS_ENDPOINT_URL`.
public final class DestinationStores: Sendable {
    private let region: String?
    private let endpoint: String?
    private let caBundle: String?
    private let uploadTimeout: Double?
    private let clients = Mutex<[String: S3Client]>([:])

    /// A factory.
    ///
    /// - Parameters:
    ///   - region: For destinations that recorded none.
    ///   - endpoint: For destinations that recorded none.
    ///   - caBundle: A PEM file of CA certificates to verify the endpoint's TLS certificate with.
    ///   - uploadTimeout: Overrides the destinations' `uploadTimeout` (seconds).
    public init(region: String?, endpoint: String?, caBundle: String?, uploadTimeout: Double?) {
        self.region = region
        self.endpoint = endpoint
        self.caBundle = caBundle
        self.uploadTimeout = uploadTimeout
    }

    /// The store for a destination.
    ///
    /// - Throws: `S3Error` or `SpoolError` when the region or endpoint cannot be resolved, `SpoolError` when the
    ///   recorded options cannot be read.
    public func store(for destination: DestinationRecord) throws -> any ObjectStore {
        var options = try StorageOptions.decode(
            json: destination.spec.optionsJSON, destination: destination.spec.displayName)
        if let uploadTimeout { options.uploadTimeoutSeconds = uploadTimeout }
        switch destination.spec.kind {
        case .file:
            return DirectoryObjectStore(root: destination.spec.location)
        case .s3:
            var configuration = try S3Configuration.resolve(
                region: destination.spec.region.isEmpty ? region : destination.spec.region,
                endpoint: destination.spec.endpoint.isEmpty ? endpoint : destination.spec.endpoint)
            configuration.transport.caBundlePath = caBundle
            let key = configuration.region + "|" + (configuration.endpoint ?? "")
            let client = clients.withLock { clients -> S3Client in
                if let existing = clients[key] { return existing }
                let client = S3Client(configuration: configuration, credentials: EnvironmentCredentialsProvider())
                clients[key] = client
                return client
            }
            return S3ObjectStore(client: client, bucket: destination.spec.location, options: options)
        }
    }
}
