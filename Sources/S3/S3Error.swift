/// An error from S3 or from getting a request to it: the HTTP status, S3's error code and message, the request id,
/// and whether trying again can help.
///
/// `code` is S3's own code (`NoSuchKey`, `SlowDown`, `PreconditionFailed`, ...) or one of ours for failures that
/// never got an S3 answer (`ConnectionFailed`, `Timeout`, `TransferStalled`, ...). It is value-free and safe as a
/// metric label. No field ever holds a credential.
public struct S3Error: Error, Sendable, CustomStringConvertible, Hashable {
    /// HTTP status of the answer; 0 when there was none (connection failure, timeout).
    public var status: Int
    /// S3's error code, or ours when S3 did not answer.
    public var code: String
    /// S3's message, or ours.
    public var message: String
    /// `x-amz-request-id`, when S3 answered.
    public var requestID: String?
    /// `x-amz-id-2`, when S3 answered.
    public var hostID: String?
    /// What was being done, e.g. `PutObject s3://bucket/key`.
    public var operation: String
    /// Whether the standard retry strategy may try again.
    public var isRetryable: Bool
    /// Whether this is a timeout (costs more of the retry quota).
    public var isTimeout: Bool

    /// Creates an error.
    public init(
        status: Int, code: String, message: String, requestID: String? = nil, hostID: String? = nil,
        operation: String = "", isRetryable: Bool? = nil, isTimeout: Bool = false
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.requestID = requestID
        self.hostID = hostID
        self.operation = operation
        self.isTimeout = isTimeout
        self.isRetryable = isRetryable ?? S3Error.isRetryable(status: status, code: code)
    }

    /// `operation: code (HTTP status): message [request id]`.
    public var description: String {
        var text = operation.isEmpty ? "" : operation + ": "
        text += code
        if status > 0 { text += " (HTTP \(status))" }
        if !message.isEmpty { text += ": " + message }
        if let requestID { text += " [request id \(requestID)]" }
        return text
    }

    /// Throttling codes: retried, and the reason to back off.
    public static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
        "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
        "PriorRequestNotComplete", "EC2ThrottledException",
    ]

    /// Transient codes that come with a 4xx status but are worth retrying (as the AWS SDKs do).
    public static let transientCodes: Set<String> = [
        "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable", "IDPCommunicationError",
        "ConnectionFailed", "ConnectionReset", "Timeout", "TransferStalled", "IncompleteResponse",
    ]

    /// Clock-skew codes: retried once the clock offset is corrected.
    public static let clockSkewCodes: Set<String> = [
        "RequestTimeTooSkewed", "RequestExpired", "InvalidSignatureException", "SignatureDoesNotMatchSkew",
        "AuthFailure", "RequestInTheFuture",
    ]

    /// The AWS "standard" retry rules: 5xx, throttling and transient codes; never other 4xx.
    public static func isRetryable(status: Int, code: String) -> Bool {
        if throttlingCodes.contains(code) || transientCodes.contains(code) { return true }
        if status == 0 { return true }  // no answer at all: connection or timeout
        return [500, 502, 503, 504].contains(status)
    }

    /// Whether S3 asked us to slow down.
    public var isThrottling: Bool { S3Error.throttlingCodes.contains(code) || status == 429 }

    package static func credentialsNotFound(_ message: String, operation: String = "") -> S3Error {
        S3Error(status: 0, code: "CredentialsNotFound", message: message, operation: operation, isRetryable: false)
    }

    package static func invalidConfiguration(_ message: String, operation: String = "") -> S3Error {
        S3Error(status: 0, code: "InvalidConfiguration", message: message, operation: operation, isRetryable: false)
    }

    static func invalidRequest(_ message: String, operation: String = "") -> S3Error {
        S3Error(status: 0, code: "InvalidRequest", message: message, operation: operation, isRetryable: false)
    }
}
