import Foundation
@testable import LocalS3Support
import S3
import Spool
import SpoolTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §1/§5: spool-drain survives `kill -9` at any instant, and several drainers share a spool; after it all, every
/// resource is in the bucket exactly once (one version per key on a versioned bucket) and `_bundle.json` comes last.
@Suite("spool-drain killed with SIGKILL, and two drainers on one spool", .serialized)
struct DrainCrashTests {
    @Test("SIGKILL the drainer at random moments, at least 20 kills, restart until done")
    func killAtRandomMoments() async throws {
        try await withTemporaryDirectory(prefix: "drain-crash") { directory in
            var scenario = try await DrainScenario.make(directory: directory)
            // Against moto on loopback the drainer moves ~100 MB/s and a small object in ~3 ms: the whole workload
            // would be gone before the second kill. A proxy that only adds latency (like a real network's) to every
            // request keeps the drainer busy long enough to be killed 20 times mid-work, within a modest volume.
            let latency = try await LocalS3.shared.newFaultProxy()
            try await latency.configure([FaultProxy.Rule(fault: "delay", seconds: 0.12)], seed: 1)

            // The large resources come first, so the first claims (and kills) are multipart uploads.
            try await scenario.load(
                endpoint: latency.endpoint, bundles: 1, resources: 4, minSize: "17MiB", maxSize: "34MiB", seed: 101)
            try #require(scenario.writes.filter { $0.size >= 16 << 20 }.count >= 3)
            try await scenario.load(
                endpoint: latency.endpoint, bundles: 25, resources: 20, minSize: "0", maxSize: "64KiB", seed: 102)

            var generator = SystemRandomNumberGenerator()
            var kills = 0
            var rounds = 0
            var topUps = 0
            var logs: [ChildProcess] = []
            while kills < 20 && rounds < 80 {
                rounds += 1
                let drainer = try scenario.startDrainer(
                    ["--until-done", "--concurrency", "4", "--lease-seconds", "5"],
                    logPath: directory + "/drain-\(rounds).log")
                logs.append(drainer)
                try await Task.sleep(for: .milliseconds(Int.random(in: 150...1500, using: &generator)))
                if drainer.send(SIGKILL) {
                    _ = await drainer.waitForExit(timeout: .seconds(30))
                    if drainer.killedBySignal {
                        kills += 1
                        continue
                    }
                }
                // It finished before the kill: everything so far is delivered. More work, so the kills go on.
                _ = await drainer.waitForExit(timeout: .seconds(30))
                #expect(drainer.exitStatus == 0, "drainer exited with \(drainer.exitStatus): \(drainer.log)")
                topUps += 1
                try await scenario.load(
                    endpoint: latency.endpoint, bundles: 3, resources: 20, minSize: "0", maxSize: "64KiB",
                    seed: 200 + UInt64(topUps))
            }
            #expect(kills >= 20, "only \(kills) kills landed on a running drainer in \(rounds) rounds")

            let final = try scenario.startDrainer(
                ["--until-done", "--concurrency", "4", "--lease-seconds", "5"], logPath: directory + "/drain-final.log")
            logs.append(final)
            let finished = await final.waitForExit(timeout: .seconds(150))
            if !finished { await final.killAndWait() }
            #expect(finished, "the last drainer did not finish within 150 s")
            #expect(final.exitStatus == 0, "last drainer: \(final.log.suffix(3000))")

            try await verifyDeliveredExactlyOnce(scenario)

            let resumes = logs.reduce(0) { $0 + $1.logLines("multipart upload resumed").count }
            let leftoversAborted = logs.reduce(0) { $0 + $1.logLines("leftover multipart upload aborted").count }
            let spool = try SpoolStore.open(scenario.spoolDirectory)
            let audit = try await AuditSummary(spool)
            print(
                "DrainCrashTests: \(kills) SIGKILLs of a running drainer in \(rounds) rounds (\(topUps) top-ups), "
                    + "\(scenario.writes.count) resources in \(scenario.sealed.count) bundles, "
                    + "\(resumes) multipart upload resumes, \(leftoversAborted) leftover uploads aborted, "
                    + "\(audit.reclaims) leases reclaimed, \(audit.alreadyInPlace) settled as already in place, "
                    + "retries by code \(audit.retriesByCode)")
            #expect(resumes + audit.reclaims > 0, "no kill interrupted a delivery: nothing resumed or reclaimed")
            let twice = audit.deliveries.filter { $0.value != 1 }
            #expect(twice.isEmpty, "resources with other than one resource.delivered event: \(twice)")
            try? await latency.stop()
        }
    }

