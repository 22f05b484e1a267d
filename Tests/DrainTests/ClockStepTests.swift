import Drain
import Foundation
import PipelineStorage
import Testing

@testable import Spool

/// SPEC §5 when the wall clock steps: lease expiry and backoff live in the index as wall-clock times (several processes
/// read them), while renewal timing and waits inside a process use the monotonic clock. A step forward may end live
/// leases early (fencing tokens and create-only-if-absent writes keep delivery exactly-once); a step back must not
/// leave work waiting for the size of the step.
@Suite("Wall-clock steps: leases and backoff")
struct ClockStepTests {
    @Test(
        "A step back of a day: backoffs, a dead remote drainer's lease and a paused probe are due at once, not tomorrow"
    )
    func stepBack() async throws {
        try await withTestDirectory { directory in
            let (storage, clock) = try storageOnManualClock(directory)
            let spool = storage.spool
            let spooled = try await storage.withBundle("stepped") { bundle in
                var spooled: [SpooledResource] = []
                for index in 0..<3 {
                    spooled.append(
                        try await bundle.writeResource(
                            url: "https://example.com/\(index)", contentType: "text/plain", statusCode: 200,
                            bytes: content(size: 100 + index, seed: index)))
                }
                return spooled
            }

            // A drainer on another host claims one and dies; another claims one and schedules a 10-minute backoff;
            // the third stays pending. A day back, all three times lie beyond any lease or backoff this spool gives.
            let remote = try #require(
                try await spool.claimDue(owner: "elsewhere.example/1/x", limit: 1, leaseDuration: .seconds(60)).first)
            let retried = try #require(
                try await spool.claimDue(owner: "a", limit: 1, leaseDuration: .seconds(60)).first)
            try await spool.recordRetry(
                id: retried.resource.id, token: retried.token, code: "SlowDown", message: "m", delay: .seconds(600))

