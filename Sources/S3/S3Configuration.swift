import Foundation

/// Where and how the client reaches S3: region, endpoint, addressing style, retries, transport settings.
public struct S3Configuration: Sendable {
    /// The region requests are signed for.
    public var region: String
    /// A custom endpoint (`http(s)://host[:port]`), or nil for AWS's regional endpoint.
    public var endpoint: String?
    /// Force path-style addressing (`endpoint/bucket/key`). Nil: path-style for custom endpoints and for bucket names
    /// with dots (they break TLS wildcard certificates), virtual-hosted (`bucket.s3.region.amazonaws.com`) otherwise.
    public var forcePathStyle: Bool?
    /// Allow plain `http://` to a host that is not loopback. Off: credentials and data never cross a network in the
    /// clear by accident.
    public var allowsInsecureHTTP = false
    /// Attempts per request, the first included (AWS "standard" mode: 3).
    public var maxAttempts = 3
    /// Longest backoff between attempts (AWS "standard" mode: 20 s).
    public var maxBackoff: Duration = .seconds(20)
    /// The retry quota's capacity in tokens (AWS "standard" mode: 500).
    public var retryQuotaTokens = 500
    /// Timeouts, stall detection and the CA bundle.
    public var transport = TransportOptions()

    /// A configuration for a region and an optional custom endpoint.
    public init(region: String, endpoint: String? = nil) {
        self.region = region
        self.endpoint = endpoint
    }

    /// Resolves region and endpoint the way the AWS SDKs do: the explicit value, else `AWS_REGION`, else
    /// `AWS_DEFAULT_REGION`; the explicit endpoint, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`.
    ///
    /// - Throws: `S3Error` `InvalidConfiguration` when no region is found or the endpoint is not a URL.
    public static func resolve(
        region: String? = nil, endpoint: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> S3Configuration {
        guard
            let resolvedRegion = nonEmpty(region) ?? nonEmpty(environment["AWS_REGION"])
                ?? nonEmpty(environment["AWS_DEFAULT_REGION"])
        else {
            throw S3Error(
                status: 0, code: "InvalidConfiguration",
                message: "no AWS region: pass a region, or set AWS_REGION (or AWS_DEFAULT_REGION)", isRetryable: false)
        }
        let resolvedEndpoint =
            nonEmpty(endpoint) ?? nonEmpty(environment["AWS_ENDPOINT_URL_S3"])
            ?? nonEmpty(environment["AWS_ENDPOINT_URL"])
        let configuration = S3Configuration(region: resolvedRegion, endpoint: resolvedEndpoint)
        if let resolvedEndpoint { _ = try configuration.parsedEndpoint(resolvedEndpoint) }
        return configuration
    }

    struct Endpoint {
        var scheme: String
        var host: String
        var port: Int?

        var authority: String { port.map { "\(host):\($0)" } ?? host }
        var isLoopback: Bool {
            host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
        }
    }

    func parsedEndpoint(_ text: String) throws -> Endpoint {
        func reject(_ reason: String) -> S3Error {
            S3Error(
                status: 0, code: "InvalidConfiguration",
                message: "endpoint '\(text)' \(reason); use http(s)://host[:port]", isRetryable: false)
        }
        let lower = text.lowercased()
        let scheme: String
        if lower.hasPrefix("https://") {
            scheme = "https"
        } else if lower.hasPrefix("http://") {
            scheme = "http"
        } else {
            throw reject("is not an http or https URL")
        }
        var authority = Substring(text.dropFirst(scheme.count + 3))
        if authority.hasSuffix("/") { authority = authority.dropLast() }
        guard !authority.isEmpty, !authority.contains("/"), !authority.contains("@"),
            !authority.contains(where: { $0.isWhitespace })
        else { throw reject("must have a host and no path, user or spaces") }
        var host = String(authority)
        var port: Int?
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let number = Int(authority[authority.index(after: colon)...]), (1...65535).contains(number) else {
                throw reject("has an invalid port")
            }
            port = number
            host = String(authority[..<colon])
        }
        let endpoint = Endpoint(scheme: scheme, host: host.lowercased(), port: port)
        if scheme == "http" && !endpoint.isLoopback && !allowsInsecureHTTP {
            throw reject(
                "is plain HTTP to a host that is not loopback; use https, or allow insecure HTTP explicitly")
        }
        return endpoint
    }

    /// The URL of a bucket (and key), percent-encoded once, and the host header value.
    func address(bucket: String, key: String?) throws -> (url: String, host: String, path: String) {
        let encodedKey = key.map { URIEncoding.encodePath($0) } ?? ""
        let endpoint: Endpoint
        let pathStyle: Bool
        if let custom = self.endpoint {
            endpoint = try parsedEndpoint(custom)
            pathStyle = forcePathStyle ?? true
        } else {
            endpoint = Endpoint(scheme: "https", host: "s3.\(region).amazonaws.com", port: nil)
            pathStyle = forcePathStyle ?? bucket.contains(".")
        }
        let path: String
        let host: String
        if pathStyle {
            host = endpoint.authority
            path = "/" + URIEncoding.encode(bucket) + (key == nil ? "" : "/" + encodedKey)
        } else {
            host = bucket + "." + endpoint.authority
            path = "/" + encodedKey
        }
        return ("\(endpoint.scheme)://\(host)\(path)", host, path)
    }

    /// Whether requests go over TLS (so `UNSIGNED-PAYLOAD` with a checksum is acceptable).
    var usesTLS: Bool {
        guard let endpoint else { return true }
        return endpoint.lowercased().hasPrefix("https://")
    }
}

/// The value, or nil when it is nil or empty: an empty environment variable or option counts as unset, as the AWS
/// SDKs treat it.
package func nonEmpty(_ value: String?) -> String? { value.flatMap { $0.isEmpty ? nil : $0 } }
