import Drain
import Foundation
import PipelineStorage
import Testing

@testable import Spool

@Suite("Drainer lifecycle: lease renewal, takeover, stopping, --once, retained payloads")
struct DrainerLifecycleTests {
    /// A directory target whose puts take `delay` (cancellable) before they are passed on.
    func slowStores(delay: Duration, stores: Shared<[InstrumentedStore]>) -> Drainer.StoreResolver {
        resolver { base in
            let store = InstrumentedStore(base) { call, _, _ in
                if call == .put { try await Task.sleep(for: delay) }
            }
            stores.update { $0.append(store) }
            return store
        }
    }

    func spoolSmall(_ storage: PipelineStorage, bundle id: String, count: Int) async throws -> [SpooledResource] {
        try await storage.withBundle(id) { bundle in
            var spooled: [SpooledResource] = []
            for index in 0..<count {
                spooled.append(
                    try await bundle.writeResource(
                        url: "https://example.com/\(id)/\(index)", contentType: "text/plain", statusCode: 200,
                        bytes: content(size: 1_000 + index, seed: 1_000 + index)))
            }
            return spooled
        }
    }

    @Test("Two drainers, uploads slower than the lease: leases are renewed, nothing is reclaimed or written twice")
    func renewal() async throws {
        try await withTestDirectory { directory in
            let storage = try PipelineStorage(
                directory: directory.target, prefix: "", options: testStorageOptions(),
                spool: .directory(directory.spool))
            let spooled = try await spoolSmall(storage, bundle: "slow", count: 6)
            var options = testDrainOptions()
            options.concurrency = 3
            // Renewed every 500 ms: a renewal must be a second late to lose a lease (600 ms leases lost some when
            // the whole suite ran in parallel on two loaded cores).
            options.leaseDuration = .milliseconds(1_500)
            let stores = Shared<[InstrumentedStore]>([])
            let resolve = slowStores(delay: .milliseconds(3_200), stores: stores)
            let drainers = (0..<2).map { _ in
                Drainer(spool: storage.spool, options: options, logger: testLogger(), resolveStore: resolve)
            }
            let results = try await withThrowingTaskGroup(of: DrainProgress.self) { group in
                for drainer in drainers { group.addTask { try await drainer.run() } }
                var results: [DrainProgress] = []
                for try await progress in group { results.append(progress) }
                return results
            }
            #expect(results.map(\.leasesLost) == [0, 0])
            #expect(results.map(\.delivered).reduce(0, +) == 7)
            #expect(try await storage.spool.auditEvents(action: "lease.reclaimed").isEmpty)
            for resource in spooled {
                let puts = stores.get().map { $0.count(.put, key: resource.objectKey) }.reduce(0, +)
                #expect(puts == 1, "\(resource.objectKey) was written \(puts) times")
                let row = try await storage.spool.row(resource.id)
                #expect(row.state == .done && row.attempts == 0)
                let claims = try await storage.spool.resourceDetail(resource.id).events.filter {
                    $0.action == "resource.claimed"
                }
                #expect(claims.count == 1)
            }
        }
    }

    /// One small resource spooled, and a drainer (900 ms leases) whose put of it has started and takes `putDelay`.
    struct SlowDelivery {
        let spool: SpoolStore
        let resource: SpooledResource
        let drainer: Drainer
        let stores: Shared<[InstrumentedStore]>
        let run: Task<DrainProgress, any Error>
    }

    func startSlowDelivery(
        _ directory: TestDirectory, bundle: String, putDelay: Duration, adjust: (inout DrainOptions) -> Void = { _ in }
    ) async throws -> SlowDelivery {
        let storage = try PipelineStorage(
            directory: directory.target, prefix: "", options: testStorageOptions(), spool: .directory(directory.spool))
        let resource = try #require(try await spoolSmall(storage, bundle: bundle, count: 1).first)
        var options = testDrainOptions(untilDone: false)
        options.leaseDuration = .milliseconds(900)
        adjust(&options)
        let stores = Shared<[InstrumentedStore]>([])
        let drainer = Drainer(
            spool: storage.spool, options: options, logger: testLogger(),
            resolveStore: slowStores(delay: putDelay, stores: stores))
        let run = Task { try await drainer.run() }
        let started = try await eventually(timeout: .seconds(30)) {
            stores.get().first?.count(.put, key: resource.objectKey) == 1
        }
        if !started { drainer.stop() }
        try #require(started, "the drainer did not start the put within 30 s")
        return SlowDelivery(spool: storage.spool, resource: resource, drainer: drainer, stores: stores, run: run)
    }

