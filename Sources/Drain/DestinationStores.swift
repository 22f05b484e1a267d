import CredentialChain
import Foundation
import Logging
import S3
import Spool
import Synchronization

/// Builds the object store of a destination as the spool recorded it: a local directory, or an S3 bucket with one
/// client per region, endpoint and credentials, shared. Used by `spool-drain` to deliver and by `spool-inspect abort`
/// to abort an upload, so both reach the destination the same way.
///
/// Credentials come from the AWS credential chain (`CredentialChain`: environment, shared files and profiles, web
/// identity, container, EC2 instance metadata), created once and shared by every client, unless a provider is given.
/// `credentialsProvider(profile:roleARN:)` gives the provider of a named profile and/or a role assumed on top,
/// cached per pair. A destination's region and endpoint come from the spool, else from `region`/`endpoint`, else
/// from `AWS_REGION`, `AWS_DEFAULT_REGION` (else the profile's `region`), `AWS_ENDPOINT_URL_S3` and
/// `AWS_ENDPOINT_URL`.
public final class DestinationStores: Sendable {
    private let region: String?
    private let endpoint: String?
    private let caBundle: String?
    private let uploadTimeout: Double?
    private let profile: String?
    private let chainOptions: CredentialChain.Options
    private let environment: [String: String]
    private let logger: Logger?
    private let clients = Mutex<[String: S3Client]>([:])
    private let providers = Mutex<[String: any CredentialsProvider]>([:])
    /// The provider of destinations that name no profile or role: the one given, or the chain.
    public let defaultCredentials: any CredentialsProvider

    /// A factory.
    ///
    /// - Parameters:
    ///   - region: For destinations that recorded none.
    ///   - endpoint: For destinations that recorded none.
    ///   - caBundle: A PEM file of CA certificates to verify the endpoint's TLS certificate with.
    ///   - uploadTimeout: Overrides the destinations' `uploadTimeout` (seconds).
    ///   - credentials: The credentials of destinations that name no profile or role; nil for the credential chain
    ///     (with `profile`).
    ///   - profile: The profile of destinations that recorded none (nil: `AWS_PROFILE`, else `default`).
    ///   - chainOptions: Options of the chains built here (IMDSv1, refresh policy, ...); their observer is set to log.
    ///   - environment: What the chains read.
    ///   - logger: Where the chains log which provider answered and their refreshes (debug), and failed refreshes
    ///     (warning); never a secret.
    public init(
        region: String?, endpoint: String?, caBundle: String?, uploadTimeout: Double?,
        credentials: (any CredentialsProvider)? = nil, profile: String? = nil,
        chainOptions: CredentialChain.Options = CredentialChain.Options(),
        environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger? = nil
    ) {
        self.region = region
        self.endpoint = endpoint
        self.caBundle = caBundle
        self.uploadTimeout = uploadTimeout
        self.profile = profile
        self.environment = environment
        self.logger = logger
        var options = chainOptions
        if let logger, options.observer == nil { options.observer = Self.logging(to: logger) }
        self.chainOptions = options
        defaultCredentials =
            credentials ?? CredentialChain(profile: profile, options: options, environment: environment)
    }

