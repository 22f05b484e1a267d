import Foundation
import Hashing

/// One CloudWatch data point: a metric name, its dimensions, a value (or pre-aggregated statistics), a unit and a
/// time.
public struct MetricDatum: Sendable, Hashable {
    /// A dimension: name and value (1–255 and 1–1024 characters).
    public struct Dimension: Sendable, Hashable {
        /// The dimension name.
        public var name: String
        /// Its value.
        public var value: String

        /// A dimension.
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// What is sent.
    public enum Value: Sendable, Hashable {
        /// One value.
        case single(Double)
        /// Statistics of several observations (`StatisticValues`): what a histogram's interval becomes.
        case statistics(sampleCount: Double, sum: Double, minimum: Double, maximum: Double)
    }

    /// The metric name.
    public var name: String
    /// Its dimensions (at most 30).
    public var dimensions: [Dimension]
    /// The value.
    public var value: Value
    /// A CloudWatch unit: `Count`, `Bytes`, `Seconds`, `None`, ...
    public var unit: String
    /// When it was measured.
    public var timestamp: Date

    /// A data point.
    public init(name: String, dimensions: [Dimension] = [], value: Value, unit: String, timestamp: Date) {
        self.name = name
        self.dimensions = dimensions
        self.value = value
        self.unit = unit
        self.timestamp = timestamp
    }
}

/// A CloudWatch client for `PutMetricData` over the Query API (form-encoded POST, `Version=2010-08-01`), signed with
/// SigV4 for the `monitoring` service and sent through the libcurl transport.
///
/// The endpoint is resolved as the AWS SDKs do: the explicit one, else `AWS_ENDPOINT_URL_CLOUDWATCH`, else
/// `AWS_ENDPOINT_URL`, else `https://monitoring.<region>.amazonaws.com`. Plain HTTP only to loopback.
public final class CloudWatchClient: Sendable {
    /// The Query API version.
    public static let apiVersion = "2010-08-01"
    /// At most this many data points per `PutMetricData` call (AWS's limit).
    public static let maximumDatumsPerRequest = 1000
    /// At most this many bytes in one request body (AWS allows 1 MB per POST; a margin is kept).
    public static let maximumRequestBytes = 1_000_000

    /// The region requests are signed for.
    public let region: String
    /// The endpoint (`scheme://host[:port]`).
    public let endpoint: String
    private let host: String
    private let credentials: any CredentialsProvider
    private let transport: any HTTPTransport
    private let signer: SigV4Signer
    private let retryStrategy: RetryStrategy
    private let requestTimeout: Duration

    /// A client for a region.
    ///
    /// - Parameters:
    ///   - region: The region.
    ///   - endpoint: A custom endpoint; nil to resolve it from the environment, then AWS's regional endpoint.
    ///   - credentials: The credentials to sign with.
    ///   - transport: The transport (libcurl by default, with `transportOptions`).
    ///   - transportOptions: Timeouts and the CA bundle of the default transport.
    ///   - maxAttempts: Attempts per request (AWS "standard" retries).
    ///   - environment: Where `AWS_ENDPOINT_URL_CLOUDWATCH` and `AWS_ENDPOINT_URL` are looked up.
    /// - Throws: `S3Error` `InvalidConfiguration` when the endpoint is not an http(s) URL, or plain HTTP to a host
    ///   that is not loopback.
    public init(
        region: String, endpoint: String? = nil, credentials: any CredentialsProvider,
        transport: (any HTTPTransport)? = nil, transportOptions: TransportOptions = TransportOptions(),
        maxAttempts: Int = 3, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        let resolved = Self.resolveEndpoint(region: region, endpoint: endpoint, environment: environment)
        let parsed = try S3Configuration(region: region, endpoint: resolved).parsedEndpoint(resolved)
        self.region = region
        self.endpoint = "\(parsed.scheme)://\(parsed.authority)"
        self.host = parsed.authority
        self.credentials = credentials
        self.transport = transport ?? CurlTransport(options: transportOptions)
        self.signer = SigV4Signer(service: "monitoring", region: region)
        self.retryStrategy = RetryStrategy(maxAttempts: maxAttempts, maxBackoff: .seconds(5))
        self.requestTimeout = .seconds(30)
    }

    /// The endpoint the SDKs would use: `endpoint`, else `AWS_ENDPOINT_URL_CLOUDWATCH`, else `AWS_ENDPOINT_URL`, else
    /// `https://monitoring.<region>.amazonaws.com` (`.amazonaws.com.cn` in China regions).
    public static func resolveEndpoint(region: String, endpoint: String?, environment: [String: String]) -> String {
        func nonEmpty(_ value: String?) -> String? { value.flatMap { $0.isEmpty ? nil : $0 } }
        if let explicit = nonEmpty(endpoint) ?? nonEmpty(environment["AWS_ENDPOINT_URL_CLOUDWATCH"])
            ?? nonEmpty(environment["AWS_ENDPOINT_URL"])
        {
            return explicit
        }
        return "https://monitoring.\(region).amazonaws.com" + (region.hasPrefix("cn-") ? ".cn" : "")
    }

    /// Sends data points to a namespace, in as many `PutMetricData` calls as the limits require (1000 points and
    /// about 1 MB per call). Points with a value that is not finite are left out (CloudWatch refuses them).
    ///
    /// - Parameters:
    ///   - namespace: The namespace (1–255 ASCII characters, not starting with `AWS/`).
    ///   - data: The points.
    /// - Returns: The number of calls made.
    /// - Throws: `S3Error` with CloudWatch's error code (`InvalidParameterValue`, `AccessDenied`, `Throttling`, ...)
    ///   or a transport code, after the standard retries; the calls before it were sent.
    @discardableResult
    public func putMetricData(namespace: String, _ data: [MetricDatum]) async throws -> Int {
        let bodies = Self.putMetricDataBodies(namespace: namespace, data)
        for body in bodies {
            _ = try await call(body: body, action: "PutMetricData")
        }
        return bodies.count
    }

