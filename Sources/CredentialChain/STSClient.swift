import Foundation
import S3

/// AWS STS over the Query API (`Version=2011-06-15`): `AssumeRole`, signed with the caller's credentials, and
/// `AssumeRoleWithWebIdentity`, unsigned (the web identity token is the proof).
///
/// Region: the explicit one, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`. Endpoint: the explicit
/// one, else `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the regional `https://sts.<region>.amazonaws.com`.
/// Plain HTTP only to loopback.
public struct STSClient: Sendable {
    /// The Query API version.
    public static let apiVersion = "2011-06-15"
    /// The region used when none is configured.
    public static let defaultRegion = "us-east-1"

    /// The region calls are signed for.
    public let region: String
    /// The endpoint as configured (checked when a call is made).
    public let endpoint: String
    private let client: Result<QueryAPIClient, S3Error>

    /// A client.
    ///
    /// - Parameters:
    ///   - region: The region; nil to resolve it from the environment.
    ///   - endpoint: A custom endpoint; nil to resolve it from the environment, then AWS's regional endpoint.
    ///   - environment: Where `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_STS` and `AWS_ENDPOINT_URL` are
    ///     looked up.
    ///   - transport: The transport (libcurl by default).
    ///   - maxAttempts: Attempts per call (AWS "standard" retries).
    public init(
        region: String? = nil, endpoint: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment, transport: (any HTTPTransport)? = nil,
        maxAttempts: Int = 3
    ) {
        let resolvedRegion =
            region.flatMap { $0.isEmpty ? nil : $0 } ?? environment.nonEmpty("AWS_REGION")
            ?? environment.nonEmpty("AWS_DEFAULT_REGION") ?? Self.defaultRegion
        let resolvedEndpoint = QueryAPIClient.resolveEndpoint(
            prefix: "sts", serviceVariable: "AWS_ENDPOINT_URL_STS", region: resolvedRegion, explicit: endpoint,
            environment: environment)
        self.region = resolvedRegion
        self.endpoint = resolvedEndpoint
        do {
            client = .success(
                try QueryAPIClient(
                    service: "sts", region: resolvedRegion, endpoint: resolvedEndpoint, apiVersion: Self.apiVersion,
                    transport: transport ?? CurlTransport(), maxAttempts: maxAttempts, requestTimeout: .seconds(20)))
        } catch {
            client = .failure(.invalidConfiguration("STS \((error as? S3Error)?.message ?? "\(error)")"))
        }
    }

    /// What an `AssumeRole` call asks for.
    public struct AssumeRoleRequest: Sendable, Hashable {
        /// The role's ARN.
        public var roleARN: String
        /// The session name (2–64 characters of `[\w+=,.@-]`), recorded in CloudTrail.
        public var sessionName: String
        /// The external id the role's trust policy requires, if any.
        public var externalID: String?
        /// The session's length (15 minutes to the role's maximum); nil for STS's default (1 hour).
        public var duration: Duration?

        /// A request.
        public init(roleARN: String, sessionName: String, externalID: String? = nil, duration: Duration? = nil) {
            self.roleARN = roleARN
            self.sessionName = sessionName
            self.externalID = externalID
            self.duration = duration
        }
    }

    /// `AssumeRole`, signed with `credentials`.
    ///
    /// - Returns: The role's temporary credentials.
    /// - Throws: `S3Error` with STS's code (`AccessDenied`, `MalformedPolicyDocument`, `RegionDisabledException`,
    ///   `ExpiredToken`, `InvalidClientTokenId`, ...), `InvalidConfiguration` for a bad endpoint, or a transport code.
    public func assumeRole(_ request: AssumeRoleRequest, credentials: any CredentialsProvider) async throws
        -> AWSCredentials
    {
        var parameters = [("RoleArn", request.roleARN), ("RoleSessionName", request.sessionName)]
        if let externalID = request.externalID { parameters.append(("ExternalId", externalID)) }
        if let duration = request.duration {
            parameters.append(("DurationSeconds", String(duration.components.seconds)))
        }
        let root = try await call("AssumeRole", parameters, credentials: credentials, secrets: [request.externalID])
        return try Self.credentials(in: root, action: "AssumeRole", roleARN: request.roleARN)
    }

    /// `AssumeRoleWithWebIdentity`, unsigned.
    ///
    /// - Parameters:
    ///   - token: The OIDC token (never appears in an error).
    /// - Returns: The role's temporary credentials.
    /// - Throws: `S3Error` with STS's code (`InvalidIdentityToken`, `ExpiredTokenException`, `IDPRejectedClaim`,
    ///   `IDPCommunicationError`, `AccessDenied`, ...), `InvalidConfiguration`, or a transport code.
    public func assumeRoleWithWebIdentity(
        roleARN: String, sessionName: String, token: String, duration: Duration? = nil
    ) async throws -> AWSCredentials {
        var parameters = [("RoleArn", roleARN), ("RoleSessionName", sessionName), ("WebIdentityToken", token)]
        if let duration { parameters.append(("DurationSeconds", String(duration.components.seconds))) }
        let root = try await call("AssumeRoleWithWebIdentity", parameters, credentials: nil, secrets: [token])
        return try Self.credentials(in: root, action: "AssumeRoleWithWebIdentity", roleARN: roleARN)
    }

    private func call(
        _ action: String, _ parameters: [(String, String)], credentials: (any CredentialsProvider)?,
        secrets: [String?]
    ) async throws -> XMLNode {
        do {
            return try await client.get().call(action, parameters, credentials: credentials)
        } catch let error as S3Error {
            throw Redaction.scrub(error, removing: secrets)
        }
    }

    /// `<XResponse><XResult><Credentials>` of an answer.
    static func credentials(in root: XMLNode, action: String, roleARN: String) throws(S3Error) -> AWSCredentials {
        guard let result = root.child(action + "Result"), let credentials = result.child("Credentials"),
            let keyID = credentials.string("AccessKeyId"), let secret = credentials.string("SecretAccessKey"),
            let token = credentials.string("SessionToken"), let expirationText = credentials.string("Expiration"),
            let expiration = Timestamp.parse(expirationText)
        else {
            throw S3Error(
                status: 200, code: "InvalidResponse",
                message: "the \(action) answer for \(roleARN) lacks credentials or their expiration",
                operation: action, isRetryable: false)
        }
        return AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: token, expiration: expiration)
    }
}
