import Foundation

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
    public var endpoint: String { client.endpoint }
    private let credentials: any CredentialsProvider
    private let client: QueryAPIClient

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
        self.region = region
        self.credentials = credentials
        self.client = try QueryAPIClient(
            service: "monitoring", region: region,
            endpoint: Self.resolveEndpoint(region: region, endpoint: endpoint, environment: environment),
            apiVersion: Self.apiVersion, transport: transport ?? CurlTransport(options: transportOptions),
            maxAttempts: maxAttempts)
    }

    /// The endpoint the SDKs would use: `endpoint`, else `AWS_ENDPOINT_URL_CLOUDWATCH`, else `AWS_ENDPOINT_URL`, else
    /// `https://monitoring.<region>.amazonaws.com` (`.amazonaws.com.cn` in China regions).
    public static func resolveEndpoint(region: String, endpoint: String?, environment: [String: String]) -> String {
        QueryAPIClient.resolveEndpoint(
            prefix: "monitoring", serviceVariable: "AWS_ENDPOINT_URL_CLOUDWATCH", region: region, explicit: endpoint,
            environment: environment)
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
            _ = try await client.call(body: body, action: "PutMetricData", credentials: credentials)
        }
        return bodies.count
    }

    /// The form bodies of the `PutMetricData` calls for these points: each at most `maximumDatumsPerRequest` points
    /// and `maximumRequestBytes` bytes.
    public static func putMetricDataBodies(namespace: String, _ data: [MetricDatum]) -> [String] {
        let header = QueryAPIClient.formPairs([
            ("Action", "PutMetricData"), ("Version", apiVersion), ("Namespace", namespace),
        ])
        var bodies: [String] = []
        var current = header
        var count = 0
        for datum in data where datum.isSendable {
            var encoded = QueryAPIClient.formPairs(datum.queryParameters(member: count + 1))
            if count == maximumDatumsPerRequest
                || (count > 0 && current.utf8.count + 1 + encoded.utf8.count > maximumRequestBytes)
            {
                bodies.append(current)
                current = header
                count = 0
                encoded = QueryAPIClient.formPairs(datum.queryParameters(member: 1))
            }
            current += "&" + encoded
            count += 1
        }
        if count > 0 { bodies.append(current) }
        return bodies
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
