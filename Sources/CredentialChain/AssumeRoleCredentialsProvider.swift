import Foundation
import S3

/// Credentials of a role, assumed with STS `AssumeRole` on top of any other provider: a profile's `role_arn` with
/// `source_profile` or `credential_source`, or a role assumed on top of whatever the chain resolved (`aws.roleARN`).
///
/// Calls STS on every `credentials()`: put it behind a `CachingCredentialsProvider` (`.cached()`), as the chain and
/// `DestinationStores` do. The source should be cached too; it is asked once per `AssumeRole` call.
public struct AssumeRoleCredentialsProvider: CredentialsProvider {
    /// The request sent to STS.
    public let request: STSClient.AssumeRoleRequest
    private let source: any CredentialsProvider
    private let sts: STSClient

    /// A provider of a role's credentials.
    ///
    /// - Parameters:
    ///   - source: The credentials `AssumeRole` is signed with.
    ///   - roleARN: The role to assume.
    ///   - sessionName: The session name; nil for `pipeline-storage-<unix time>` (botocore uses
    ///     `botocore-session-<unix time>`).
    ///   - externalID: The external id the role's trust policy requires.
    ///   - duration: The session's length; nil for STS's default (1 hour).
    ///   - sts: The STS client (default: region and endpoint from the environment).
    public init(
        source: any CredentialsProvider, roleARN: String, sessionName: String? = nil, externalID: String? = nil,
        duration: Duration? = nil, sts: STSClient = STSClient()
    ) {
        self.source = source
        self.sts = sts
        request = STSClient.AssumeRoleRequest(
            roleARN: roleARN, sessionName: sessionName ?? Self.defaultSessionName(), externalID: externalID,
            duration: duration)
    }

    /// `pipeline-storage-<unix time>`.
    public static func defaultSessionName(now: Date = Date()) -> String {
        "pipeline-storage-\(Int(now.timeIntervalSince1970))"
    }

    /// New credentials of the role.
    ///
    /// - Throws: The source's error, or STS's (`AccessDenied` when the role does not trust the source, ...).
    public func credentials() async throws -> AWSCredentials {
        do {
            return try await sts.assumeRole(request, credentials: source)
        } catch var error as S3Error where !error.message.contains(request.roleARN) {
            error.message = "assuming role \(request.roleARN): " + error.message
            throw error
        }
    }
}

/// Credentials of a role assumed with an OIDC token read from a file (EKS IRSA and other web identity federation):
/// STS `AssumeRoleWithWebIdentity`, unsigned. The token file is read again on every call, since the platform rotates
/// it. Put it behind a `CachingCredentialsProvider`.
public struct WebIdentityCredentialsProvider: CredentialsProvider {
    /// Largest token file accepted (tokens are a few KB).
    public static let maximumTokenBytes = 64 << 10

    /// The token file.
    public let tokenFile: String
    /// The role to assume.
    public let roleARN: String
    /// The session name.
    public let sessionName: String
    /// Where the settings came from (`AWS_WEB_IDENTITY_TOKEN_FILE`, `profile 'x'`), for messages.
    public let origin: String
    private let duration: Duration?
    private let sts: STSClient

    /// A provider.
    ///
    /// - Parameters:
    ///   - tokenFile: The file holding the token.
    ///   - roleARN: The role to assume.
    ///   - sessionName: nil for `pipeline-storage-<unix time>`.
    ///   - duration: The session's length; nil for STS's default.
    ///   - origin: Where the settings came from, for messages.
    ///   - sts: The STS client.
    public init(
        tokenFile: String, roleARN: String, sessionName: String? = nil, duration: Duration? = nil,
        origin: String = "AWS_WEB_IDENTITY_TOKEN_FILE", sts: STSClient = STSClient()
    ) {
        self.tokenFile = tokenFile
        self.roleARN = roleARN
        self.sessionName = sessionName ?? AssumeRoleCredentialsProvider.defaultSessionName()
        self.duration = duration
        self.origin = origin
        self.sts = sts
    }

    /// New credentials of the role, with the token as the file holds it now.
    ///
    /// - Throws: `S3Error` `InvalidConfiguration` when the token file is missing, unreadable, empty or too large;
    ///   STS's error otherwise. No message contains the token.
    public func credentials() async throws -> AWSCredentials {
        let token = try readToken()
        do {
            return try await sts.assumeRoleWithWebIdentity(
                roleARN: roleARN, sessionName: sessionName, token: token, duration: duration)
        } catch var error as S3Error {
            error.message =
                "assuming role \(roleARN) with the web identity token in '\(tokenFile)' (\(origin)): "
                + error.message
            throw error
        }
    }

    private func readToken() throws(S3Error) -> String {
        guard
            let bytes = try BoundedFile.read(tokenFile, limit: Self.maximumTokenBytes, what: "web identity token file")
        else {
            throw .invalidConfiguration(
                "the web identity token file '\(tokenFile)' (\(origin)) does not exist; check the path, or that the "
                    + "platform mounted the token")
        }
        // botocore sends the file as read; a trailing newline (an editor's) is dropped here, as no token has one.
        let token = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else {
            throw .invalidConfiguration("the web identity token file '\(tokenFile)' (\(origin)) is empty")
        }
        return token
    }
}
