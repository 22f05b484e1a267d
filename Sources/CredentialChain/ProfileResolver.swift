import Foundation
import S3

/// What the chain's providers share: the environment, the options, the transports.
struct ChainContext: Sendable {
    let environment: [String: String]
    let options: CredentialChain.Options
    let stsTransport: any HTTPTransport
    let metadataTransport: any HTTPTransport

    init(environment: [String: String], options: CredentialChain.Options) {
        self.environment = environment
        self.options = options
        stsTransport = options.stsTransport ?? CurlTransport()
        metadataTransport = options.metadataTransport ?? MetadataEndpoint.makeTransport()
    }

    /// An STS client for a profile: region from the options, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's
    /// `region`, else `us-east-1`.
    func sts(profile: SharedConfiguration.Profile?) -> STSClient {
        let region =
            options.region ?? environment.nonEmpty("AWS_REGION") ?? environment.nonEmpty("AWS_DEFAULT_REGION")
            ?? profile?["region"].flatMap { $0.isEmpty ? nil : $0 }
        return STSClient(region: region, environment: environment, transport: stsTransport)
    }

    func cached(_ provider: any CredentialsProvider) -> any CredentialsProvider {
        provider is StaticCredentialsProvider
            ? provider : CachingCredentialsProvider(provider, policy: options.refreshPolicy, clock: options.clock)
    }

    func instanceMetadata() -> InstanceMetadataCredentialsProvider {
        InstanceMetadataCredentialsProvider(
            allowsIMDSv1: options.allowsIMDSv1, environment: environment, transport: metadataTransport)
    }

