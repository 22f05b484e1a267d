import Foundation
import S3

/// Credentials of the EC2 instance's IAM role, from the instance metadata service (IMDS):
///
/// 1. `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 21600` (IMDSv2 session token);
/// 2. `GET /latest/meta-data/iam/security-credentials/` with `X-aws-ec2-metadata-token`: the role's name;
/// 3. `GET /latest/meta-data/iam/security-credentials/<role>`: `AccessKeyId`, `SecretAccessKey`, `Token`,
///    `Expiration`.
///
/// Endpoint: the explicit one, else `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else `http://[fd00:ec2::254]` when
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` is `IPv6`, else `http://169.254.169.254`.
/// `AWS_EC2_METADATA_DISABLED=true` turns the provider off. One attempt per step, 1 s to connect and 2 s per request,
/// so that a chain run off EC2 gives up quickly.
///
/// IMDSv1 (the same GETs without a token) is used only when `allowsIMDSv1` is set, and then only when the token
/// request was refused (403, 404, 405) or timed out — the symptom of a container behind a hop limit of 1. This is
/// stricter than the SDKs, which fall back to IMDSv1 unless told not to (`AWS_EC2_METADATA_V1_DISABLED`): IMDSv1
/// answers any process that can make a GET through a misconfigured proxy or an SSRF hole, which is how instance
/// credentials usually leak.
public struct InstanceMetadataCredentialsProvider: CredentialsProvider {
    /// The default endpoint.
    public static let defaultEndpoint = "http://169.254.169.254"
    /// The endpoint in IPv6 mode.
    public static let ipv6Endpoint = "http://[fd00:ec2::254]"
    /// The lifetime asked for the session token, in seconds (botocore's).
    public static let tokenTTLSeconds = 21600

    /// The endpoint used (`scheme://host[:port]`, no trailing slash).
    public let endpoint: String
    /// Whether IMDSv1 may be used when IMDSv2 is refused.
    public let allowsIMDSv1: Bool
    /// Whether `AWS_EC2_METADATA_DISABLED` turned the provider off.
    public let isDisabled: Bool
    private let transport: any HTTPTransport
    private let requestTimeout: Duration

    /// A provider.
    ///
    /// - Parameters:
    ///   - endpoint: The endpoint; nil to resolve it from the environment.
    ///   - allowsIMDSv1: Fall back to IMDSv1 when the token request is refused or times out.
    ///   - environment: Where the `AWS_EC2_METADATA_*` variables are read.
    ///   - transport: The transport (default: libcurl with a 1 s connect timeout).
    ///   - requestTimeout: Bound on each request.
    public init(
        endpoint: String? = nil, allowsIMDSv1: Bool = false,
        environment: [String: String] = ProcessInfo.processInfo.environment, transport: (any HTTPTransport)? = nil,
        requestTimeout: Duration = .seconds(2)
    ) {
        var chosen =
            endpoint.flatMap { $0.isEmpty ? nil : $0 } ?? environment.nonEmpty("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            ?? (environment["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"]?.lowercased() == "ipv6"
                ? Self.ipv6Endpoint : Self.defaultEndpoint)
        while chosen.hasSuffix("/") { chosen.removeLast() }
        self.endpoint = chosen
        self.allowsIMDSv1 = allowsIMDSv1
        self.isDisabled = environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true"
        self.transport = transport ?? MetadataEndpoint.makeTransport()
        self.requestTimeout = requestTimeout
    }

