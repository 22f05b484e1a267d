import BlockingWork
import Dispatch
import Foundation
import Hashing
import Synchronization

/// An S3 client of our own: SigV4 signing, the libcurl transport, AWS "standard" retries with a shared quota, and
/// clock-skew correction. One client serves many concurrent requests.
public final class S3Client: Sendable {
    /// Region, endpoint, addressing and retry settings.
    public let configuration: S3Configuration
    private let credentials: any CredentialsProvider
    private let transport: any HTTPTransport
    /// The retry strategy and its quota (shared by every request of this client).
    public let retryStrategy: RetryStrategy
    private let signer: SigV4Signer
    /// Server time minus local time, learnt from `RequestTimeTooSkewed` answers; added to the signing time.
    private let clockOffset = Mutex<Duration>(.zero)
    private let statistics = Mutex(Statistics())

    /// Counts of what the client did, for tests and diagnostics.
    public struct Statistics: Sendable, Equatable {
        /// HTTP attempts made (first attempts and retries).
        public var attempts = 0
        /// Retries made.
        public var retries = 0
        /// Clock-skew corrections made.
        public var clockSkewCorrections = 0
    }

    /// A client with this configuration and credentials; the transport defaults to libcurl.
    public init(
        configuration: S3Configuration, credentials: any CredentialsProvider, transport: (any HTTPTransport)? = nil
    ) {
        self.configuration = configuration
        self.credentials = credentials
        self.transport = transport ?? CurlTransport(options: configuration.transport)
        self.retryStrategy = RetryStrategy(
            maxAttempts: configuration.maxAttempts, maxBackoff: configuration.maxBackoff,
            quotaTokens: configuration.retryQuotaTokens)
        self.signer = SigV4Signer(service: "s3", region: configuration.region)
    }

    /// What the client has done so far.
    public var currentStatistics: Statistics { statistics.withLock { $0 } }

    /// The clock offset currently applied when signing.
    public var currentClockOffset: Duration { clockOffset.withLock { $0 } }

    // MARK: The request pipeline

    /// How the payload is described to SigV4.
    enum PayloadHash {
        /// The caller knows the hex SHA-256.
        case known(String)
        /// Compute it (reading a file range once more).
        case compute
        /// `UNSIGNED-PAYLOAD`: only over TLS and only with a checksum header S3 verifies.
        case unsigned
    }

    /// One S3 operation, before addressing and signing.
    struct Operation {
        var name: String
        var method: String
        var bucket: String
        var key: String?
        var query: [(name: String, value: String)] = []
        var headers: [(name: String, value: String)] = []
        var body: RequestBody = .empty
        var payload: PayloadHash = .compute
        var destination: ResponseDestination = .memory(limit: 16 << 20)
        var timeout: Duration? = nil

        var label: String { "\(name) s3://\(bucket)" + (key.map { "/" + $0 } ?? "") }
    }

    /// Sends an operation: signs, retries per the standard strategy, corrects clock skew; returns a 2xx response.
    ///
    /// - Throws: `S3Error` (with `operation` set) for non-2xx answers (decoded from S3's XML), 200 answers whose body
    ///   is an `<Error>`, and transport failures; `CancellationError`.
    func send(_ operation: Operation) async throws -> HTTPResponse {
        let payloadHash = try await resolvePayloadHash(operation)
        let address = try configuration.address(bucket: operation.bucket, key: operation.key)
        let queryString = operation.query.isEmpty ? "" : "?" + URIEncoding.canonicalQuery(operation.query)
        var random = SystemRandomNumberGenerator()
        var attempt = 0
        var retryCosts = 0
        while true {
            attempt += 1
            try Task.checkCancellation()
            statistics.withLock { $0.attempts += 1 }
            let credentials = try await self.credentials.credentials()
            let headers = [(name: "Host", value: address.host)] + operation.headers
            let signingTime = Date().addingTimeInterval(clockOffset.withLock { $0.timeInterval })
            let signed = signer.sign(
                SigV4Signer.Request(
                    method: operation.method, path: address.path, query: operation.query, headers: headers),
                payload: payloadHash, credentials: credentials, date: signingTime)
            let request = HTTPRequest(
                method: operation.method, url: address.url + queryString, headers: headers + signed,
                body: operation.body, destination: operation.destination, timeout: operation.timeout)
            var failure: S3Error
            do {
                let response = try await transport.execute(request)
                if let error = Self.error(in: response, operation: operation) {
                    failure = error
                } else {
                    retryStrategy.recordSuccess(retryCosts: retryCosts)
                    return response
                }
                if S3Error.clockSkewCodes.contains(failure.code), failure.code != "AuthFailure",
                    let serverTime = response.header("date").flatMap(HTTPDate.parse),
                    attempt < retryStrategy.maxAttempts
                {
                    // Sign again with the server's idea of the time; no backoff, it was not the server's fault.
                    clockOffset.withLock { $0 = .seconds(serverTime.timeIntervalSince(Date())) }
                    statistics.withLock { $0.clockSkewCorrections += 1 }
                    continue
                }
            } catch let error as S3Error {
                failure = error
                failure.operation = operation.label
            }
            guard let cost = retryStrategy.acquireRetry(after: failure, attempt: attempt) else { throw failure }
            retryCosts += cost
            statistics.withLock { $0.retries += 1 }
            try await Task.sleep(for: retryStrategy.backoff(afterAttempt: attempt, random: &random))
        }
    }

