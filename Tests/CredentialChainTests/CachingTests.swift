import CredentialChain
import Foundation
import S3
import Synchronization
import Testing

@Suite("CachingCredentialsProvider: refresh before expiry, single flight, old credentials kept through failures")
struct CachingTests {
    let policy = CredentialsRefreshPolicy(
        refreshBefore: .seconds(300), expiryMargin: .seconds(60), retryAfterFailure: .seconds(30))

    @Test("Credentials without an expiration are fetched once")
    func staticOnce() async throws {
        let clock = ManualClock()
        let source = ScriptedProvider(lifetime: nil, clock: clock.function)
        let cache = CachingCredentialsProvider(source, policy: policy, clock: clock.function)
        for _ in 0..<5 {
            #expect(try await cache.credentials().accessKeyID == "AKIDFETCH1")
            clock.advance(86_400)
        }
        #expect(source.fetches == 1)
    }

    @Test("Temporary credentials are reused until less than refreshBefore is left, then refreshed")
    func refreshBeforeExpiry() async throws {
        let clock = ManualClock()
        let source = ScriptedProvider(lifetime: 3600, clock: clock.function)
        let cache = CachingCredentialsProvider(source, policy: policy, clock: clock.function)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH1")
        clock.advance(3600 - 301)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH1", "301 s left: still good")
        clock.advance(2)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH2", "299 s left: refreshed")
        #expect(source.fetches == 2)
        #expect(cache.fetchCount == 2)
    }

    @Test("Single flight: 50 concurrent callers share one fetch, first use and refresh alike")
    func singleFlight() async throws {
        let clock = ManualClock()
        let source = ScriptedProvider(lifetime: 3600, clock: clock.function)
        let cache = CachingCredentialsProvider(source, policy: policy, clock: clock.function)
        for round in 1...2 {
            source.hold()
            let keys = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<50 { group.addTask { try await cache.credentials().accessKeyID } }
                // Let every caller reach the cache before the one fetch is released.
                while source.waiting == 0 { try await Task.sleep(for: .milliseconds(5)) }
                try await Task.sleep(for: .milliseconds(100))
                source.release()
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(source.fetches == round)
            #expect(Set(keys) == ["AKIDFETCH\(round)"])
            clock.advance(3600 - 200)  // into the refresh window for the next round
        }
    }

    @Test("A refresh that fails while the credentials are still good keeps them, and is retried later")
    func failedRefreshKeepsOldCredentials() async throws {
        let clock = ManualClock()
        let events = Mutex<[String]>([])
        let source = ScriptedProvider(lifetime: 3600, clock: clock.function)
        let cache = CachingCredentialsProvider(source, policy: policy, clock: clock.function) { event in
            switch event {
            case .refreshed: events.withLock { $0.append("refreshed") }
            case .refreshFailedKeepingOld(let error, _): events.withLock { $0.append("kept after \(error.code)") }
            }
        }
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH1")
        source.setFailing(true)
        clock.advance(3600 - 200)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH1", "refresh failed: the old ones stay")
        #expect(source.fetches == 2)
        clock.advance(10)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH1")
        #expect(source.fetches == 2, "no new attempt before retryAfterFailure")
        clock.advance(25)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH1")
        #expect(source.fetches == 3, "tried again after retryAfterFailure, failed again, still the old ones")
        source.setFailing(false)
        clock.advance(31)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH4")
        #expect(
            events.withLock { $0 } == [
                "refreshed", "kept after ServiceUnavailable", "kept after ServiceUnavailable", "refreshed",
            ])
    }

    @Test("Within expiryMargin of expiring, a failed refresh is an error; the next success recovers")
    func expiredCredentialsNeedARefresh() async throws {
        let clock = ManualClock()
        let source = ScriptedProvider(lifetime: 3600, clock: clock.function)
        let cache = CachingCredentialsProvider(source, policy: policy, clock: clock.function)
        _ = try await cache.credentials()
        source.setFailing(true)
        clock.advance(3600 - 59)
        await expectS3Error("ServiceUnavailable") { _ = try await cache.credentials() }
        await expectS3Error("ServiceUnavailable") { _ = try await cache.credentials() }
        #expect(source.fetches == 3, "expired credentials: every call tries (no backoff past the margin)")
        source.setFailing(false)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH4")
    }

    @Test("The first fetch failing is an error, and the next call tries again")
    func firstFetchFailure() async throws {
        let clock = ManualClock()
        let source = ScriptedProvider(lifetime: 3600, clock: clock.function)
        source.setFailing(true)
        let cache = source.cached(policy: policy, clock: clock.function)
        await expectS3Error("ServiceUnavailable") { _ = try await cache.credentials() }
        source.setFailing(false)
        #expect(try await cache.credentials().accessKeyID == "AKIDFETCH2")
    }
}
