import Foundation
import S3
import Synchronization

/// The AWS default credential chain, in botocore's order:
///
/// 1. environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (skipped when a profile is
///    passed explicitly, as botocore skips it for `Session(profile=…)`);
/// 2. the profile's `role_arn` with `source_profile` (chained, loops refused) or `credential_source`
///    (`Environment`, `Ec2InstanceMetadata`, `EcsContainer`), through STS `AssumeRole`;
/// 3. web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+ `AWS_ROLE_SESSION_NAME`), or the profile's
///    `web_identity_token_file` + `role_arn`, through STS `AssumeRoleWithWebIdentity`;
/// 4. the profile's static keys in the shared credentials file;
/// 5. the profile's `credential_process`;
/// 6. the profile's static keys in the shared config file;
/// 7. container credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`);
/// 8. EC2 instance metadata (IMDSv2; IMDSv1 only when `allowsIMDSv1`).
///
/// The profile is the one passed, else `AWS_DEFAULT_PROFILE`, else `AWS_PROFILE`, else `default`. The first step
/// that is configured answers, and the chain keeps using it: temporary credentials are cached and refreshed through
/// that same step (`CachingCredentialsProvider`). A configured step that fails is an error (as in botocore), except
/// instance metadata, which only means "not on EC2". When nothing is configured the error lists every step and why it
/// did not apply. `providerName` says which step answered, for a log line; no message ever holds a secret.
public final class CredentialChain: CredentialsProvider {
    /// Settings of the chain.
    public struct Options: Sendable {
        /// The region of STS calls; nil for `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, `us-east-1`.
        public var region: String?
        /// When temporary credentials are refreshed.
        public var refreshPolicy = CredentialsRefreshPolicy()
        /// The current time (injectable for tests).
        public var clock: @Sendable () -> Date = { Date() }
        /// Allow the IMDSv1 fallback (off: only IMDSv2; see `InstanceMetadataCredentialsProvider`).
        public var allowsIMDSv1 = false
        /// Time limit of a `credential_process`.
        public var processTimeout = ProcessCredentialsProvider.defaultTimeout
        /// Told which step answered and of refreshes, for log lines (never secrets).
        public var observer: (@Sendable (Event) -> Void)?
        /// The transport of STS calls (default: libcurl).
        public var stsTransport: (any HTTPTransport)?
        /// The transport of the container and instance metadata endpoints (default: libcurl, 1 s to connect).
        public var metadataTransport: (any HTTPTransport)?

        /// The defaults.
        public init() {}
    }

    /// What the chain did, for log lines.
    public enum Event: Sendable {
        /// A step answered; it is used from now on.
        case resolved(provider: String)
        /// Credentials were fetched (again); `expiration` nil for credentials that do not expire.
        case refreshed(provider: String, expiration: Date?)
        /// A refresh failed; the credentials in use stay valid until `keptUntil`.
        case refreshFailed(provider: String, error: S3Error, keptUntil: Date)
    }

    /// The profile the file-based steps read.
    public let profile: String
    /// Whether the profile was named (argument, `AWS_PROFILE`, `AWS_DEFAULT_PROFILE`) rather than the default: a
    /// named profile that is in neither file is an error.
    public let profileIsNamed: Bool
    private let source: ChainSource
    private let cache: CachingCredentialsProvider

    /// A chain.
    ///
    /// - Parameters:
    ///   - profile: A profile to use; the environment credentials step is then skipped. Nil for `AWS_PROFILE` (or
    ///     `default`), with the environment step first.
    ///   - options: Region, refresh policy, clock, IMDSv1, observer, transports.
    ///   - environment: The variables the chain reads (the process's by default).
    public init(
        profile: String? = nil, options: Options = Options(),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        let named =
            profile.flatMap { $0.isEmpty ? nil : $0 } ?? environment.nonEmpty("AWS_DEFAULT_PROFILE")
            ?? environment.nonEmpty("AWS_PROFILE")
        self.profile = named ?? "default"
        self.profileIsNamed = named != nil
        let source = ChainSource(
            context: ChainContext(environment: environment, options: options), profile: named ?? "default",
            profileIsNamed: named != nil, skipsEnvironment: profile.map { !$0.isEmpty } ?? false)
        self.source = source
        let observer = options.observer
        cache = CachingCredentialsProvider(source, policy: options.refreshPolicy, clock: options.clock) { event in
            guard let observer, let name = source.providerName else { return }
            switch event {
            case .refreshed(let expiration): observer(.refreshed(provider: name, expiration: expiration))
            case .refreshFailedKeepingOld(let error, let kept):
                observer(.refreshFailed(provider: name, error: error, keptUntil: kept))
            }
        }
    }

    /// The step that answered (`environment`, `profile 'x' in ~/.aws/credentials`, `assume role … with …`, ...); nil
    /// before the first successful `credentials()`.
    public var providerName: String? { source.providerName }

    /// The credentials: resolved on first use, cached, refreshed before they expire.
    ///
    /// - Throws: `S3Error` `CredentialsNotFound` listing every step tried; `InvalidConfiguration` for a broken file,
    ///   profile or variable; the failing step's own error (STS's codes, `CredentialProcessFailed`, ...).
    public func credentials() async throws -> AWSCredentials {
        try await cache.credentials()
    }
}

