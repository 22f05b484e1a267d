import Foundation
import PipelineStorage
import Testing

@testable import Drain
@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite("Claims, leases and fencing tokens")
struct LeaseTests {
    func expectLeaseLost(_ what: String, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("\(what) with a stale token succeeded")
        } catch let error as SpoolError {
            #expect(error.code == .leaseLost, "\(what): \(error)")
        } catch {
            Issue.record("\(what): unexpected \(error)")
        }
    }

    @Test(
        "An expired lease is reclaimed with a new token; the old token can record nothing; the manifest waits for every resource"
    )
    func fencing() async throws {
        try await withTestDirectory { directory in
            // Time is moved by hand, not slept through: a loaded machine must not expire a lease early.
            let (storage, clock) = try storageOnManualClock(directory)
            let spool = storage.spool
            let spooled = try await storage.withBundle("leased") { bundle in
                [
                    try await bundle.writeResource(
                        url: "https://example.com/1", contentType: "text/plain", statusCode: 200, bytes: [1, 2, 3]),
                    try await bundle.writeResource(
                        url: "https://example.com/2", contentType: "text/plain", statusCode: 200,
                        bytes: content(size: 100_000, seed: 5)),
                ]
            }

            let first = try await spool.claimDue(owner: "a", limit: 10, leaseDuration: .milliseconds(200))
            #expect(first.count == 2, "both resources, and not the manifest of a bundle with resources not done")
            #expect(first.allSatisfy { $0.resource.kind == .resource && $0.resource.state == .uploading })
            #expect(Set(first.map(\.token)).count == 2, "every claim has its own token")
            let one = try #require(first.first { $0.resource.id == spooled[0].id })
            let two = try #require(first.first { $0.resource.id == spooled[1].id })
            #expect(try await spool.claimDue(owner: "x", limit: 10, leaseDuration: .seconds(10)).isEmpty, "leased")

            try await spool.recordDelivered(
                id: one.resource.id, token: one.token, etag: "e1", versionID: nil, retainPayload: false)
            #expect(
                try await spool.claimDue(owner: "x", limit: 10, leaseDuration: .seconds(10)).isEmpty,
                "the manifest waits while a resource of its bundle is not done")

            clock.advance(by: 300)
            let second = try await spool.claimDue(owner: "b", limit: 10, leaseDuration: .seconds(10))
            #expect(second.count == 1)
            let retaken = try #require(second.first)
            #expect(retaken.resource.id == two.resource.id)
            #expect(retaken.token > two.token, "a new, larger fencing token")
            #expect(retaken.reclaimedFrom == "a")
            #expect(retaken.resource.leaseOwner == "b")
            let reclaimed = try await spool.auditEvents(action: "lease.reclaimed")
            #expect(reclaimed.count == 1)
            #expect(reclaimed.first?.detail["from"] == "a" && reclaimed.first?.detail["to"] == "b")

            // The old claim can change nothing.
            let before = try await spool.row(two.resource.id)
            let id = two.resource.id
            let stale = two.token
            await expectLeaseLost("recordDelivered") {
                try await spool.recordDelivered(id: id, token: stale, etag: "old", versionID: nil, retainPayload: false)
            }
            await expectLeaseLost("recordFailed") {
                try await spool.recordFailed(id: id, token: stale, code: "x", message: "x")
            }
            await expectLeaseLost("recordRetry") {
                try await spool.recordRetry(id: id, token: stale, code: "x", message: "x", delay: .seconds(1))
            }
            await expectLeaseLost("releaseClaim") { try await spool.releaseClaim(id: id, token: stale, reason: "x") }
            await expectLeaseLost("recordUploadStarted") {
                try await spool.recordUploadStarted(id: id, token: stale, uploadID: "u", partSize: 5 << 20)
            }
            await expectLeaseLost("recordPart") {
                try await spool.recordPart(
                    id: id, token: stale,
                    part: PartRecord(
                        uploadID: "u", partNumber: 1, size: 1, etag: "e", checksumCRC32C: nil, checksumSHA256: nil,
                        recordedAt: 0))
            }
            #expect(try await spool.renewLeases([(id: id, token: stale)], leaseDuration: .seconds(10)) == [id])
            #expect(try await spool.row(id) == before, "the stale token changed nothing")
            #expect(try await spool.resourceDetail(id).parts.isEmpty)
            #expect(FileManager.default.fileExists(atPath: directory.spool + "/" + (before.payloadPath ?? "-")))

            // The new claim can.
            #expect(try await spool.renewLeases([(id: id, token: retaken.token)], leaseDuration: .seconds(10)).isEmpty)
            try await spool.recordDelivered(
                id: id, token: retaken.token, etag: "e2", versionID: nil, retainPayload: false)
            let done = try await spool.row(id)
            #expect(done.state == .done && done.etag == "e2" && done.leaseOwner == nil)

            // Now the manifest is due.
            let manifest = try await spool.claimDue(owner: "c", limit: 10, leaseDuration: .seconds(10))
            #expect(manifest.count == 1)
            #expect(manifest.first?.resource.kind == .manifest)
            #expect(manifest.first?.resource.bundleID == "leased")
            #expect(manifest.first.map { $0.token > retaken.token } == true)
        }
    }

    @Test("Resources a drainer is still delivering are not claimed by it again after their leases run out; others may")
    func claimExcludesResourcesInFlight() async throws {
        try await withTestDirectory { directory in
            let (storage, clock) = try storageOnManualClock(directory)
            let spool = storage.spool
            let spooled = try await storage.withBundle("excluded") { bundle in
                var spooled: [SpooledResource] = []
                for index in 1...3 {
                    spooled.append(
                        try await bundle.writeResource(
                            url: "https://example.com/\(index)", contentType: "text/plain", statusCode: 200,
                            bytes: [UInt8(index)]))
                }
                return spooled
            }
            let first = try await spool.claimDue(owner: "a", limit: 10, leaseDuration: .milliseconds(200))
            #expect(Set(first.map(\.resource.id)) == Set(spooled.map(\.id)))
            clock.advance(by: 300)

            let stillDelivering: Set<Int64> = [spooled[0].id, spooled[2].id]
            let again = try await spool.claimDue(
                owner: "a", limit: 10, leaseDuration: .seconds(10), excluding: stillDelivering)
            #expect(again.map(\.resource.id) == [spooled[1].id], "only the one not in flight")
            let renewed = try await spool.renewLeases(
                first.filter { stillDelivering.contains($0.resource.id) }.map { (id: $0.resource.id, token: $0.token) },
                leaseDuration: .milliseconds(200))
            #expect(renewed.isEmpty, "an expired lease nobody took is renewed with its own token")

            clock.advance(by: 300)
            let other = try await spool.claimDue(owner: "b", limit: 10, leaseDuration: .seconds(10))
            #expect(Set(other.map(\.resource.id)) == stillDelivering, "another drainer takes the expired leases over")
        }
    }

    @Test("A transfer slot waited for is given up at once when the waiting task is cancelled; the slots stay counted")
    func semaphoreWaitIsCancellable() async throws {
        let semaphore = AsyncSemaphore(permits: 1)
        let release = Wakeup()
        let holder = Task { try await semaphore.withPermit { await release.wait(timeout: .seconds(60)) } }
        try #require(try await eventually(timeout: .seconds(10)) { semaphore.availablePermits == 0 })
        let waiter = Task { try await semaphore.withPermit { "ran" } }
        try #require(try await eventually(timeout: .seconds(10)) { semaphore.waitingCount == 1 })
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(semaphore.waitingCount == 0)

        let cancelledFirst = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await semaphore.withPermit { "ran" }
        }
        await #expect(throws: CancellationError.self) { try await cancelledFirst.value }

        release.signal()
        try await holder.value
        #expect(semaphore.availablePermits == 1)
        #expect(try await semaphore.withPermit { "ran" } == "ran")
        #expect(semaphore.availablePermits == 1)
    }

    @Test("A lease held by a dead process on this host is reclaimed at once; live and remote owners keep theirs")
    func deadOwners() async throws {
        try await withTestDirectory { directory in
            let storage = try PipelineStorage(
                directory: directory.target, prefix: "", options: testStorageOptions(),
                spool: .directory(directory.spool))
            let spool = storage.spool
            let host = ActorIdentity.current.host
            let deadPID = try #require(unusedPID(), "no pid is free beyond pid_max")

            // Claimed one at a time, the dead owner last (any claim expires the leases of dead local owners).
            var owners: [Int64: String] = [:]
            var resources: [SpooledResource] = []
            for name in ["remote", "live", "dead"] {
                resources.append(
                    try await storage.withBundle(name) { bundle in
                        try await bundle.writeResource(
                            url: "https://example.com/\(name)", contentType: "text/plain", statusCode: 200,
                            bytes: Array(name.utf8))
                    })
            }
            for (resource, owner) in zip(
                resources, ["elsewhere.example/\(deadPID)/x", "\(host)/\(getpid())/other", "\(host)/\(deadPID)/x"])
            {
                let claims = try await spool.claimDue(owner: owner, limit: 1, leaseDuration: .seconds(60))
                #expect(claims.map(\.resource.id) == [resource.id])
                owners[resource.id] = owner
            }

            let start = ContinuousClock.now
            let reclaimed = try await spool.claimDue(owner: "drainer-c", limit: 10, leaseDuration: .seconds(60))
            // At once, not after the 60 s lease: the bound is loose for a loaded machine, and still well below it.
            #expect(ContinuousClock.now - start < .seconds(30))
            #expect(reclaimed.count == 1, "only the dead local owner's lease: \(reclaimed.map(\.reclaimedFrom))")
            #expect(reclaimed.first?.reclaimedFrom == "\(host)/\(deadPID)/x")
            #expect(reclaimed.first.map { owners[$0.resource.id] } == "\(host)/\(deadPID)/x")
            for (id, owner) in owners where owner != "\(host)/\(deadPID)/x" {
                #expect(try await spool.row(id).leaseOwner == owner)
            }
        }
    }

    @Test("A wait ended early by a signal leaves no stale signal behind (an idle drainer waits instead of spinning)")
    func wakeupDoesNotSpin() async throws {
        let wakeup = Wakeup()
        let waiter = Task { await wakeup.wait(timeout: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(50))
        wakeup.signal()
        await waiter.value
        try await Task.sleep(for: .milliseconds(50))  // the first wait's timer is cancelled by now
        for _ in 0..<3 {
            let start = ContinuousClock.now
            await wakeup.wait(timeout: .milliseconds(200))
            #expect(ContinuousClock.now - start >= .milliseconds(150), "the wait returned at once")
        }
    }
}

/// Storage to the directory target whose spool stamps rows with a `ManualClock`.
func storageOnManualClock(_ directory: TestDirectory, options: StorageOptions = testStorageOptions()) throws
    -> (storage: PipelineStorage, clock: ManualClock)
{
    let clock = ManualClock()
    var spoolOptions = SpoolOptions()
    spoolOptions.clock = clock
    let storage = try PipelineStorage(
        directory: directory.target, prefix: "", options: options, spool: .directory(directory.spool),
        spoolOptions: spoolOptions)
    return (storage, clock)
}

/// A wall clock that only moves when told to.
final class ManualClock: SpoolClock, @unchecked Sendable {
    // @unchecked: `now` is guarded by the lock.
    private let lock = NSLock()
    private var now: Int64 = 1_800_000_000_000

    func nowMilliseconds() -> Int64 { lock.withLock { now } }

    func advance(by milliseconds: Int64) { lock.withLock { now += milliseconds } }
}