    @Test("A drainer whose own lease ran out while it was stalled does not start a second delivery of that resource")
    func ownExpiredLeaseNotClaimedAgain() async throws {
        try await withTestDirectory { directory in
            let delivery = try await startSlowDelivery(directory, bundle: "stalled", putDelay: .seconds(20)) {
                $0.pollInterval = .milliseconds(20)
                $0.gracePeriod = .milliseconds(200)
            }
            let (spool, resource, drainer, stores, run) = (
                delivery.spool, delivery.resource, delivery.drainer, delivery.stores, delivery.run
            )
            defer { drainer.stop() }
            let claimed = try await spool.row(resource.id)

            // As if the process had stalled past its lease: the lease runs out again and again while the drainer polls
            // (every 20 ms) and renews (every 300 ms). Nobody else claims the row.
            let until = ContinuousClock.now + .milliseconds(1_500)
            while ContinuousClock.now < until {
                try await spool.database.run { connection in
                    _ = try connection.execute(
                        "UPDATE resources SET lease_expires_at = 0 WHERE id = ?", [.integer(resource.id)])
                }
                try await Task.sleep(for: .milliseconds(10))
            }

            let row = try await spool.row(resource.id)
            #expect(row.fencingToken == claimed.fencingToken, "claimed again by its own drainer")
            #expect(stores.get().first?.count(.put, key: resource.objectKey) == 1, "a second upload was started")
            #expect(drainer.progress.inFlight == 1)
            let claims = try await spool.resourceDetail(resource.id).events.filter { $0.action == "resource.claimed" }
            #expect(claims.count == 1)
            drainer.stop()
            _ = try await run.value
            #expect(drainer.progress.inFlight == 0)
        }
    }

    @Test("A drainer whose lease was taken over stops that delivery and records nothing over the new claim")
    func takeover() async throws {
        try await withTestDirectory { directory in
            let delivery = try await startSlowDelivery(directory, bundle: "taken", putDelay: .seconds(60))
            let (spool, resource, drainer, stores, run) = (
                delivery.spool, delivery.resource, delivery.drainer, delivery.stores, delivery.run
            )
            defer { drainer.stop() }
            let claimed = try await spool.row(resource.id)
            #expect(claimed.state == .uploading && claimed.leaseOwner == drainer.owner)

            // Another drainer takes the row over (as if the lease had run out). The first drainer may renew its lease
            // between the two statements: then again.
            var taken: DeliveryClaim?
            for _ in 0..<50 where taken == nil {
                try await spool.database.run { connection in
                    _ = try connection.execute(
                        "UPDATE resources SET lease_expires_at = 0 WHERE id = ?", [.integer(resource.id)])
                }
                taken = try await spool.claimDue(owner: "other-drainer", limit: 1, leaseDuration: .seconds(60)).first
            }
            let theirs = try #require(taken)
            #expect(theirs.reclaimedFrom == drainer.owner)
            let afterTakeover = try await spool.row(resource.id)

            // The first drainer notices at its next renewal and stops the upload.
            // Loose for a loaded machine, and still well below the 60 s the put would take.
            #expect(try await eventually(timeout: .seconds(30)) { drainer.progress.inFlight == 0 })
            drainer.stop()
            _ = try await run.value
            #expect(stores.get().first?.completedCount(.put) == 0, "the upload was cancelled before it was sent")
            #expect(!FileManager.default.fileExists(atPath: directory.target + "/" + resource.objectKey))
            #expect(try await spool.row(resource.id) == afterTakeover, "nothing recorded over the new claim")

            // The new owner finishes with its token.
            try await spool.recordDelivered(
                id: resource.id, token: theirs.token, etag: "theirs", versionID: nil, retainPayload: false)
            #expect(try await spool.row(resource.id).state == .done)
        }
    }

