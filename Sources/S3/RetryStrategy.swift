import Synchronization

/// AWS "standard" retry mode (as in the SDKs): a few attempts with full-jitter exponential backoff, and a retry quota
/// shared by every request of a client, so that an outage makes the client stop retrying instead of multiplying the
/// load on a struggling service.
///
/// - Retryable: 5xx, throttling codes (including `SlowDown`), transient codes (`RequestTimeout`, connection resets,
///   timeouts). Never other 4xx errors.
/// - Backoff before attempt n+1: a random duration in [0, min(2^n s, maxBackoff)] ("full jitter").
/// - Quota: starts at `capacity` tokens; a retry costs 5 tokens (10 after a timeout); a retry is not made when the
///   quota cannot pay for it. A success after retries gives back what those retries cost; a success at the first
///   attempt gives back 1 token, up to the capacity.
public final class RetryStrategy: Sendable {
    /// Tokens a retry costs.
    public static let retryCost = 5
    /// Tokens a retry after a timeout costs.
    public static let timeoutRetryCost = 10
    /// Tokens a first-attempt success gives back.
    public static let noRetryIncrement = 1

    /// Attempts per request, the first included.
    public let maxAttempts: Int
    /// Longest backoff.
    public let maxBackoff: Duration
    private let capacity: Int
    private let tokens: Mutex<Int>

    /// A strategy with these limits.
    public init(maxAttempts: Int = 3, maxBackoff: Duration = .seconds(20), quotaTokens: Int = 500) {
        self.maxAttempts = max(1, maxAttempts)
        self.maxBackoff = maxBackoff
        self.capacity = quotaTokens
        self.tokens = Mutex(quotaTokens)
    }

    /// Tokens left in the quota.
    public var availableTokens: Int { tokens.withLock { $0 } }

    /// Decides whether to retry after `error` on attempt `attempt` (1-based); takes the quota's cost when it does.
    ///
    /// - Returns: the cost taken, or nil when the request must not be retried.
    public func acquireRetry(after error: S3Error, attempt: Int) -> Int? {
        guard error.isRetryable, attempt < maxAttempts else { return nil }
        let cost = error.isTimeout ? Self.timeoutRetryCost : Self.retryCost
        return tokens.withLock { available in
            guard available >= cost else { return nil }
            available -= cost
            return cost
        }
    }

    /// Records a success; `retryCosts` is what the retries of this request took.
    public func recordSuccess(retryCosts: Int) {
        tokens.withLock { available in
            available = min(capacity, available + (retryCosts > 0 ? retryCosts : Self.noRetryIncrement))
        }
    }

    /// The delay before the next attempt after `attempt` failed: full jitter over min(2^(attempt-1) s, maxBackoff).
    public func backoff(afterAttempt attempt: Int, random: inout some RandomNumberGenerator) -> Duration {
        let exponent = min(attempt - 1, 30)
        let ceiling = min(Double(1 << exponent), Double(maxBackoff.components.seconds))
        return .milliseconds(Int64(Double.random(in: 0...1, using: &random) * ceiling * 1000))
    }
}
