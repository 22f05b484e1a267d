import Foundation
import Hashing
import Synchronization

/// Signs HTTP requests with AWS Signature Version 4 (`AWS4-HMAC-SHA256`, Authorization-header form).
///
/// One signer serves one service in one region and may sign any number of requests from any thread. It derives the
/// signing key once per secret and day and keeps it in a small cache, so a busy client pays one HMAC per request
/// rather than five.
///
/// ```swift
/// let signer = SigV4Signer(service: "s3", region: "eu-west-1")
/// let path = URIEncoding.encodePath("/\(bucket)/\(key)")
/// let request = SigV4Signer.Request(method: "PUT", path: path, headers: [("Host", host)])
/// let added = signer.sign(request, payload: .sha256Hex(bodyHash), credentials: credentials, date: Date())
/// // Send the request's headers (minus any named in `added`) followed by `added`; `signed(_:…)` does exactly that.
/// ```
public struct SigV4Signer: Sendable {
    /// The signing algorithm's name, as the Authorization header and the string to sign carry it.
    public static let algorithm = "AWS4-HMAC-SHA256"

    /// The hex SHA-256 of the empty string: the payload hash of a request without a body.
    public static let emptyPayloadSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Header names (lowercase) never signed: `authorization` is the signature itself, and the others are set or
    /// rewritten by HTTP libraries and proxies after signing, which would break the signature in transit.
    public static let unsignedHeaderNames: Set<String> = [
        "authorization", "connection", "expect", "user-agent", "x-amzn-trace-id",
    ]

    /// The service name of the credential scope: `s3`, `sts`, `monitoring`, or `service` in the AWS test suite.
    public let service: String

    /// The region of the credential scope, such as `us-east-1`.
    public let region: String

    /// Whether the canonical URI is the normalised, re-encoded path (every service but S3) or the path as sent (S3).
    ///
    /// `false` (S3): the canonical URI is the request path exactly as given, which the caller has already encoded
    /// once; no dot-segment removal, no `//` collapsing, no second encoding.
    /// `true` (generic services): `.` and `..` segments are removed, runs of `/` collapse to one, and each segment is
    /// percent-encoded again, as the AWS Signature Version 4 test suite requires.
    public let normalizesPath: Bool

    private let signingKeyCache = SigningKeyCache()

    /// A signer for one service in one region.
    ///
    /// - Parameters:
    ///   - service: The service name of the credential scope, e.g. `s3`.
    ///   - region: The region of the credential scope, e.g. `us-east-1`.
    ///   - normalizesPath: Whether to normalise and re-encode the path; by default `true` for every service but `s3`.
    public init(service: String, region: String, normalizesPath: Bool? = nil) {
        self.service = service
        self.region = region
        self.normalizesPath = normalizesPath ?? (service != "s3")
    }

    /// Whether signing adds and signs `x-amz-content-sha256`: S3 requires the header on every request; other
    /// services neither need nor expect it.
    private var sendsContentSHA256Header: Bool { service == "s3" }

    // MARK: - Request and payload

    /// The parts of an HTTP request that the signature covers.
    public struct Request: Sendable {
        /// The HTTP method, e.g. `GET`, as sent.
        public var method: String

        /// The path as sent on the wire, e.g. `/bucket/a%20b.json`: for S3 already percent-encoded once by
        /// ``URIEncoding/encodePath(_:)``. An empty path means `/`.
        public var path: String

        /// The query parameters, names and values DECODED: the signer encodes them.
        public var query: [(name: String, value: String)]

        /// The headers to sign; must include `host`.
        ///
        /// Names are case-insensitive. Repeated names are signed as one header whose values are joined with `,` in
        /// the order given. Values are trimmed and inner runs of whitespace (including folded line breaks) are signed
        /// as one space. Headers in ``SigV4Signer/unsignedHeaderNames`` are ignored.
        public var headers: [(name: String, value: String)]

