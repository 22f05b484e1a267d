import Foundation
import S3

/// Credentials from the ECS task role or EKS Pod Identity endpoint, as the AWS SDKs read them:
///
/// - `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: `http://169.254.170.2` + the path (wins when both are set);
/// - `AWS_CONTAINER_CREDENTIALS_FULL_URI`: any `https://` URL, or `http://` only to a loopback address
///   (`127.0.0.0/8`, `::1`, `localhost`) or the container hosts `169.254.170.2`, `169.254.170.23` and
///   `[fd00:ec2::23]`, as botocore enforces;
/// - the `Authorization` header: the contents of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read again on every fetch
///   because the platform rotates it (wins), else `AWS_CONTAINER_AUTHORIZATION_TOKEN`. A token with CR or LF is
///   refused, as the SDKs do.
///
/// The answer is JSON with `AccessKeyId`, `SecretAccessKey`, `Token` and `Expiration`. Up to three attempts (1 s
/// connect timeout, 5 s per attempt); answers of 4xx are not retried. Errors never show the token nor the
/// credentials, and name the endpoint by its host only (the relative path identifies the task's credentials).
public struct ContainerCredentialsProvider: CredentialsProvider {
    /// The host `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is relative to.
    public static let relativeBase = "http://169.254.170.2"
    /// Hosts plain HTTP is allowed to besides loopback.
    public static let allowedHTTPHosts: Set<String> = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost"]
    /// Largest token file accepted.
    public static let maximumTokenBytes = 16 << 10

    private let environment: [String: String]
    private let transport: any HTTPTransport
    private let attempts: Int
    private let retryDelay: Duration

    /// The URI variable in effect (the relative one wins), nil when neither is set: the provider does not apply.
    public static func configuredVariable(environment: [String: String]) -> String? {
        ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"].first {
            environment.nonEmpty($0) != nil
        }
    }

    /// A provider reading these variables.
    ///
    /// - Parameters:
    ///   - environment: Where the `AWS_CONTAINER_*` variables are read.
    ///   - transport: The transport (default: libcurl with a 1 s connect timeout).
    ///   - attempts: Attempts per fetch.
    ///   - retryDelay: Pause between attempts.
    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment, transport: (any HTTPTransport)? = nil,
        attempts: Int = 3, retryDelay: Duration = .seconds(1)
    ) {
        self.environment = environment
        self.transport = transport ?? MetadataEndpoint.makeTransport()
        self.attempts = max(1, attempts)
        self.retryDelay = retryDelay
    }

    /// Fetches credentials from the endpoint.
    ///
    /// - Throws: `S3Error` `CredentialsNotFound` when neither URI variable is set; `InvalidConfiguration` for a URL
    ///   that is not allowed or a bad token (file); the endpoint's status as `CredentialsEndpointError`, a transport
    ///   code, or `InvalidCredentials` for a malformed answer.
    public func credentials() async throws -> AWSCredentials {
        let (url, variable) = try endpointURL()
        let endpoint = try Self.checkedEndpoint(url, variable: variable)
        var headers: [(name: String, value: String)] = [("Accept", "application/json")]
        let token = try authorizationToken()
        if let token { headers.append(("Authorization", token)) }
        let label = "container credentials endpoint \(endpoint.origin) (\(variable))"
        let request = HTTPRequest(
            method: "GET", url: url, headers: headers, destination: .memory(limit: 64 << 10), timeout: .seconds(5))
        var attempt = 0
        while true {
            attempt += 1
            var failure: S3Error
            do {
                let response = try await transport.execute(request)
                if response.status == 200 {
                    return try CredentialsDocument.parse(
                        response.body, tokenKey: "Token", source: label)
                }
                failure = S3Error(
                    status: response.status, code: "CredentialsEndpointError",
                    message: "\(label) answered HTTP \(response.status)"
                        + (response.body.isEmpty ? "" : ": " + Redaction.excerpt(response.body)),
                    isRetryable: response.status >= 500 || response.status == 429)
            } catch let error as S3Error {
                failure = error
                failure.message = "\(label): \(error.message)"
            }
            failure = Redaction.scrub(failure, removing: [token])
            guard failure.isRetryable, attempt < attempts else { throw failure }
            try await Task.sleep(for: retryDelay)
        }
    }

    /// The endpoint of a URL, refused unless https, or http to loopback or one of `allowedHTTPHosts`.
    static func checkedEndpoint(_ url: String, variable: String) throws(S3Error) -> MetadataEndpoint {
        let endpoint = try MetadataEndpoint(url: url, variable: variable)
        if endpoint.scheme == "http" && !endpoint.isLoopback && !allowedHTTPHosts.contains(endpoint.host) {
            throw .invalidConfiguration(
                "\(variable) points at host '\(endpoint.host)' over plain HTTP; the container credentials endpoint must "
                    + "be https, loopback, 169.254.170.2, 169.254.170.23 or [fd00:ec2::23]")
        }
        return endpoint
    }

    private func endpointURL() throws(S3Error) -> (String, String) {
        guard let variable = Self.configuredVariable(environment: environment), let value = environment[variable] else {
            throw .credentialsNotFound(
                "neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set")
        }
        return (variable.hasSuffix("RELATIVE_URI") ? Self.relativeBase + value : value, variable)
    }

    /// The token: the file's contents (read now), else the variable; nil when neither is set.
    private func authorizationToken() throws(S3Error) -> String? {
        let token: String
        let origin: String
        if let path = environment.nonEmpty("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            origin = "the file '\(path)' (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"
            guard let bytes = try BoundedFile.read(path, limit: Self.maximumTokenBytes, what: "container token file")
            else { throw .invalidConfiguration("\(origin) does not exist") }
            token = String(decoding: bytes, as: UTF8.self)
        } else if let value = environment.nonEmpty("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
            origin = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
            token = value
        } else {
            return nil
        }
        if token.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A }) {
            throw .invalidConfiguration(
                "the container authorization token in \(origin) contains a CR or LF (a trailing newline?), which is "
                    + "not allowed in an HTTP header; write the token on one line")
        }
        return token
    }
}

/// An endpoint URL of a metadata service, parsed just enough to check where it points.
struct MetadataEndpoint {
    var scheme: String
    /// Lowercased, IPv6 without brackets.
    var host: String
    /// `scheme://host[:port]`, for messages.
    var origin: String

    init(url: String, variable: String) throws(S3Error) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", var host = components.host, !host.isEmpty
        else {
            throw .invalidConfiguration("\(variable) is not an http(s) URL with a host")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.scheme = scheme
        self.host = host.lowercased()
        let shown = host.contains(":") ? "[\(self.host)]" : self.host
        origin = "\(scheme)://\(shown)" + (components.port.map { ":\($0)" } ?? "")
    }

    /// `127.0.0.0/8` or `::1` (botocore's `ip_address(host).is_loopback`).
    var isLoopback: Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: v6) { bytes in bytes.prefix(15).allSatisfy { $0 == 0 } && bytes[15] == 1 }
        }
        return false
    }

    /// A libcurl transport for link-local services: 1 s to connect, so that a chain run off EC2 or outside a container
    /// does not hang.
    static func makeTransport() -> CurlTransport {
        var options = TransportOptions()
        options.connectTimeout = .seconds(1)
        options.lowSpeedWindow = .seconds(5)
        options.maxIdleConnections = 2
        return CurlTransport(options: options)
    }
}