/// Walks the steps once, then asks the one that answered. Called only by the chain's cache, one call at a time.
final class ChainSource: CredentialsProvider {
    private let context: ChainContext
    private let profile: String
    private let profileIsNamed: Bool
    private let skipsEnvironment: Bool
    private let winner = Mutex<FoundProvider?>(nil)

    init(context: ChainContext, profile: String, profileIsNamed: Bool, skipsEnvironment: Bool) {
        self.context = context
        self.profile = profile
        self.profileIsNamed = profileIsNamed
        self.skipsEnvironment = skipsEnvironment
    }

    var providerName: String? { winner.withLock { $0?.name } }

    func credentials() async throws -> AWSCredentials {
        if let found = winner.withLock({ $0 }) { return try await found.provider.credentials() }
        var tried: [String] = []
        for step in steps() {
            let found: FoundProvider
            switch try step.find() {
            case .absent(let reason):
                tried.append("\(step.name): \(reason)")
                continue
            case .found(let provider):
                found = provider
            }
            do {
                let credentials = try await found.provider.credentials()
                winner.withLock { $0 = found }
                context.options.observer?(.resolved(provider: found.name))
                return credentials
            } catch let error as S3Error where step.failureMeansAbsent {
                tried.append("\(step.name): \(error.message)")
            }
        }
        throw S3Error.credentialsNotFound(
            "no AWS credentials found for profile '\(profile)'. Tried, in order: "
                + tried.enumerated().map { "(\($0.offset + 1)) \($0.element)" }.joined(separator: "; ")
                + ". Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, configure the profile in the shared "
                + "credentials or config file, or run where a role is provided (ECS/EKS, EC2).")
    }

    private enum Outcome {
        case found(FoundProvider)
        case absent(String)
    }

    private struct Step {
        let name: String
        var failureMeansAbsent = false
        let find: () throws -> Outcome
    }

    private func steps() -> [Step] {
        let context = self.context
        let profile = self.profile
        // The files are read once per walk, by the first step that needs them.
        var loaded: ProfileResolver?
        func resolver() throws -> ProfileResolver {
            if let loaded { return loaded }
            let configuration = try SharedConfiguration.load(environment: context.environment)
            if profileIsNamed && configuration.profile(profile) == nil {
                throw S3Error.invalidConfiguration(
                    "the profile '\(profile)' is not in \(configuration.configFile) (as [profile \(profile)]) or "
                        + "\(configuration.credentialsFile) (as [\(profile)]); fix the name or add the profile")
            }
            let made = ProfileResolver(context: context, configuration: configuration)
            loaded = made
            return made
        }
        func outcome(_ found: FoundProvider?, else reason: @autoclosure () -> String) -> Outcome {
            found.map { .found($0) } ?? .absent(reason())
        }
        var steps: [Step] = []
        if !skipsEnvironment {
            steps.append(
                Step(name: "environment") {
                    outcome(
                        try context.environmentCredentials().map {
                            FoundProvider(name: "environment (AWS_ACCESS_KEY_ID)", provider: $0)
                        }, else: "AWS_ACCESS_KEY_ID is not set")
                })
        }
        steps += [
            Step(name: "assume role") {
                outcome(try resolver().assumeRole(profile: profile), else: "profile '\(profile)' has no role_arn")
            },
            Step(name: "web identity") {
                outcome(
                    try resolver().webIdentity(profile: profile, useEnvironment: !self.skipsEnvironment),
                    else: (self.skipsEnvironment ? "" : "AWS_WEB_IDENTITY_TOKEN_FILE is not set and ")
                        + "profile '\(profile)' has no web_identity_token_file")
            },
            Step(name: "shared credentials file") {
                let resolver = try resolver()
                return outcome(
                    try resolver.credentialsFileKeys(profile),
                    else: "no aws_access_key_id for [\(profile)] in \(resolver.configuration.credentialsFile)")
            },
            Step(name: "credential_process") {
                outcome(
                    try resolver().process(profile: profile), else: "profile '\(profile)' has no credential_process")
            },
            Step(name: "shared config file") {
                let resolver = try resolver()
                return outcome(
                    try resolver.configFileKeys(profile),
                    else: "no aws_access_key_id for the profile in \(resolver.configuration.configFile)")
            },
            Step(name: "container credentials") {
                guard let variable = ContainerCredentialsProvider.configuredVariable(environment: context.environment)
                else {
                    return .absent(
                        "neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set")
                }
                return .found(FoundProvider(name: "container credentials (\(variable))", provider: context.container()))
            },
            Step(name: "EC2 instance metadata", failureMeansAbsent: true) {
                let provider = context.instanceMetadata()
                return .found(
                    FoundProvider(
                        name: "EC2 instance metadata (\(provider.endpoint), "
                            + "\(provider.allowsIMDSv1 ? "IMDSv2, IMDSv1 allowed" : "IMDSv2"))", provider: provider))
            },
        ]
        return steps
    }
}
