import Foundation
import S3
import Synchronization

/// When cached temporary credentials are refreshed.
public struct CredentialsRefreshPolicy: Sendable, Hashable {
    /// Refresh when less than this is left before the credentials expire. While a refresh fails, the old
    /// credentials are still handed out until `expiryMargin`.
    public var refreshBefore: Duration = .seconds(300)
    /// Credentials with less than this left count as expired: callers wait for new ones, and get the refresh's error
    /// when it fails. Keeps requests from being signed with credentials that expire before the server checks them.
    public var expiryMargin: Duration = .seconds(60)
    /// After a failed refresh while the old credentials are still good, wait this long before trying again.
    public var retryAfterFailure: Duration = .seconds(30)

    /// The defaults: refresh 5 minutes before expiry, expired 1 minute before, retry a failed refresh after 30 s.
    public init() {}

    /// A policy with these durations.
    public init(refreshBefore: Duration, expiryMargin: Duration, retryAfterFailure: Duration) {
        self.refreshBefore = refreshBefore
        self.expiryMargin = expiryMargin
        self.retryAfterFailure = retryAfterFailure
    }
}

/// Caches what another provider resolves and refreshes temporary credentials before they expire.
///
/// - Credentials without an expiration are fetched once and kept.
/// - Temporary credentials are kept until less than `refreshBefore` is left; then the next caller starts a refresh
///   and every concurrent caller waits for that same one (single flight: N callers, one fetch).
/// - A refresh that fails while the old credentials are still good (more than `expiryMargin` left) is not an error:
///   the old credentials are handed out and the refresh is tried again `retryAfterFailure` later, so uploads carry
///   on through a short outage of STS or the metadata service.
/// - Once the credentials are within `expiryMargin` of expiring, callers wait for a refresh and get its error when it
///   fails.
///
/// The clock is injectable so that tests move time instead of sleeping.
public final class CachingCredentialsProvider: CredentialsProvider {
    /// What happened, for a log line (never a secret).
    public enum Event: Sendable {
        /// New credentials were fetched (`expiration` nil: they do not expire).
        case refreshed(expiration: Date?)
        /// A refresh failed while the old credentials were still good; they stay in use.
        case refreshFailedKeepingOld(S3Error, oldExpiration: Date)
    }

    private struct State {
        var cached: AWSCredentials?
        var refresh: Task<AWSCredentials, any Error>?
        /// Set after a failed refresh that left good credentials: no new attempt before this time.
        var nextAttempt: Date?
        var fetches = 0
    }

    private let source: any CredentialsProvider
    private let policy: CredentialsRefreshPolicy
    private let clock: @Sendable () -> Date
    private let observer: (@Sendable (Event) -> Void)?
    private let state = Mutex(State())

    /// A cache in front of `source`.
    ///
    /// - Parameters:
    ///   - source: The provider that fetches (called once per refresh).
    ///   - policy: When to refresh.
    ///   - clock: The current time.
    ///   - observer: Told of refreshes and of failed refreshes that kept the old credentials.
    public init(
        _ source: any CredentialsProvider, policy: CredentialsRefreshPolicy = CredentialsRefreshPolicy(),
        clock: @escaping @Sendable () -> Date = { Date() }, observer: (@Sendable (Event) -> Void)? = nil
    ) {
        self.source = source
        self.policy = policy
        self.clock = clock
        self.observer = observer
    }

    /// How many times the source has been asked (for tests and diagnostics).
    public var fetchCount: Int { state.withLock { $0.fetches } }

    /// The cached credentials, fetched or refreshed first when needed.
    ///
    /// - Throws: The source's error when there are no credentials yet, or they are within `expiryMargin` of expiring
    ///   and the refresh failed; `CancellationError`.
    public func credentials() async throws -> AWSCredentials {
        enum Step {
            case use(AWSCredentials)
            case wait(Task<AWSCredentials, any Error>)
        }
        let now = clock()
        // One decision under the lock: use the cache, join the refresh in flight, or start the only one.
        let step = state.withLock { state -> Step in
            if let cached = state.cached {
                guard let expiration = cached.expiration else { return .use(cached) }
                let left = expiration.timeIntervalSince(now)
                if left > policy.refreshBefore.seconds { return .use(cached) }
                if left > policy.expiryMargin.seconds, state.refresh == nil, let next = state.nextAttempt, now < next {
                    return .use(cached)
                }
            }
            if let running = state.refresh { return .wait(running) }
            state.fetches += 1
            let started = Task { try await self.refresh() }
            state.refresh = started
            return .wait(started)
        }
        let task: Task<AWSCredentials, any Error>
        switch step {
        case .use(let credentials): return credentials
        case .wait(let running): task = running
        }
        do {
            return try await task.value
        } catch {
            // A failed refresh is only an error when the old credentials cannot be used any more.
            let fallback = state.withLock { state -> AWSCredentials? in
                guard let cached = state.cached, let expiration = cached.expiration,
                    expiration.timeIntervalSince(clock()) > policy.expiryMargin.seconds
                else { return nil }
                return cached
            }
            if let fallback { return fallback }
            throw error
        }
    }

    /// Runs once per refresh (the shared task): fetches, stores, and remembers a failure.
    private func refresh() async throws -> AWSCredentials {
        do {
            let fresh = try await source.credentials()
            state.withLock { state in
                state.cached = fresh
                state.refresh = nil
                state.nextAttempt = nil
            }
            observer?(.refreshed(expiration: fresh.expiration))
            return fresh
        } catch {
            let kept = state.withLock { state -> Date? in
                state.refresh = nil
                state.nextAttempt = clock().addingTimeInterval(policy.retryAfterFailure.seconds)
                guard let expiration = state.cached?.expiration,
                    expiration.timeIntervalSince(clock()) > policy.expiryMargin.seconds
                else { return nil }
                return expiration
            }
            if let kept, let observer {
                observer(.refreshFailedKeepingOld(error as? S3Error ?? Self.wrap(error), oldExpiration: kept))
            }
            throw error
        }
    }

    private static func wrap(_ error: any Error) -> S3Error {
        S3Error(status: 0, code: "CredentialsRefreshFailed", message: "\(error)", isRetryable: true)
    }
}

extension CredentialsProvider {
    /// This provider behind a `CachingCredentialsProvider`.
    public func cached(
        policy: CredentialsRefreshPolicy = CredentialsRefreshPolicy(),
        clock: @escaping @Sendable () -> Date = { Date() }
    ) -> CachingCredentialsProvider {
        CachingCredentialsProvider(self, policy: policy, clock: clock)
    }
}

extension Duration {
    /// The duration in seconds, as a `TimeInterval`.
    var seconds: TimeInterval {
        let (whole, attoseconds) = components
        return TimeInterval(whole) + TimeInterval(attoseconds) / 1e18
    }
}
