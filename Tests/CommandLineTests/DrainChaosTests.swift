import Foundation
@testable import LocalS3Support
import S3
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §5 under a hostile network, and graceful shutdown: spool-drain talks to moto through a fault proxy (its own,
/// so the rules are this suite's alone); verification talks to moto directly.
@Suite("spool-drain through a fault proxy, and SIGTERM", .serialized)
struct DrainChaosTests {
    @Test("Through the fault proxy: resets, lost answers, 500s, SlowDown and stalls; everything delivered once")
    func throughTheFaultProxy() async throws {
        try await withTemporaryDirectory(prefix: "drain-chaos") { directory in
            var scenario = try await DrainScenario.make(directory: directory)
            let proxy = try await LocalS3.shared.newFaultProxy()
            // The spool records the proxy as the destination's endpoint: spool-drain takes it from there.
            try await scenario.load(
                endpoint: proxy.endpoint, bundles: 1, resources: 4, minSize: "17MiB", maxSize: "32MiB", seed: 401)
            try #require(scenario.writes.filter { $0.size >= 16 << 20 }.count >= 3)
            try await scenario.load(
                endpoint: proxy.endpoint, bundles: 9, resources: 20, minSize: "0", maxSize: "256KiB", seed: 402)
            try await proxy.configure(
                [
                    // Certain, besides the random ones: the first CreateMultipartUpload and the first
                    // CompleteMultipartUpload are applied by the server and their answers lost.
                    FaultProxy.Rule(fault: "drop_response", nth: [1], method: "POST", pathRegex: "\\?uploads"),
                    FaultProxy.Rule(fault: "drop_response", nth: [1], method: "POST", pathRegex: "[?&]uploadId="),
                    FaultProxy.Rule(fault: "reset", probability: 0.05),
                    FaultProxy.Rule(fault: "drop_response", probability: 0.05),
                    FaultProxy.Rule(fault: "error500", probability: 0.05),
                    FaultProxy.Rule(fault: "slowdown", probability: 0.05),
                    // The proxy closes a stalled connection after 3 s, which the client sees as a lost connection
                    // and retries. (A stall that never ends is caught by the transport's low-speed limit, 1 KiB/s
                    // over 30 s: too slow for this test.)
                    FaultProxy.Rule(fault: "stall", probability: 0.02, seconds: 3),
                ], seed: 20_261_124)

            let started = ContinuousClock.now
            let drainer = try scenario.startDrainer(
                ["--until-done", "--concurrency", "4", "--lease-seconds", "5"], logPath: directory + "/drain.log")
            let finished = await drainer.waitForExit(timeout: .seconds(240))
            if !finished { await drainer.killAndWait() }
            let elapsed = ContinuousClock.now - started
            #expect(finished, "the drainer did not finish within 240 s")
            #expect(drainer.exitStatus == 0, "drainer: \(drainer.log.suffix(3000))")

            let stats = try await proxy.stats()
            try await proxy.configure([])
            try await verifyDeliveredExactlyOnce(scenario)

            let spool = try SpoolStore.open(scenario.spoolDirectory)
            let audit = try await AuditSummary(spool)
            let twice = audit.deliveries.filter { $0.value != 1 }
            #expect(twice.isEmpty, "resources with other than one resource.delivered event: \(twice)")

            // Lost answers on the writes that decide: PutObject (no query) and CompleteMultipartUpload. (The proxy
            // keeps the last 1,000 requests; this run makes about 300.)
            let dropped = stats.records.filter { $0.fault == "drop_response" }
            let droppedPuts = dropped.filter { $0.method == "PUT" && !$0.path.contains("?") }
            let droppedCompletes = dropped.filter { $0.method == "POST" && $0.path.contains("uploadId=") }
            let droppedCreates = dropped.filter { $0.method == "POST" && $0.path.contains("?uploads") }
            let droppedOthers = dropped.filter {
                !droppedPuts.contains($0) && !droppedCompletes.contains($0) && !droppedCreates.contains($0)
            }
            let stopped = drainer.logLines("drainer stopped").first ?? [:]
            print(
                "DrainChaosTests: drained \(scenario.writes.count) resources in \(scenario.sealed.count) bundles in "
                    + "\(elapsed); proxy: \(stats.requests) requests, faults \(stats.faults.filter { $0.value > 0 }), "
                    + "lost answers on \(droppedPuts.count) PutObject, \(droppedCreates.count) CreateMultipartUpload, "
                    + "\(droppedCompletes.count) CompleteMultipartUpload, \(droppedOthers.count) others "
                    + "(\(stats.records.count) requests recorded); "
                    + "\(audit.alreadyInPlace) settled as already in place; retries by code \(audit.retriesByCode); "
                    + "drainer summary: retries \(stopped["retries"] ?? "?"), failed \(stopped["failed"] ?? "?")")
            for fault in ["reset", "drop_response", "error500", "slowdown", "stall"] {
                #expect(stats.count(fault) > 0, "the proxy injected no \(fault)")
            }
            #expect(!droppedPuts.isEmpty, "no PutObject answer was lost")
            // A lost CreateMultipartUpload answer leaves an upload no row records (checked above: none is left), and
            // a lost CompleteMultipartUpload answer must not make a second version (checked above too).
            #expect(!droppedCreates.isEmpty, "no CreateMultipartUpload answer was lost")
            #expect(!droppedCompletes.isEmpty, "no CompleteMultipartUpload answer was lost")
            // Each PutObject whose answer was lost: its retry met If-None-Match: * → 412 → HEAD → same size and
            // sha256 → done, with the note in the audit.
            let rows = try await spool.listResources(ResourceFilter(limit: 1_000_000, includeManifests: true))
            let idsByPath = Dictionary(
                uniqueKeysWithValues: rows.map { ("/\(scenario.bucket)/\($0.objectKey)", $0.id) })
            for path in Set(droppedPuts.map(\.path)) {
                let id = try #require(idsByPath[path], "a lost PutObject answer for an unknown key: \(path)")
                #expect(
                    audit.alreadyInPlaceIDs.contains(id), "\(path): its answer was lost, but it was not settled by HEAD"
                )
            }
            try? await proxy.stop()
        }
    }

    @Test("Graceful shutdown: SIGTERM mid-upload, exit 0 within the grace period, no claim left; a second run delivers")
    func gracefulShutdown() async throws {
        try await withTemporaryDirectory(prefix: "drain-term") { directory in
            var scenario = try await DrainScenario.make(directory: directory)
            let proxy = try await LocalS3.shared.newFaultProxy()
            // A slow network: every request waits a second, so a multipart upload is still going when SIGTERM comes
            // and cannot finish within the grace period.
            try await proxy.configure([FaultProxy.Rule(fault: "delay", seconds: 1.0)], seed: 1)
            try await scenario.load(
                endpoint: proxy.endpoint, bundles: 1, resources: 2, minSize: "33MiB", maxSize: "40MiB", seed: 501)
            try await scenario.load(
                endpoint: proxy.endpoint, bundles: 1, resources: 10, minSize: "0", maxSize: "64KiB", seed: 502)

            let grace = 1.5
            let drainer = try scenario.startDrainer(
                ["--concurrency", "2", "--lease-seconds", "5", "--grace-period", String(grace)],
                logPath: directory + "/drain-1.log")
            let spool = try SpoolStore.open(scenario.spoolDirectory)

            // Wait until a multipart upload is under way: a resource still uploading with a part recorded.
            var underWay = false
            let deadline = ContinuousClock.now + .seconds(60)
            while !underWay && ContinuousClock.now < deadline && drainer.isRunning {
                for row in try await spool.listResources(ResourceFilter(state: .uploading, limit: 100))
                where row.uploadID != nil {
                    if try await !spool.resourceDetail(row.id).parts.isEmpty { underWay = true }
                }
                if !underWay { try await Task.sleep(for: .milliseconds(50)) }
            }
            try #require(underWay, "no multipart upload got under way: \(drainer.log.suffix(3000))")

            let signalled = ContinuousClock.now
            #expect(drainer.send(SIGTERM))
            let exited = await drainer.waitForExit(timeout: .seconds(grace + 20))
            let took = ContinuousClock.now - signalled
            if !exited { await drainer.killAndWait() }
            #expect(exited)
            #expect(drainer.killedBySignal == false)
            #expect(drainer.exitStatus == 0, "drainer: \(drainer.log.suffix(3000))")
            #expect(took < .seconds(grace + 3), "exit took \(took) after SIGTERM with a \(grace) s grace period")
            #expect(drainer.logLines("drainer stopped").count == 1)

            // No claim left behind: every resource is pending (released) or done, never uploading.
            let afterStop = try await spool.listResources(ResourceFilter(limit: 1_000, includeManifests: true))
            let stillUploading = afterStop.filter { $0.state == .uploading }
            #expect(stillUploading.isEmpty, "left uploading: \(stillUploading.map(\.id))")
            #expect(try await spool.status().resources.first { $0.state == "uploading" }?.count == 0)
            let audit = try await AuditSummary(spool)
            // Released with their multipart upload and parts kept, so the next run resumes them.
            let releasedMultipart = afterStop.filter { $0.state == .pending && $0.uploadID != nil }
            print(
                "DrainChaosTests: SIGTERM → exit in \(took); \(audit.releases) claims released, "
                    + "\(releasedMultipart.count) multipart uploads kept for resuming, "
                    + "\(afterStop.filter { $0.state == .done }.count) rows done before the stop")
            #expect(audit.releases > 0, "the grace period should have run out with uploads in flight")

            try await proxy.configure([])
            let second = try scenario.startDrainer(
                ["--until-done", "--concurrency", "4", "--lease-seconds", "5"], logPath: directory + "/drain-2.log")
            let finished = await second.waitForExit(timeout: .seconds(120))
            if !finished { await second.killAndWait() }
            #expect(finished)
            #expect(second.exitStatus == 0, "second drainer: \(second.log.suffix(3000))")
            if !releasedMultipart.isEmpty {
                #expect(
                    !second.logLines("multipart upload resumed").isEmpty,
                    "a released multipart upload was started over instead of resumed")
            }
            try await verifyDeliveredExactlyOnce(scenario)
            try? await proxy.stop()
        }
    }
}