    func container() -> ContainerCredentialsProvider {
        ContainerCredentialsProvider(environment: environment, transport: metadataTransport)
    }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SECURITY_TOKEN` or `AWS_SESSION_TOKEN`, as botocore's
    /// `EnvProvider` reads them; nil when `AWS_ACCESS_KEY_ID` is unset or empty.
    ///
    /// - Throws: `S3Error` `InvalidConfiguration` when the key id is set without the secret.
    func environmentCredentials() throws(S3Error) -> StaticCredentialsProvider? {
        guard let keyID = environment.nonEmpty("AWS_ACCESS_KEY_ID") else { return nil }
        guard let secret = environment.nonEmpty("AWS_SECRET_ACCESS_KEY") else {
            throw .invalidConfiguration(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both, or unset AWS_ACCESS_KEY_ID")
        }
        let token = environment.nonEmpty("AWS_SECURITY_TOKEN") ?? environment.nonEmpty("AWS_SESSION_TOKEN")
        return StaticCredentialsProvider(
            AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: token))
    }
}

/// A provider found for a step of the chain, not yet asked, with a name for the log.
struct FoundProvider: Sendable {
    let name: String
    let provider: any CredentialsProvider
}

/// The profile-based providers, as botocore builds them from the shared files: assume role (`role_arn` with
/// `source_profile` or `credential_source`), web identity, static keys of the credentials file, `credential_process`,
/// static keys of the config file.
struct ProfileResolver {
    let context: ChainContext
    let configuration: SharedConfiguration

    /// botocore's `AssumeRoleProvider`: the profile has `role_arn` and no `web_identity_token_file`.
    ///
    /// - Returns: nil when the profile has no role to assume.
    func assumeRole(profile name: String) throws(S3Error) -> FoundProvider? {
        guard let profile = configuration.profile(name), profile["role_arn"] != nil,
            profile.entries["web_identity_token_file"] == nil
        else { return nil }
        return try assumeRole(profile, visited: [name])
    }

    private func assumeRole(_ profile: SharedConfiguration.Profile, visited: [String]) throws(S3Error) -> FoundProvider
    {
        let roleARN = profile["role_arn"] ?? ""
        guard !roleARN.isEmpty else { throw .invalidConfiguration("\(profile.describe("role_arn")) is empty") }
        if profile.entries["mfa_serial"] != nil {
            throw .invalidConfiguration(
                "\(profile.describe("mfa_serial")): roles that need an MFA code are not supported (nobody is there to "
                    + "type the code); use a role without MFA, or give the credentials with credential_process")
        }
        let sourceProfile = profile["source_profile"]
        let credentialSource = profile["credential_source"]
        let source: FoundProvider
        switch (sourceProfile, credentialSource) {
        case (.some, .some):
            throw .invalidConfiguration(
                "profile '\(profile.name)' sets both source_profile and credential_source; keep one")
        case (nil, nil):
            throw .invalidConfiguration(
                "profile '\(profile.name)' sets role_arn but neither source_profile nor credential_source; add one "
                    + "to say whose credentials assume the role")
        case (nil, let named?):
            source = try self.credentialSource(named, profile: profile)
        case (let sourceName?, nil):
            guard let sourceSettings = configuration.profile(sourceName) else {
                throw .invalidConfiguration(
                    "the source_profile '\(sourceName)' of profile '\(profile.name)' does not exist in "
                        + configuration.filesDescription)
            }
            if visited.contains(sourceName) && !(sourceName == profile.name && sourceSettings.hasStaticCredentials) {
                throw .invalidConfiguration(
                    "source_profile loops: " + (visited + [sourceName]).map { "'\($0)'" }.joined(separator: " -> ")
                        + "; a profile may name itself only when it has aws_access_key_id and aws_secret_access_key")
            }
            source = try self.sourceProfile(sourceSettings, visited: visited + [sourceName])
        }
        let provider = AssumeRoleCredentialsProvider(
            source: context.cached(source.provider), roleARN: roleARN, sessionName: profile["role_session_name"],
            externalID: profile["external_id"], duration: try durationSeconds(profile),
            sts: context.sts(profile: profile))
        return FoundProvider(
            name: "assume role \(roleARN) (profile '\(profile.name)') with \(source.name)", provider: provider)
    }

    /// A `source_profile`'s credentials (botocore's `_resolve_credentials_from_profile`): with static keys, or
    /// without a role of its own, the profile providers (environment variables not consulted); else its own role.
    private func sourceProfile(_ profile: SharedConfiguration.Profile, visited: [String]) throws(S3Error)
        -> FoundProvider
    {
        let hasRole = profile["role_arn"] != nil && profile.entries["web_identity_token_file"] == nil
        if profile.hasStaticCredentials || !hasRole {
            if let found = try profileProvider(profile.name, useEnvironment: false) { return found }
            throw .invalidConfiguration(
                "the source profile '\(profile.name)' has no credentials: give it aws_access_key_id and "
                    + "aws_secret_access_key, credential_process, web_identity_token_file or a role of its own")
        }
        return try assumeRole(profile, visited: visited)
    }

    /// `credential_source`: `Environment`, `Ec2InstanceMetadata` or `EcsContainer`.
    private func credentialSource(_ name: String, profile: SharedConfiguration.Profile) throws(S3Error)
        -> FoundProvider
    {
        switch name {
        case "Environment":
            guard let provider = try context.environmentCredentials() else {
                throw .credentialsNotFound(
                    "\(profile.describe("credential_source")) is Environment, but AWS_ACCESS_KEY_ID is not set")
            }
            return FoundProvider(name: "credentials from the environment", provider: provider)
        case "Ec2InstanceMetadata":
            return FoundProvider(name: "EC2 instance metadata credentials", provider: context.instanceMetadata())
        case "EcsContainer":
            guard ContainerCredentialsProvider.configuredVariable(environment: context.environment) != nil else {
                throw .credentialsNotFound(
                    "\(profile.describe("credential_source")) is EcsContainer, but neither "
                        + "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set")
            }
            return FoundProvider(name: "container credentials", provider: context.container())
        default:
            throw .invalidConfiguration(
                "\(profile.describe("credential_source")) is '\(name)'; use Environment, Ec2InstanceMetadata or "
                    + "EcsContainer")
        }
    }

    /// `duration_seconds` as a duration (botocore ignores a value that is not a number; this refuses it).
    private func durationSeconds(_ profile: SharedConfiguration.Profile) throws(S3Error) -> Duration? {
        guard let text = profile["duration_seconds"] else { return nil }
        guard let seconds = Int(text.trimmingCharacters(in: .whitespaces)), seconds > 0 else {
            throw .invalidConfiguration(
                "\(profile.describe("duration_seconds")) must be a whole number of seconds (900 to 43200)")
        }
        return .seconds(seconds)
    }

    /// The first of the profile providers after assume role, in botocore's order
    /// (`ProfileProviderBuilder.providers`, SSO left out): web identity, credentials file, `credential_process`,
    /// config file; nil when the profile configures none of them.
    func profileProvider(_ name: String, useEnvironment: Bool) throws(S3Error) -> FoundProvider? {
        if let found = try webIdentity(profile: name, useEnvironment: useEnvironment) { return found }
        if let found = try credentialsFileKeys(name) { return found }
        if let found = process(profile: name) { return found }
        return try configFileKeys(name)
    }

    /// The credentials file's static keys for the profile.
    func credentialsFileKeys(_ name: String) throws(S3Error) -> FoundProvider? {
        try staticKeys(name, in: configuration.credentialsProfiles[name], file: configuration.credentialsFile)
    }

    /// The config file's static keys for the profile.
    func configFileKeys(_ name: String) throws(S3Error) -> FoundProvider? {
        try staticKeys(name, in: configuration.configProfiles[name], file: configuration.configFile)
    }

    /// botocore's `AssumeRoleWithWebIdentityProvider`: each of the token file, role and session name from its
    /// variable (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`) when set, else from the
    /// profile (`web_identity_token_file`, `role_arn`, `role_session_name`).
    func webIdentity(profile name: String, useEnvironment: Bool) throws(S3Error) -> FoundProvider? {
        let profile = configuration.profile(name)
        func setting(_ variable: String, _ key: String) -> (value: String, origin: String)? {
            if useEnvironment, let value = context.environment.nonEmpty(variable) { return (value, variable) }
            if let value = profile?[key], !value.isEmpty { return (value, "profile '\(name)'") }
            return nil
        }
        guard let tokenFile = setting("AWS_WEB_IDENTITY_TOKEN_FILE", "web_identity_token_file") else { return nil }
        guard let roleARN = setting("AWS_ROLE_ARN", "role_arn") else {
            throw .invalidConfiguration(
                "a web identity token file is configured (\(tokenFile.origin)) but no role: set AWS_ROLE_ARN, or "
                    + "role_arn in the profile")
        }
        let provider = WebIdentityCredentialsProvider(
            tokenFile: tokenFile.value, roleARN: roleARN.value,
            sessionName: setting("AWS_ROLE_SESSION_NAME", "role_session_name")?.value, origin: tokenFile.origin,
            sts: context.sts(profile: profile))
        return FoundProvider(
            name: "web identity: assume role \(roleARN.value) with the token file from \(tokenFile.origin)",
            provider: provider)
    }

    /// `aws_access_key_id`, `aws_secret_access_key` and `aws_security_token` or `aws_session_token` of one file's
    /// profile (botocore's `SharedCredentialProvider` and `ConfigProvider`).
    func staticKeys(_ name: String, in profile: SharedConfiguration.Profile?, file: String) throws(S3Error)
        -> FoundProvider?
    {
        guard let profile, let keyID = profile["aws_access_key_id"] else { return nil }
        guard let secret = profile["aws_secret_access_key"], !secret.isEmpty, !keyID.isEmpty else {
            throw .invalidConfiguration(
                "profile '\(name)' in \(file) has \(keyID.isEmpty ? "an empty aws_access_key_id" : "aws_access_key_id")"
                    + " but no aws_secret_access_key; add it, or remove the key id")
        }
        let token = profile["aws_security_token"] ?? profile["aws_session_token"]
        return FoundProvider(
            name: "profile '\(name)' in \(file)",
            provider: StaticCredentialsProvider(
                AWSCredentials(
                    accessKeyID: keyID, secretAccessKey: secret, sessionToken: token.flatMap { $0.isEmpty ? nil : $0 }))
        )
    }

    /// The merged profile's `credential_process`.
    func process(profile name: String) -> FoundProvider? {
        guard let command = configuration.profile(name)?["credential_process"] else { return nil }
        return FoundProvider(
            name: "credential_process of profile '\(name)'",
            provider: ProcessCredentialsProvider(
                command: command, profile: name, timeout: context.options.processTimeout,
                environment: context.environment))
    }
}
