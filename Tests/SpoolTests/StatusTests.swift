import Foundation
import Hashing
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite struct StatusTests {
    /// Bundle "sealed-1" with 3 resources (sealed), bundle "open-1" with 2 (open).
    private func populate(_ spool: TestSpool) async throws -> (sealed: [SpooledResource], open: [SpooledResource]) {
        try await spool.openBundle("sealed-1", metadata: ["source": "example.com"])
        var sealed: [SpooledResource] = []
        for (index, size) in [10, 100_000, 20].enumerated() {
            sealed.append(
                try await spool.write(
                    testBytes(size, seed: UInt64(index)), to: "sealed-1", url: "https://example.com/s\(index).bin"))
        }
        try await spool.store.sealBundle("sealed-1")
        try await spool.openBundle("open-1")
        var open: [SpooledResource] = []
        for (index, size) in [5, 70_000].enumerated() {
            open.append(
                try await spool.write(
                    testBytes(size, seed: UInt64(100 + index)), to: "open-1", url: "https://example.com/o\(index).bin"))
        }
        return (sealed, open)
    }

    @Test func statusCountsResourcesBundlesAndManifests() async throws {
        try await withTemporaryDirectory { directory in
            let spool = try await TestSpool(directory + "/spool")
            let (sealed, open) = try await populate(spool)
            let all = sealed + open

            let status = try await spool.store.status()

            #expect(status.spool == directory + "/spool")
            #expect(status.schemaVersion == SchemaMigrator.latestVersion)
            let resources = Dictionary(uniqueKeysWithValues: status.resources.map { ($0.state, $0) })
            #expect(Set(resources.keys) == Set(ResourceState.allCases.map(\.rawValue)))
            #expect(resources["pending"]?.count == 5)
            let pendingBytes: Int64 = 10 + 100_000 + 20 + 5 + 70_000
            #expect(resources["pending"]?.bytes == pendingBytes)
            for state in ["uploading", "done", "failed"] {
                #expect(resources[state]?.count == 0, "\(state)")
                #expect(resources[state]?.bytes == 0, "\(state)")
            }
            let bundles = Dictionary(uniqueKeysWithValues: status.bundles.map { ($0.state, $0.count) })
            #expect(bundles == ["open": 1, "sealed": 1, "delivered": 0, "discarded": 0])
            #expect(status.manifestsPending == 1)
            #expect(status.heldBytes == 170_035)
            #expect(status.oldestPendingSpooledAt == all.map(\.spooledAt).min())
            #expect(status.failuresByCode.isEmpty)
            #expect(status.pausedDestinations.isEmpty)
            // Our own open bundle has a live writer: not abandoned.
            #expect(status.abandonedOpenBundles.isEmpty)
        }
    }

    @Test func anEmptySpoolHasNothingPending() async throws {
        try await withTemporaryDirectory { directory in
            let spool = try await TestSpool(directory + "/spool")
            let status = try await spool.store.status()
            #expect(status.resources.allSatisfy { $0.count == 0 && $0.bytes == 0 })
            #expect(status.bundles.allSatisfy { $0.count == 0 })
            #expect(status.oldestPendingSpooledAt == nil)
            #expect(status.manifestsPending == 0)
            #expect(status.heldBytes == 0)
        }
    }

    @Test func anOpenBundleOfADeadWriterIsReportedAbandoned() async throws {
        try await withTemporaryDirectory { directory in
            let spool = try await TestSpool(directory + "/spool")
            _ = try await populate(spool)
            try await spool.openBundle("other-host")
            let deadPID = try #require(unusedPID())
            let raw = try RawDatabase(directory + "/spool/spool.db")
            try raw.execute("UPDATE bundles SET writer_pid = \(deadPID) WHERE id IN ('open-1', 'other-host')")
            // A bundle held by a process on another host cannot be judged from here.
            try raw.execute("UPDATE bundles SET writer_host = 'some-other-host' WHERE id = 'other-host'")

            let status = try await spool.store.status()

            #expect(status.abandonedOpenBundles == ["open-1"])
            // Sealed bundles are never abandoned, whatever their writer.
            try raw.execute("UPDATE bundles SET writer_pid = \(deadPID) WHERE id = 'sealed-1'")
            #expect(try await spool.store.status().abandonedOpenBundles == ["open-1"])
        }
    }

    @Test func listResourcesFiltersByStateBundleTimeAndLimit() async throws {
        try await withTemporaryDirectory { directory in
            let spool = try await TestSpool(directory + "/spool")
            let (sealed, open) = try await populate(spool)
            let store = spool.store

            let everything = try await store.listResources(ResourceFilter())
            #expect(everything.map(\.id) == (sealed + open).map(\.id))
            #expect(everything.allSatisfy { $0.kind == .resource && $0.state == .pending })

            #expect(try await store.listResources(ResourceFilter(state: .pending)).count == 5)
            #expect(try await store.listResources(ResourceFilter(state: .done)).isEmpty)
            #expect(try await store.listResources(ResourceFilter(state: .failed)).isEmpty)

            let ofSealed = try await store.listResources(ResourceFilter(bundleID: "sealed-1"))
            #expect(ofSealed.map(\.id) == sealed.map(\.id))
            #expect(ofSealed.map(\.seq) == [1, 2, 3])
            #expect(try await store.listResources(ResourceFilter(bundleID: "open-1")).map(\.id) == open.map(\.id))
            #expect(try await store.listResources(ResourceFilter(bundleID: "no-such-bundle")).isEmpty)

            #expect(
                try await store.listResources(ResourceFilter(limit: 2)).map(\.id) == Array(sealed.prefix(2)).map(\.id))
            #expect(try await store.listResources(ResourceFilter(limit: 0)).isEmpty)

            let withManifests = try await store.listResources(ResourceFilter(includeManifests: true))
            #expect(withManifests.count == 6)
            let manifest = try #require(withManifests.first { $0.kind == .manifest })
            #expect(manifest.bundleID == "sealed-1")
            #expect(manifest.objectKey == "data/sealed-1/_bundle.json")
            #expect(manifest.seq == 0)
            #expect(manifest.payloadStorage == .pending)

            let before = try await store.listResources(ResourceFilter(spooledBefore: 0))
            #expect(before.isEmpty)
            let latest = (sealed + open).map(\.spooledAt).max()!
            #expect(try await store.listResources(ResourceFilter(spooledBefore: latest + 1)).count == 5)
        }
    }

    @Test func resourceDetailHasItsBundleDestinationAndAuditTrail() async throws {
        try await withTemporaryDirectory { directory in
            let spool = try await TestSpool(directory + "/spool")
            let (sealed, _) = try await populate(spool)
            let store = spool.store
            let target = sealed[1]

            let detail = try await store.resourceDetail(target.id)

            #expect(detail.resource.id == target.id)
            #expect(detail.resource.sha256 == SHA256Hasher.hexDigest(testBytes(100_000, seed: 1)))
            #expect(detail.resource.objectKey == "data/sealed-1/000002-s1.bin")
            #expect(detail.bundle.id == "sealed-1")
            #expect(detail.bundle.state == .sealed)
            #expect(detail.bundle.resourceCount == 3)
            #expect(detail.bundle.metadata == ["source": "example.com"])
            #expect(detail.destination.id == spool.destinationID)
            #expect(detail.destination.spec.location == "test-bucket")
            #expect(detail.destination.spec.region == "us-east-1")
            #expect(detail.parts.isEmpty)
            let spooled = try #require(detail.events.first { $0.action == "resource.spooled" })
            #expect(detail.events.count == 1)
            #expect(spooled.resourceID == target.id)
            #expect(spooled.bundleID == "sealed-1")
            #expect(spooled.actorPID == Int(getpid()))
            #expect(spooled.actorHost == ActorIdentity.current.host)
            #expect(spooled.detail["to"] == "pending")
            #expect(spooled.detail["size"] == "100000")
            #expect(spooled.at == target.spooledAt)
        }
    }

    @Test func unknownResourcesAreNotFound() async throws {
        try await withTemporaryDirectory { directory in
            let spool = try await TestSpool(directory + "/spool")
            _ = try await populate(spool)
            await expectSpoolError(.resourceNotFound, mentioning: ["99999"]) {
                _ = try await spool.store.resourceDetail(99999)
            }
            await expectSpoolError(.resourceNotFound, mentioning: ["99999"]) {
                _ = try await spool.store.payloadBytes(of: 99999)
            }
        }
    }

    @Test func sealingRecordsTheCountAndIsIdempotent() async throws {
        try await withTemporaryDirectory { directory in
            let spool = try await TestSpool(directory + "/spool")
            _ = try await populate(spool)
            let first = try await spool.store.sealBundle("open-1")
            #expect(first.state == .sealed)
            #expect(first.resourceCount == 2)
            #expect(first.writerPID == nil)
            let again = try await spool.store.sealBundle("open-1")
            #expect(again == first)
            let manifests = try await spool.store.listResources(
                ResourceFilter(bundleID: "open-1", includeManifests: true)
            )
            .filter { $0.kind == .manifest }
            #expect(manifests.count == 1)
            await expectSpoolError(.bundleNotFound, mentioning: ["'missing'"]) {
                try await spool.store.sealBundle("missing")
            }
            await expectSpoolError(.bundleNotOpen, mentioning: ["'open-1'"]) {
                try await spool.write([1, 2, 3], to: "open-1")
            }
            await expectSpoolError(.bundleNotFound, mentioning: ["'missing'"]) {
                try await spool.write([1, 2, 3], to: "missing")
            }
        }
    }
}