    private func resolvePayloadHash(_ operation: Operation) async throws -> SigV4Signer.Payload {
        switch operation.payload {
        case .known(let hex): return .sha256Hex(hex)
        case .unsigned:
            guard configuration.usesTLS else {
                throw S3Error.invalidRequest(
                    "UNSIGNED-PAYLOAD is only allowed over TLS; the endpoint is plain HTTP", operation: operation.label)
            }
            return .unsigned
        case .compute:
            switch operation.body {
            case .empty: return .sha256Hex(SHA256Hasher.hexDigest([UInt8]()))
            case .bytes(let bytes): return .sha256Hex(SHA256Hasher.hexDigest(bytes))
            case .file(let path, let offset, let length):
                return .sha256Hex(try await FileDigest.sha256Hex(path: path, offset: offset, length: length))
            }
        }
    }

    /// The error a response stands for: any non-2xx status, and a 2xx whose body is an S3 `<Error>` document
    /// (CompleteMultipartUpload and CopyObject can fail after answering 200).
    static func error(in response: HTTPResponse, operation: Operation) -> S3Error? {
        let requestID = response.header("x-amz-request-id")
        let hostID = response.header("x-amz-id-2")
        if (200..<300).contains(response.status) {
            guard !response.body.isEmpty, response.body.count < 64 << 10,
                let root = try? XMLNode.parse(response.body), root.name == "Error"
            else { return nil }
            let code = root.string("Code") ?? "InternalError"
            return S3Error(
                status: response.status, code: code, message: root.string("Message") ?? "error in a 200 answer",
                requestID: root.string("RequestId") ?? requestID, hostID: hostID, operation: operation.label,
                isRetryable: S3Error.isRetryable(status: 500, code: code))
        }
        if let root = try? XMLNode.parse(response.body), root.name == "Error" || root.name == "ErrorResponse" {
            let error = root.name == "ErrorResponse" ? (root.child("Error") ?? root) : root
            return S3Error(
                status: response.status, code: error.string("Code") ?? statusCode(response.status),
                message: error.string("Message") ?? "", requestID: error.string("RequestId") ?? requestID,
                hostID: error.string("HostId") ?? hostID, operation: operation.label)
        }
        // HEAD answers (and some proxies) carry no body: name the error after the status.
        return S3Error(
            status: response.status, code: statusCode(response.status),
            message: response.body.isEmpty
                ? "HTTP \(response.status)" : String(decoding: response.body.prefix(200), as: UTF8.self),
            requestID: requestID, hostID: hostID, operation: operation.label)
    }

    static func statusCode(_ status: Int) -> String {
        switch status {
        case 301: "PermanentRedirect"
        case 304: "NotModified"
        case 307: "TemporaryRedirect"
        case 400: "BadRequest"
        case 403: "AccessDenied"
        case 404: "NotFound"
        case 405: "MethodNotAllowed"
        case 409: "Conflict"
        case 412: "PreconditionFailed"
        case 416: "InvalidRange"
        case 429: "SlowDown"
        case 500: "InternalError"
        case 502: "BadGateway"
        case 503: "ServiceUnavailable"
        case 504: "GatewayTimeout"
        default: "HTTP\(status)"
        }
    }
}

/// SHA-256 of a file range, read on a blocking-I/O thread.
enum FileDigest {
    private static let queue = BlockingQueue(label: "pipeline-storage.s3-digest")

    static func sha256Hex(path: String, offset: Int64, length: Int64) async throws -> String {
        try await queue.run {
            var hasher = SHA256Hasher()
            try readRange(path: path, offset: offset, length: length) { hasher.update($0) }
            return hasher.finalize().hexString
        }
    }

    /// Reads a file range in 1 MiB pieces.
    static func readRange(
        path: String, offset: Int64, length: Int64, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw S3Error(
                status: 0, code: "LocalIOError", message: "cannot read '\(path)': \(String(cString: strerror(errno)))",
                isRetryable: false)
        }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var position = offset
        let end = offset + length
        while position < end {
            let wanted = Int(min(Int64(buffer.count), end - position))
            let got = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, wanted, off_t(position)) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else {
                throw S3Error(
                    status: 0, code: "LocalIOError", message: "'\(path)' ended before byte \(end)", isRetryable: false)
            }
            try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0.prefix(got))) }
            position += Int64(got)
        }
    }
}

/// RFC 7231 HTTP dates (`Tue, 24 Nov 2026 16:00:00 GMT`), parsed without locale-dependent formatters.
package enum HTTPDate {
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func parse(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, let day = Int(parts[1]), let month = months.firstIndex(of: String(parts[2])),
            let year = Int(parts[3])
        else { return nil }
        let time = parts[4].split(separator: ":").compactMap { Int($0) }
        guard time.count == 3 else { return nil }
        return Date(
            timeIntervalSince1970: TimeInterval(
                daysSinceEpoch(year: year, month: month + 1, day: day) * 86400 + time[0] * 3600 + time[1] * 60 + time[2]
            ))
    }

    /// ISO 8601 (`2026-11-24T16:00:00.000Z`), as S3's XML has it.
    static func parseISO8601(_ text: String) -> Date? {
        let digits = text.split(whereSeparator: { "-T:.Z".contains($0) }).compactMap { Int($0) }
        guard digits.count >= 6 else { return nil }
        return Date(
            timeIntervalSince1970: TimeInterval(
                daysSinceEpoch(year: digits[0], month: digits[1], day: digits[2]) * 86400 + digits[3] * 3600
                    + digits[4] * 60 + digits[5]))
    }

    /// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    package static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