            clock.advance(by: -86_400_000)
            let claims = try await spool.claimDue(owner: "b", limit: 10, leaseDuration: .seconds(60))
            #expect(Set(claims.map(\.resource.id)) == Set(spooled.map(\.id)), "all three are due after the step back")
            #expect(claims.first { $0.resource.id == remote.resource.id }?.reclaimedFrom == "elsewhere.example/1/x")
            #expect(claims.allSatisfy { $0.token > retried.token })
            for claim in claims {
                try await spool.recordDelivered(
                    id: claim.resource.id, token: claim.token, etag: "e", versionID: nil, retainPayload: false)
            }
            // The remote drainer's old token records nothing.
            await #expect(throws: SpoolError.self) {
                try await spool.recordDelivered(
                    id: remote.resource.id, token: remote.token, etag: "old", versionID: nil, retainPayload: false)
            }

            // A step back smaller than the bounds is waited out, within the backoff bound.
            let manifest = try #require(
                try await spool.claimDue(owner: "c", limit: 1, leaseDuration: .seconds(60)).first)
            try await spool.recordRetry(
                id: manifest.resource.id, token: manifest.token, code: "SlowDown", message: "m", delay: .seconds(60))
            clock.advance(by: -600_000)
            #expect(
                try await spool.claimDue(owner: "c", limit: 1, leaseDuration: .seconds(60)).isEmpty,
                "a 10-minute step back with a 1-minute backoff: 11 minutes to wait, within the bound")
            clock.advance(by: 661_000)
            let again = try #require(
                try await spool.claimDue(owner: "c", limit: 1, leaseDuration: .seconds(60)).first)
            try await spool.recordDelivered(
                id: again.resource.id, token: again.token, etag: "m", versionID: nil, retainPayload: false)
            #expect(try await spool.bundle("stepped")?.state == .delivered)
            let deliveries = try await spool.auditEvents(action: "resource.delivered")
            #expect(deliveries.count == 4)
            #expect(Set(deliveries.compactMap(\.resourceID)).count == 4, "each row delivered once")
        }
    }

    @Test("A paused destination's next probe stamped before a step back is due at once")
    func pausedProbeAfterStepBack() async throws {
        try await withTestDirectory { directory in
            let (storage, clock) = try storageOnManualClock(directory)
            let spool = storage.spool
            let resource = try await storage.withBundle("paused") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/p", contentType: "text/plain", statusCode: 200, bytes: [1])
            }
            let claim = try #require(try await spool.claimDue(owner: "a", limit: 1, leaseDuration: .seconds(60)).first)
            try await spool.pauseDestination(
                claim.resource.destinationID, code: "AccessDenied", message: "m", recheck: .seconds(30))
            try await spool.releaseClaim(id: claim.resource.id, token: claim.token, reason: "paused")
            clock.advance(by: -86_400_000)
            let probe = try await spool.claimDue(
                owner: "b", limit: 5, leaseDuration: .seconds(60), pausedRecheck: .seconds(30))
            #expect(probe.map(\.resource.id) == [resource.id])
            #expect(probe.first?.isProbe == true)
        }
    }

    @Test("Two drainers while the clock jumps a day forward and back every 25 ms: all delivered, each exactly once")
    func drainingWhileTheClockJumps() async throws {
        try await withTestDirectory { directory in
            let (storage, clock) = try storageOnManualClock(directory, options: testStorageOptions(maxRetries: 50))
            var written: [SpooledResource] = []
            for bundle in 0..<3 {
                written += try await storage.withBundle("jumping-\(bundle)") { writer in
                    var spooled: [SpooledResource] = []
                    for index in 0..<12 {
                        spooled.append(
                            try await writer.writeResource(
                                url: "https://example.com/\(bundle)/\(index)", contentType: "text/plain",
                                statusCode: 200, bytes: content(size: 500 + index * 97, seed: bundle * 100 + index)))
                    }
                    return spooled
                }
            }
            let stores = Shared<[InstrumentedStore]>([])
            let resolve = resolver { base in
                // Each put takes 40 ms, so claims are often in flight when the clock jumps.
                let store = InstrumentedStore(base) { call, _, _ in
                    if call == .put { try await Task.sleep(for: .milliseconds(40)) }
                }
                stores.update { $0.append(store) }
                return store
            }
            let options = {
                var options = testDrainOptions()
                options.concurrency = 4
                options.leaseDuration = .seconds(5)
                return options
            }()
            let jumping = Task {
                var forward = true
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(25))
                    clock.advance(by: forward ? 86_400_000 : -86_400_000)
                    forward.toggle()
                }
            }
            let started = ContinuousClock.now
            let results = try await withThrowingTaskGroup(of: DrainProgress.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        let drainer = Drainer(
                            spool: storage.spool, options: options, logger: testLogger(), resolveStore: resolve)
                        let watchdog = Task {
                            try await Task.sleep(for: .seconds(90))
                            Issue.record("a drainer did not finish within 90 s")
                            drainer.stop()
                        }
                        defer { watchdog.cancel() }
                        return try await drainer.run()
                    }
                }
                var results: [DrainProgress] = []
                for try await progress in group { results.append(progress) }
                return results
            }
            jumping.cancel()
            let spool = storage.spool
            let rows = try await spool.allRows()
            #expect(rows.count == written.count + 3)
            #expect(rows.allSatisfy { $0.state == .done }, "not done: \(rows.filter { $0.state != .done }.map(\.id))")
            let deliveries = try await spool.auditEvents(action: "resource.delivered")
            let perRow = Dictionary(grouping: deliveries.compactMap(\.resourceID), by: { $0 }).mapValues(\.count)
            #expect(perRow.count == rows.count && perRow.values.allSatisfy { $0 == 1 }, "deliveries per row: \(perRow)")
            for resource in written {
                let bytes = try readFile(directory.target + "/" + resource.objectKey)
                #expect(sha256Hex(bytes) == resource.sha256)
            }
            let reclaims = try await spool.auditEvents(action: "lease.reclaimed").count
            let puts = stores.get().map { $0.count(.put) }.reduce(0, +)
            print(
                "ClockStepTests: \(rows.count) rows delivered once each in \(ContinuousClock.now - started) while the "
                    + "clock jumped; \(reclaims) leases reclaimed, \(puts) puts, lost leases "
                    + "\(results.map(\.leasesLost))")
        }
    }
}