    /// Fetches the role's credentials.
    ///
    /// - Throws: `S3Error` `CredentialsNotFound` when disabled, when the instance has no role, or when IMDSv2 is
    ///   refused and IMDSv1 is not allowed; a transport code (`ConnectionFailed`, `Timeout`) when the service does not
    ///   answer (not on EC2); `InstanceMetadataError` for other answers; `InvalidCredentials` for a malformed
    ///   document.
    public func credentials() async throws -> AWSCredentials {
        guard !isDisabled else {
            throw S3Error.credentialsNotFound("EC2 instance metadata is disabled by AWS_EC2_METADATA_DISABLED=true")
        }
        let origin = try MetadataEndpoint(url: endpoint, variable: "the instance metadata endpoint").origin
        let label = "EC2 instance metadata at \(origin)"
        let token = try await sessionToken(label: label)
        let path = "/latest/meta-data/iam/security-credentials/"
        let roleListing = try await get(path, token: token, label: label, notFound: "the instance has no IAM role")
        guard
            let role = String(decoding: roleListing, as: UTF8.self).split(whereSeparator: \.isNewline).first
                .map({ $0.trimmingCharacters(in: .whitespaces) }), !role.isEmpty, !role.contains("/")
        else {
            throw S3Error.credentialsNotFound("\(label): the instance has no IAM role (empty role listing)")
        }
        let document = try await get(
            path + role, token: token, label: label, notFound: "the role '\(role)' has no credentials")
        let source = "\(label), role '\(role)'"
        if let object = try? JSONSerialization.jsonObject(with: Data(document)) as? [String: Any],
            let code = object["Code"] as? String, code != "Success"
        {
            // IMDS answers 200 with a Code when, e.g., EC2 is not a trusted entity of the role.
            throw S3Error(
                status: 200, code: "InstanceMetadataError",
                message: "\(source): \(code): \(Redaction.excerpt(Array(((object["Message"] as? String) ?? "").utf8)))",
                isRetryable: false)
        }
        return try CredentialsDocument.parse(document, tokenKey: "Token", source: source)
    }

    /// The IMDSv2 token, or nil to go on with IMDSv1 (only when allowed).
    private func sessionToken(label: String) async throws -> String? {
        let request = HTTPRequest(
            method: "PUT", url: endpoint + "/latest/api/token",
            headers: [("X-aws-ec2-metadata-token-ttl-seconds", String(Self.tokenTTLSeconds))],
            destination: .memory(limit: 4096), timeout: requestTimeout)
        let refusal: String
        do {
            let response = try await transport.execute(request)
            if response.status == 200 {
                let token = String(decoding: response.body, as: UTF8.self)
                guard !token.isEmpty, !token.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                    throw S3Error(
                        status: 200, code: "InstanceMetadataError",
                        message: "\(label) answered the token request with an empty or malformed token",
                        isRetryable: false)
                }
                return token
            }
            guard [403, 404, 405].contains(response.status) else {
                throw S3Error(
                    status: response.status, code: "InstanceMetadataError",
                    message: "\(label) answered the IMDSv2 token request with HTTP \(response.status)",
                    isRetryable: response.status >= 500)
            }
            refusal = "refused the IMDSv2 token request (HTTP \(response.status))"
        } catch var error as S3Error where error.status == 0 {
            guard error.isTimeout else {
                error.message = "\(label): \(error.message) (not running on EC2?)"
                throw error
            }
            refusal = "did not answer the IMDSv2 token request in time (\(error.code))"
        }
        guard allowsIMDSv1 else {
            throw S3Error.credentialsNotFound(
                "\(label) \(refusal), and IMDSv1 is not allowed; require IMDSv2 on the instance (and, in a "
                    + "container, a metadata hop limit of 2), or allow the IMDSv1 fallback explicitly")
        }
        return nil
    }

    private func get(_ path: String, token: String?, label: String, notFound: String) async throws -> [UInt8] {
        let request = HTTPRequest(
            method: "GET", url: endpoint + path,
            headers: token.map { [("X-aws-ec2-metadata-token", $0)] } ?? [], destination: .memory(limit: 64 << 10),
            timeout: requestTimeout)
        let response: HTTPResponse
        do {
            response = try await transport.execute(request)
        } catch var error as S3Error {
            error.message = "\(label): \(error.message)"
            throw error
        }
        switch response.status {
        case 200 where !response.body.isEmpty: return response.body
        case 200, 404: throw S3Error.credentialsNotFound("\(label): \(notFound)")
        case 401:
            throw S3Error(
                status: 401, code: "InstanceMetadataError",
                message:
                    "\(label) refused the request \(token == nil ? "without a token (IMDSv2 is required)" : "token")",
                isRetryable: false)
        default:
            throw S3Error(
                status: response.status, code: "InstanceMetadataError",
                message: "\(label) answered HTTP \(response.status) for \(path)", isRetryable: response.status >= 500)
        }
    }
}