    /// The window between completing a multipart upload and recording the delivery, where the drainer sweeps the
    /// key's uploads that the spool does not track (a CreateMultipartUpload whose answer was lost leaves one). A kill
    /// there must leave the sweep to the next attempt, which finds the object in place and sweeps again.
    @Test("SIGKILL between a multipart upload's completion and its record: the next drainer sweeps and records it")
    func killBetweenCompletionAndRecord() async throws {
        try await withTemporaryDirectory(prefix: "drain-window") { directory in
            var scenario = try await DrainScenario.make(directory: directory)
            let proxy = try await LocalS3.shared.newFaultProxy()
            // ListMultipartUploads: the first is the sweep before CreateMultipartUpload, the second the one after
            // CompleteMultipartUpload. The second stalls, so that the kill lands in the window.
            let listUploads = "[?&]uploads(=|&|$)"
            try await proxy.configure([
                FaultProxy.Rule(fault: "stall", nth: [2], method: "GET", pathRegex: listUploads, seconds: 120)
            ])
            try await scenario.load(
                endpoint: proxy.endpoint, bundles: 1, resources: 1, minSize: "20MiB", maxSize: "20MiB", seed: 301)
            let key = try #require(scenario.writes.first?.key)

            let first = try scenario.startDrainer(
                ["--until-done", "--concurrency", "1"], logPath: directory + "/drain-1.log")
            let stalled = try await eventually(timeout: .seconds(60)) {
                try await proxy.stats().rules.first?.fired == 1
            }
            guard stalled else {
                await first.killAndWait()
                Issue.record("the drainer never reached the sweep after completing: \(first.log.suffix(2000))")
                return
            }
            // Meanwhile a leftover upload for the key appears, as a retried CreateMultipartUpload leaves one.
            let leftover = try await scenario.client.createMultipartUpload(
                CreateMultipartUploadRequest(bucket: scenario.bucket, key: key))
            #expect(first.send(SIGKILL))
            _ = await first.waitForExit(timeout: .seconds(30))
            #expect(first.killedBySignal)

            // Killed in the window: the object is complete in the bucket, the spool does not say so yet.
            let stored = try await scenario.client.headObjectIfExists(bucket: scenario.bucket, key: key)
            #expect(stored?.contentLength == scenario.writes.first?.size)
            let spool = try SpoolStore.open(scenario.spoolDirectory)
            #expect(try await spool.resourceDetail(scenario.writes[0].id).resource.state != .done)
            let uploadsBefore = try await scenario.client.listAllMultipartUploads(bucket: scenario.bucket)
            #expect(uploadsBefore.map(\.uploadID).contains(leftover))

            try await proxy.configure([])
            let second = try scenario.startDrainer(["--until-done"], logPath: directory + "/drain-2.log")
            let finished = await second.waitForExit(timeout: .seconds(120))
            if !finished { await second.killAndWait() }
            #expect(finished && second.exitStatus == 0, "second drainer: \(second.log.suffix(3000))")

            try await verifyDeliveredExactlyOnce(scenario)
            let audit = try await AuditSummary(spool)
            #expect(audit.alreadyInPlaceIDs.contains(scenario.writes[0].id), "not settled as already in place")
            #expect(second.logLines("leftover multipart upload aborted").count == 1)
            try? await proxy.stop()
        }
    }

    @Test("Two drainers on one spool: both exit 0, every resource delivered once")
    func twoDrainersOnOneSpool() async throws {
        try await withTemporaryDirectory(prefix: "drain-two") { directory in
            var scenario = try await DrainScenario.make(directory: directory)
            let endpoint = scenario.server.endpoint
            try await scenario.load(
                endpoint: endpoint, bundles: 1, resources: 4, minSize: "17MiB", maxSize: "30MiB", seed: 301)
            try await scenario.load(
                endpoint: endpoint, bundles: 10, resources: 20, minSize: "0", maxSize: "256KiB", seed: 302)

            let drainers = try (1...2).map { index in
                try scenario.startDrainer(
                    ["--until-done", "--concurrency", "4", "--lease-seconds", "5"],
                    logPath: directory + "/drain-\(index).log")
            }
            for drainer in drainers {
                let finished = await drainer.waitForExit(timeout: .seconds(120))
                if !finished { await drainer.killAndWait() }
                #expect(finished, "drainer \(drainer.pid) did not finish within 120 s")
                #expect(drainer.exitStatus == 0, "drainer \(drainer.pid): \(drainer.log.suffix(3000))")
            }

            try await verifyDeliveredExactlyOnce(scenario)

            let spool = try SpoolStore.open(scenario.spoolDirectory)
            let audit = try await AuditSummary(spool)
            let rows = try await spool.listResources(ResourceFilter(limit: 1_000_000, includeManifests: true))
            for row in rows {
                #expect(
                    audit.deliveries[row.id] == 1, "resource \(row.id) delivered \(audit.deliveries[row.id] ?? 0) times"
                )
            }
            var byDrainer: [Int: Int] = [:]
            for (_, pid) in audit.deliveredBy { byDrainer[pid, default: 0] += 1 }
            let pids = drainers.map { Int($0.pid) }
            print(
                "DrainCrashTests: two drainers delivered \(pids.map { byDrainer[$0] ?? 0 }) of \(rows.count) rows; "
                    + "\(audit.reclaims) leases reclaimed")
            #expect(Set(byDrainer.keys).isSubset(of: Set(pids)), "a delivery recorded by another process: \(byDrainer)")
            if pids.contains(where: { (byDrainer[$0] ?? 0) == 0 }) {
                // Legitimate (one drainer may claim everything before the other starts), but worth knowing.
                print("DrainCrashTests: one drainer delivered nothing: \(byDrainer)")
            }
            // Both alive all along: neither may take over the other's leases, nor think it lost one.
            #expect(audit.reclaims == 0, "leases were reclaimed while both drainers were alive")
            for drainer in drainers {
                let lost = drainer.logLines("lease lost; stopping that delivery") + drainer.logLines("lease lost")
                #expect(lost.isEmpty, "drainer \(drainer.pid) lost leases: \(lost)")
            }
        }
    }
}