    /// The credentials of a profile, with a role assumed on top when `roleARN` is given (`aws.profile`,
    /// `aws.roleARN`). Made once per pair and shared: every client of the pair uses the same cached credentials.
    ///
    /// - Parameters:
    ///   - profile: The profile; nil for this factory's default provider.
    ///   - roleARN: A role to assume (STS `AssumeRole`) with the profile's credentials; nil for none.
    public func credentialsProvider(profile: String?, roleARN: String?) -> any CredentialsProvider {
        let profile = profile.flatMap { $0.isEmpty ? nil : $0 }
        let roleARN = roleARN.flatMap { $0.isEmpty ? nil : $0 }
        guard profile != nil || roleARN != nil else { return defaultCredentials }
        return providers.withLock { providers in
            let key = (profile ?? "") + "\u{0}" + (roleARN ?? "")
            if let existing = providers[key] { return existing }
            var made: any CredentialsProvider =
                profile.map { CredentialChain(profile: $0, options: chainOptions, environment: environment) }
                ?? defaultCredentials
            if let roleARN {
                let sts = STSClient(region: chainOptions.region, environment: environment)
                let name = "assume role \(roleARN) on top of " + (profile.map { "profile '\($0)'" } ?? "the chain")
                let observer = chainOptions.observer
                made = CachingCredentialsProvider(
                    AssumeRoleCredentialsProvider(source: made, roleARN: roleARN, sts: sts),
                    policy: chainOptions.refreshPolicy, clock: chainOptions.clock
                ) { event in
                    switch event {
                    case .refreshed(let expiration): observer?(.refreshed(provider: name, expiration: expiration))
                    case .refreshFailedKeepingOld(let error, let kept):
                        observer?(.refreshFailed(provider: name, error: error, keptUntil: kept))
                    }
                }
            }
            providers[key] = made
            return made
        }
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
            let explicitRegion = nonEmpty(destination.spec.region) ?? nonEmpty(region)
            let environmentRegion = nonEmpty(environment["AWS_REGION"]) ?? nonEmpty(environment["AWS_DEFAULT_REGION"])
            var configuration = try S3Configuration.resolve(
                region: explicitRegion ?? environmentRegion ?? profileRegion(options.awsProfile),
                endpoint: destination.spec.endpoint.isEmpty ? endpoint : destination.spec.endpoint,
                environment: environment)
            configuration.transport.caBundlePath = caBundle
            configuration.allowsInsecureHTTP = options.allowInsecureHTTP
            let client = client(configuration, profile: options.awsProfile, roleARN: options.roleARN)
            return S3ObjectStore(client: client, bucket: destination.spec.location, options: options)
        }
    }

    /// The `region` of the profile a destination's credentials come from: the last place the AWS SDKs look, after
    /// the explicit region, `AWS_REGION` and `AWS_DEFAULT_REGION`. Nil when the files do not say (or cannot be read:
    /// the credential chain reports that itself).
    private func profileRegion(_ recordedProfile: String?) -> String? {
        let name =
            nonEmpty(recordedProfile) ?? nonEmpty(profile) ?? nonEmpty(environment["AWS_DEFAULT_PROFILE"])
            ?? nonEmpty(environment["AWS_PROFILE"]) ?? "default"
        guard let shared = try? SharedConfiguration.load(environment: environment) else { return nil }
        return nonEmpty(shared.profile(name)?["region"])
    }

    /// The shared client of a region, endpoint and credentials.
    private func client(_ configuration: S3Configuration, profile: String?, roleARN: String?) -> S3Client {
        let key = [configuration.region, configuration.endpoint ?? "", profile ?? "", roleARN ?? ""]
            .joined(separator: "\u{0}")
        if let existing = clients.withLock({ $0[key] }) { return existing }
        let credentials = credentialsProvider(profile: profile, roleARN: roleARN)
        return clients.withLock { clients in
            if let existing = clients[key] { return existing }
            let client = S3Client(configuration: configuration, credentials: credentials)
            clients[key] = client
            return client
        }
    }

    /// An observer that logs the chain's events: which provider answered and refreshes at debug, failed refreshes
    /// that kept the old credentials at warning.
    static func logging(to logger: Logger) -> @Sendable (CredentialChain.Event) -> Void {
        { event in
            switch event {
            case .resolved(let provider):
                logger.debug("credentials resolved", metadata: ["provider": "\(provider)"])
            case .refreshed(let provider, let expiration):
                logger.debug(
                    "credentials refreshed",
                    metadata: ["provider": "\(provider)", "expires": "\(expiration.map { "\($0)" } ?? "never")"])
            case .refreshFailed(let provider, let error, let keptUntil):
                logger.warning(
                    "credentials refresh failed; the current ones stay in use",
                    metadata: [
                        "provider": "\(provider)", "error_code": "\(error.code)", "error": "\(error.message)",
                        "valid_until": "\(keptUntil)",
                    ])
            }
        }
    }
}