    @Test("Stopping: deliveries still running after the grace period are cancelled and released, no attempt counted")
    func gracefulStop() async throws {
        try await withTestDirectory { directory in
            let storage = try PipelineStorage(
                directory: directory.target, prefix: "", options: testStorageOptions(),
                spool: .directory(directory.spool))
            let spooled = try await spoolSmall(storage, bundle: "stopped", count: 3)
            var options = testDrainOptions(untilDone: false)
            options.gracePeriod = .milliseconds(200)
            let stores = Shared<[InstrumentedStore]>([])
            let drainer = Drainer(
                spool: storage.spool, options: options, logger: testLogger(),
                resolveStore: slowStores(delay: .seconds(30), stores: stores))
            let run = Task { try await drainer.run() }
            try #require(
                try await eventually(timeout: .seconds(30)) { stores.get().first?.count(.put) == 3 })
            let start = ContinuousClock.now
            drainer.stop()
            let progress = try await run.value
            // Loose for a loaded machine, and still well below the 30 s the uploads would take.
            #expect(ContinuousClock.now - start < .seconds(20), "stopped within the grace period, not the upload time")
            #expect(progress.delivered == 0 && progress.inFlight == 0)
            for resource in spooled {
                let row = try await storage.spool.row(resource.id)
                #expect(row.state == .pending)
                #expect(row.attempts == 0)
                #expect(row.leaseOwner == nil)
                let released = try await storage.spool.resourceDetail(resource.id).events.last
                #expect(released?.action == "resource.released")
                #expect(released?.detail["reason"] == "drainer stopping")
            }
            // And the next drainer delivers them.
            let next = try await drain(storage.spool, resolver())
            #expect(next.delivered == 4)
        }
    }

    @Test("--once stops when nothing is due, leaving a backoff for later; retainDelivered keeps payloads")
    func onceAndRetain() async throws {
        try await withTestDirectory { directory in
            let storage = try PipelineStorage(
                directory: directory.target, prefix: "", options: testStorageOptions(retryDelay: 30),
                spool: .directory(directory.spool))
            let spooled = try await storage.withBundle("once") { bundle in
                [
                    try await bundle.writeResource(
                        url: "https://example.com/a", contentType: "text/plain", statusCode: 200,
                        bytes: content(size: 100_000, seed: 1)),
                    try await bundle.writeResource(
                        url: "https://example.com/b", contentType: "text/plain", statusCode: 200,
                        bytes: content(size: 100, seed: 2)),
                ]
            }
            let failing = spooled[1].objectKey
            var options = testDrainOptions(untilDone: false)
            options.once = true
            options.retainDelivered = true
            options.maximumRetryDelay = .seconds(60)
            let start = ContinuousClock.now
            let startMilliseconds = SystemClock().nowMilliseconds()
            let progress = try await drain(
                storage.spool, options: options,
                resolver { base in
                    InstrumentedStore(base) { call, key, _ in
                        if call == .put && key == failing {
                            throw ObjectStoreError(.transient, code: "SlowDown", message: "test")
                        }
                    }
                })
            // Loose for a loaded machine, and still well below the 30 s backoff.
            #expect(ContinuousClock.now - start < .seconds(20), "--once did not wait out the 30 s backoff")
            #expect(progress.delivered == 1 && progress.retriesScheduled == 1)
            let delivered = try await storage.spool.row(spooled[0].id)
            #expect(delivered.state == .done)
            #expect(delivered.payloadStorage == .file, "retained")
            #expect(try await storage.spool.payloadBytes(of: spooled[0].id) == content(size: 100_000, seed: 1))
            let waiting = try await storage.spool.row(spooled[1].id)
            #expect(waiting.state == .pending && waiting.attempts == 1)
            // The backoff after the first attempt is between retryDelay (30 s) and maximumRetryDelay (60 s), counted
            // from when the retry was recorded, during the drain: measured from its start, so however long it took.
            let backoff = waiting.nextAttemptAt - startMilliseconds
            #expect(backoff >= 30_000, "next attempt \(backoff) ms after the drain started")
            #expect(waiting.nextAttemptAt <= SystemClock().nowMilliseconds() + 60_000)
        }
    }
}