    /// The form bodies of the `PutMetricData` calls for these points: each at most `maximumDatumsPerRequest` points
    /// and `maximumRequestBytes` bytes.
    public static func putMetricDataBodies(namespace: String, _ data: [MetricDatum]) -> [String] {
        let header = formPairs([("Action", "PutMetricData"), ("Version", apiVersion), ("Namespace", namespace)])
        var bodies: [String] = []
        var current = header
        var count = 0
        for datum in data where datum.isSendable {
            var encoded = formPairs(datum.queryParameters(member: count + 1))
            if count == maximumDatumsPerRequest
                || (count > 0 && current.utf8.count + 1 + encoded.utf8.count > maximumRequestBytes)
            {
                bodies.append(current)
                current = header
                count = 0
                encoded = formPairs(datum.queryParameters(member: 1))
            }
            current += "&" + encoded
            count += 1
        }
        if count > 0 { bodies.append(current) }
        return bodies
    }

    static func formPairs(_ pairs: [(String, String)]) -> String {
        pairs.map { URIEncoding.encode($0.0) + "=" + URIEncoding.encode($0.1) }.joined(separator: "&")
    }

    /// Sends one Query API call: POST of the form body, signed; retries per the standard strategy.
    private func call(body: String, action: String) async throws -> XMLNode? {
        let bytes = Array(body.utf8)
        let payloadHash = SHA256Hasher.hexDigest(bytes)
        let headers: [(name: String, value: String)] = [
            ("Host", host), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        ]
        var random = SystemRandomNumberGenerator()
        var attempt = 0
        var retryCosts = 0
        while true {
            attempt += 1
            try Task.checkCancellation()
            let signed = signer.sign(
                SigV4Signer.Request(method: "POST", path: "/", headers: headers), payload: .sha256Hex(payloadHash),
                credentials: try await credentials.credentials(), date: Date())
            let request = HTTPRequest(
                method: "POST", url: endpoint + "/", headers: headers + signed, body: .bytes(bytes),
                destination: .memory(limit: 1 << 20), timeout: requestTimeout)
            var failure: S3Error
            do {
                let response = try await transport.execute(request)
                if (200..<300).contains(response.status) {
                    retryStrategy.recordSuccess(retryCosts: retryCosts)
                    return try? XMLNode.parse(response.body)
                }
                failure = Self.error(in: response, action: action)
            } catch let error as S3Error {
                failure = error
                failure.operation = "\(action) \(endpoint)"
            }
            guard let cost = retryStrategy.acquireRetry(after: failure, attempt: attempt) else { throw failure }
            retryCosts += cost
            try await Task.sleep(for: retryStrategy.backoff(afterAttempt: attempt, random: &random))
        }
    }

    /// CloudWatch's `<ErrorResponse><Error><Code>…</Code><Message>…</Message></Error><RequestId>…` as an error.
    static func error(in response: HTTPResponse, action: String) -> S3Error {
        let root = try? XMLNode.parse(response.body)
        let error = root.flatMap { $0.name == "ErrorResponse" ? $0.child("Error") : ($0.name == "Error" ? $0 : nil) }
        let code = error?.string("Code") ?? S3Client.statusCode(response.status)
        return S3Error(
            status: response.status, code: code,
            message: error?.string("Message")
                ?? (response.body.isEmpty
                    ? "HTTP \(response.status)" : String(decoding: response.body.prefix(200), as: UTF8.self)),
            requestID: root?.string("RequestId") ?? response.header("x-amzn-requestid"), operation: action,
            isRetryable: S3Error.isRetryable(status: response.status, code: code))
    }
}

extension MetricDatum {
    /// Whether CloudWatch accepts the values (finite numbers).
    var isSendable: Bool {
        switch value {
        case .single(let value): value.isFinite
        case .statistics(let count, let sum, let minimum, let maximum):
            count > 0 && [count, sum, minimum, maximum].allSatisfy(\.isFinite)
        }
    }

    /// `MetricData.member.N.*` parameters.
    func queryParameters(member: Int) -> [(String, String)] {
        let prefix = "MetricData.member.\(member)."
        var parameters: [(String, String)] = [(prefix + "MetricName", name)]
        for (index, dimension) in dimensions.enumerated() {
            parameters.append((prefix + "Dimensions.member.\(index + 1).Name", dimension.name))
            parameters.append((prefix + "Dimensions.member.\(index + 1).Value", dimension.value))
        }
        switch value {
        case .single(let value):
            parameters.append((prefix + "Value", Self.number(value)))
        case .statistics(let count, let sum, let minimum, let maximum):
            parameters.append((prefix + "StatisticValues.SampleCount", Self.number(count)))
            parameters.append((prefix + "StatisticValues.Sum", Self.number(sum)))
            parameters.append((prefix + "StatisticValues.Minimum", Self.number(minimum)))
            parameters.append((prefix + "StatisticValues.Maximum", Self.number(maximum)))
        }
        parameters.append((prefix + "Unit", unit))
        parameters.append((prefix + "Timestamp", Self.iso8601(timestamp)))
        return parameters
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(describing: value)
    }

    /// `2026-01-31T12:00:00Z`.
    static func iso8601(_ date: Date) -> String {
        let basic = Array(SigV4Signer.amzDate(date))  // 20260131T120000Z
        return String(basic[0..<4]) + "-" + String(basic[4..<6]) + "-" + String(basic[6..<8]) + "T"
            + String(basic[9..<11]) + ":" + String(basic[11..<13]) + ":" + String(basic[13..<15]) + "Z"
    }
}