        /// A request to sign.
        ///
        /// - Parameters:
        ///   - method: The HTTP method.
        ///   - path: The path as sent, already percent-encoded for S3.
        ///   - query: The decoded query names and values.
        ///   - headers: The headers to sign, including `host`.
        public init(
            method: String, path: String, query: [(name: String, value: String)] = [],
            headers: [(name: String, value: String)]
        ) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
        }
    }

    /// How the body is covered: the value of `x-amz-content-sha256` and the last line of the canonical request.
    public enum Payload: Sendable, Hashable {
        /// The lowercase hex SHA-256 of the whole body; for an empty body ``SigV4Signer/emptyPayloadSHA256``.
        case sha256Hex(String)
        /// `UNSIGNED-PAYLOAD`: the body is not covered (S3 over TLS, or when the hash is not known in advance).
        case unsigned
        /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: the body is sent aws-chunked, each chunk signed by
        /// ``AWSChunkedSigner``.
        case streamingSigned

        /// The payload's value in the canonical request and in `x-amz-content-sha256`.
        public var headerValue: String {
            switch self {
            case .sha256Hex(let hex): hex
            case .unsigned: "UNSIGNED-PAYLOAD"
            case .streamingSigned: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
            }
        }
    }

    // MARK: - Signing

    /// Everything computed while signing one request, for diagnostics and tests.
    public struct SigningResult: Sendable {
        /// The headers to add to the request, in canonical case; see ``SigV4Signer/sign(_:payload:credentials:date:)``.
        public let headers: [(name: String, value: String)]
        /// The canonical request that was hashed.
        public let canonicalRequest: String
        /// The signed header names, lowercase, sorted and joined with `;`.
        public let signedHeaders: String
        /// The string that was signed.
        public let stringToSign: String
        /// The signature: 64 lowercase hex digits. For aws-chunked uploads, the seed signature of the first chunk.
        public let signature: String
        /// The value of the Authorization header.
        public let authorization: String
    }

    /// Signs `request` and returns the headers to add to it.
    ///
    /// The returned headers are, in canonical case: `Authorization`, `X-Amz-Date`, `X-Amz-Security-Token` when the
    /// credentials carry a session token (the token is signed), and `X-Amz-Content-Sha256` for S3. Each of them
    /// replaces any header of the same name (compared case-insensitively) that `request` already had: the signer
    /// signed its own values, not the request's, so the caller must send these and drop the old ones (this also makes
    /// re-signing a retried request safe).
    ///
    /// - Parameters:
    ///   - request: The request; its headers must include `host`.
    ///   - payload: How the body is covered.
    ///   - credentials: The credentials to sign with.
    ///   - date: The signing time; the server rejects a request more than 15 minutes away from its clock.
    /// - Returns: The headers to add.
    public func sign(
        _ request: Request, payload: Payload, credentials: AWSCredentials, date: Date
    ) -> [(name: String, value: String)] {
        signingResult(request, payload: payload, credentials: credentials, date: date).headers
    }

    /// Returns `request` with the signing headers applied: the headers ``sign(_:payload:credentials:date:)`` adds
    /// replace any of the same name, and are appended at the end.
    ///
    /// - Parameters:
    ///   - request: The request; its headers must include `host`.
    ///   - payload: How the body is covered.
    ///   - credentials: The credentials to sign with.
    ///   - date: The signing time.
    /// - Returns: The request to send.
    public func signed(_ request: Request, payload: Payload, credentials: AWSCredentials, date: Date) -> Request {
        let added = sign(request, payload: payload, credentials: credentials, date: date)
        return Self.replacingHeaders(of: request, with: added)
    }

    /// Signs `request` and returns every intermediate value: the canonical request, the string to sign, the signature.
    ///
    /// Same signature and headers as ``sign(_:payload:credentials:date:)``; use this one to get the seed signature of
    /// an aws-chunked upload or to explain a `SignatureDoesNotMatch`.
    ///
    /// - Parameters:
    ///   - request: The request; its headers must include `host`.
    ///   - payload: How the body is covered.
    ///   - credentials: The credentials to sign with.
    ///   - date: The signing time.
    /// - Returns: The headers to add and the intermediate values.
    public func signingResult(
        _ request: Request, payload: Payload, credentials: AWSCredentials, date: Date
    ) -> SigningResult {
        let timestamp = Self.amzDate(date)
        var added: [(name: String, value: String)] = [("X-Amz-Date", timestamp)]
        if let token = credentials.sessionToken {
            added.append(("X-Amz-Security-Token", token))
        }
        if sendsContentSHA256Header {
            added.append(("X-Amz-Content-Sha256", payload.headerValue))
        }

        let canonical = canonicalRequest(Self.replacingHeaders(of: request, with: added), payload: payload)
        let stringToSign = stringToSign(canonicalRequest: canonical.text, date: date)
        let key = signingKey(secret: credentials.secretAccessKey, date: date)
        let signature = HMAC.sha256(key: key, message: stringToSign.utf8).hexString
        let authorization =
            "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(credentialScope(date: date)), "
            + "SignedHeaders=\(canonical.signedHeaders), Signature=\(signature)"

        return SigningResult(
            headers: [("Authorization", authorization)] + added,
            canonicalRequest: canonical.text,
            signedHeaders: canonical.signedHeaders,
            stringToSign: stringToSign,
            signature: signature,
            authorization: authorization)
    }

    // MARK: - The steps, public for tests and diagnostics

    /// A canonical request and the header names it signs.
    public struct CanonicalRequest: Sendable, Hashable {
        /// The canonical request: method, URI, query, headers, signed header names and payload hash, one per line.
        public let text: String
        /// The signed header names, lowercase, sorted and joined with `;`.
        public let signedHeaders: String
    }

    /// The canonical request of `request` exactly as given: nothing is added (no date, token or payload header).
    ///
    /// - Parameters:
    ///   - request: The request; its headers must include `host`.
    ///   - payload: How the body is covered: the canonical request's last line.
    /// - Returns: The canonical request text and its signed header names.
    public func canonicalRequest(_ request: Request, payload: Payload) -> CanonicalRequest {
        let headers = Self.canonicalHeaders(request.headers)
        precondition(
            headers.contains { $0.name == "host" },
            "SigV4: the request to sign has no Host header; add the host the request is sent to")
        let signedHeaders = headers.map(\.name).joined(separator: ";")
        var lines = [request.method, canonicalURI(request.path), URIEncoding.canonicalQuery(request.query)]
        lines += headers.map { "\($0.name):\($0.value)" }
        lines += ["", signedHeaders, payload.headerValue]
        return CanonicalRequest(text: lines.joined(separator: "\n"), signedHeaders: signedHeaders)
    }

    /// The canonical URI of a request path, following ``normalizesPath``.
    ///
    /// - Parameter path: The path as sent on the wire.
    /// - Returns: For S3 the path itself (`/` when empty); otherwise the normalised path with each segment encoded.
    public func canonicalURI(_ path: String) -> String {
        guard normalizesPath else { return path.isEmpty ? "/" : path }
        return Self.normalizedPathSegments(path).map { URIEncoding.encode(String($0)) }.joined(separator: "/")
    }

    /// The credential scope: `yyyyMMdd/region/service/aws4_request`.
    ///
    /// - Parameter date: The signing time.
    /// - Returns: The scope, as the Authorization header and the string to sign carry it.
    public func credentialScope(date: Date) -> String {
        "\(Self.dateStamp(date))/\(region)/\(service)/aws4_request"
    }

    /// The string to sign for a canonical request.
    ///
    /// - Parameters:
    ///   - canonicalRequest: The canonical request text.
    ///   - date: The signing time.
    /// - Returns: The algorithm, timestamp, credential scope and hex SHA-256 of the canonical request, one per line.
    public func stringToSign(canonicalRequest: String, date: Date) -> String {
        [
            Self.algorithm, Self.amzDate(date), credentialScope(date: date),
            SHA256Hasher.hexDigest(canonicalRequest.utf8),
        ].joined(separator: "\n")
    }

    /// The signing key derived from `secret` for the day of `date`, this region and this service.
    ///
    /// The key depends on nothing else, so it is cached: signing many requests on one day derives it once per secret.
    ///
    /// - Parameters:
    ///   - secret: The secret access key.
    ///   - date: The signing time; only its UTC day matters.
    /// - Returns: The 32-byte key that signs the string to sign (and aws-chunked chunks).
    public func signingKey(secret: String, date: Date) -> [UInt8] {
        let day = Self.dateStamp(date)
        return signingKeyCache.key(secret: secret, day: day) {
            let dateKey = HMAC.sha256(key: Array("AWS4\(secret)".utf8), message: day.utf8)
            let regionKey = HMAC.sha256(key: dateKey, message: region.utf8)
            let serviceKey = HMAC.sha256(key: regionKey, message: service.utf8)
            return HMAC.sha256(key: serviceKey, message: "aws4_request".utf8)
        }
    }

    /// The ISO 8601 basic UTC timestamp of `X-Amz-Date`, e.g. `20150830T123600Z`.
    ///
    /// Computed by arithmetic rather than a `DateFormatter`, which is costly to create and not guaranteed thread-safe.
    ///
    /// - Parameter date: The time; fractions of a second are truncated.
    /// - Returns: `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        return padded(year, 4) + padded(month, 2) + padded(day, 2) + "T" + padded(secondOfDay / 3600, 2)
            + padded(secondOfDay / 60 % 60, 2) + padded(secondOfDay % 60, 2) + "Z"
    }

    /// The `yyyyMMdd` UTC day of `date`, as the credential scope carries it.
    ///
    /// - Parameter date: The time.
    /// - Returns: The first eight characters of ``amzDate(_:)``.
    public static func dateStamp(_ date: Date) -> String {
        String(amzDate(date).prefix(8))
    }

    // MARK: - Helpers

    private static func replacingHeaders(
        of request: Request, with added: [(name: String, value: String)]
    ) -> Request {
        let replacedNames = Set(added.map { $0.name.lowercased() })
        var result = request
        result.headers = request.headers.filter { !replacedNames.contains($0.name.lowercased()) } + added
        return result
    }

    /// Lowercase names, sorted by byte; repeated names merged with `,` in order; values with whitespace collapsed.
    private static func canonicalHeaders(
        _ headers: [(name: String, value: String)]
    ) -> [(name: String, value: String)] {
        var valuesByName: [String: [String]] = [:]
        for header in headers {
            let name = collapsingWhitespace(header.name).lowercased()
            guard !unsignedHeaderNames.contains(name) else { continue }
            valuesByName[name, default: []].append(collapsingWhitespace(header.value))
        }
        let merged = valuesByName.map { (name: $0.key, value: $0.value.joined(separator: ",")) }
        return merged.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
    }

    /// Trims whitespace and turns each inner run of it into one space.
    ///
    /// Line breaks count as whitespace, so an obsolete folded (multi-line) header value signs as one line, as the
    /// suite's `get-header-value-multiline` case requires.
    private static func collapsingWhitespace(_ text: String) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count)
        var pendingSpace = false
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"):
                pendingSpace = !output.isEmpty
            default:
                if pendingSpace {
                    output.append(UInt8(ascii: " "))
                    pendingSpace = false
                }
                output.append(byte)
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// The path's segments after RFC 3986 dot-segment removal and with runs of `/` collapsed, starting with the empty
    /// segment before the leading `/` and ending with an empty one when the normalised path ends in `/`.
    private static func normalizedPathSegments(_ path: String) -> [Substring] {
        let rawSegments = path.split(separator: "/", omittingEmptySubsequences: false)
        var kept: [Substring] = []
        for segment in rawSegments {
            switch segment {
            case "", ".": continue
            case "..": _ = kept.popLast()
            default: kept.append(segment)
            }
        }
        // A final ".", ".." or "" segment names a directory, so the normalised path keeps its trailing slash.
        let endsWithSlash = ["", ".", ".."].contains(rawSegments.last ?? "")
        if endsWithSlash && !kept.isEmpty {
            kept.append("")
        }
        return [""] + (kept.isEmpty ? [""] : kept)
    }

    private static func floorDivide(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let quotient = value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor)
        return (quotient, value - quotient * divisor)
    }

    /// Year, month and day of a day count since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's
    /// `civil_from_days`).
    private static func civilDate(daysSinceEpoch days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func padded(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

/// Derived signing keys by secret and day, shared by the copies of one signer.
///
/// A handful of entries covers key rotation and midnight; when full it is simply emptied, since a miss costs only
/// four HMACs.
private final class SigningKeyCache: Sendable {
    private struct Entry: Hashable {
        let secret: String
        let day: String
    }

    private static let maximumEntryCount = 8

    private let keys = Mutex<[Entry: [UInt8]]>([:])

    func key(secret: String, day: String, derive: () -> [UInt8]) -> [UInt8] {
        let entry = Entry(secret: secret, day: day)
        if let cached = keys.withLock({ $0[entry] }) {
            return cached
        }
        // Derived outside the lock: two threads may both derive the same key once, which is harmless.
        let derived = derive()
        keys.withLock { keys in
            if keys.count >= Self.maximumEntryCount {
                keys.removeAll()
            }
            keys[entry] = derived
        }
        return derived
    }
}

/// Keeps the cached secrets and keys out of `dump` and debugger output.
extension SigningKeyCache: CustomReflectable {
    var customMirror: Mirror { Mirror(self, children: []) }
}
