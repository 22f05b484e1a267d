import Foundation
import Hashing
@testable import LocalS3Support
import S3
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

// spool-inspect's operator commands, run as built binaries against spools put into each state with the Spool API
// (claims, failures, retries, pauses) and a few raw SQL updates (a dead writer, another host).

@Suite("spool-inspect operator commands as built binaries")
struct InspectOperationsTests {
    // MARK: stuck

    @Test("stuck: one section per kind, human and JSON")
    func stuckListsEveryKind() async throws {
        try await withTemporaryDirectory(prefix: "inspect-stuck") { directory in
            let fixture = try await OperationsSpool(directory)
            let store = fixture.store
            try await fixture.openBundle("work")
            // Retried four times, next attempt in an hour.
            let retried = try await fixture.write(to: "work", url: "https://example.com/retried")
            for attempt in 1...4 {
                let claim = try await fixture.claimOne(expecting: retried.id)
                try await store.recordRetry(
                    id: retried.id, token: claim.token, code: "SlowDown", message: "slow down",
                    delay: attempt == 4 ? .seconds(3600) : .zero)
            }
            let failed = try await fixture.write(to: "work", url: "https://example.com/failed")
            let failedClaim = try await fixture.claimOne(expecting: failed.id)
            try await store.recordFailed(
                id: failed.id, token: failedClaim.token, code: "conflict", message: "another object is at the key")
            let leased = try await fixture.write(to: "work", url: "https://example.com/leased")
            _ = try await fixture.claimOne(expecting: leased.id, lease: .milliseconds(1))
            try await Task.sleep(for: .milliseconds(20))
            // A paused destination with one resource waiting.
            let other = try await store.registerDestination(try .directory(directory + "/elsewhere"))
            _ = try await store.openBundle("for-paused", destinationID: other, keyPrefix: "", metadata: [:])
            _ = try await fixture.write(to: "for-paused")
            try await store.pauseDestination(
                other, code: "AccessDenied", message: "access denied to the directory", recheck: .seconds(60))
            // An open bundle whose writer died, and one held by a writer on another host.
            try await fixture.openBundle("crashed")
            _ = try await fixture.write(to: "crashed", bytes: Array(repeating: 7, count: 1000))
            try await fixture.openBundle("remote")
            try await fixture.sql("UPDATE bundles SET writer_pid = ? WHERE id = 'crashed'", [.int(deadPID)])
            try await fixture.sql("UPDATE bundles SET writer_host = 'some-other-host' WHERE id = 'remote'")

            let json = try await runTool("spool-inspect", ["stuck", "--spool", fixture.spool, "--json"])
            #expect(json.status == 0, "\(json.stderr)")
            let report = try jsonObject(json.stdout)
            #expect(ids(report["failed"]) == [failed.id])
            #expect(ids(report["expired_leases"]) == [leased.id])
            #expect(ids(report["retried"]) == [retried.id])
            let paused = try #require(report["paused_destinations"] as? [[String: Any]])
            #expect(paused.count == 1)
            #expect(paused.first?["error_code"] as? String == "AccessDenied")
            #expect(paused.first?["waiting"] as? Int == 1)
            #expect((paused.first?["destination"] as? String)?.hasSuffix("/elsewhere") == true)
            let abandoned = try #require(report["abandoned_bundles"] as? [[String: Any]])
            #expect(abandoned.map { $0["id"] as? String } == ["crashed"])
            #expect(abandoned.first?["bytes"] as? Int == 1000)
            #expect(abandoned.first?["writer_pid"] as? Int == deadPID)
            let elsewhere = try #require(report["open_bundles_elsewhere"] as? [[String: Any]])
            #expect(elsewhere.map { $0["id"] as? String } == ["remote"])
            #expect(elsewhere.first?["writer_host"] as? String == "some-other-host")
            let totals = try #require(report["totals"] as? [String: Int])
            #expect(
                totals == [
                    "failed": 1, "paused_destinations": 1, "expired_leases": 1, "abandoned_bundles": 1,
                    "open_bundles_elsewhere": 1, "retried": 1,
                ])

            let human = try await runTool("spool-inspect", ["stuck", "--spool", fixture.spool])
            #expect(human.status == 0)
            for title in [
                "Failed (1)", "Paused destinations (1)", "Expired leases (1)", "Open bundles whose writer is gone (1)",
                "Open bundles of writers on other hosts (1)", "Retried more than 3 times (1)",
            ] {
                #expect(human.stdout.contains(title), "missing section \(title)")
            }
            #expect(human.stdout.contains("access denied to the directory"))
            #expect(human.stdout.contains("some-other-host:"))

            let higher = try jsonObject(
                try await runTool(
                    "spool-inspect", ["stuck", "--spool", fixture.spool, "--json", "--retried-more-than", "4"]
                )
                .stdout)
            #expect(ids(higher["retried"]).isEmpty)

            let clean = try await OperationsSpool(directory + "/clean")
            _ = clean
            let nothing = try await runTool("spool-inspect", ["stuck", "--spool", directory + "/clean/spool"])
            #expect(nothing.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "Nothing is stuck.")
        }
    }

    // MARK: retry

    @Test("retry: failed resources requeued with attempts reset, the previous error in the audit trail")
    func retryRequeuesFailedResources() async throws {
        try await withTemporaryDirectory(prefix: "inspect-retry") { directory in
            let fixture = try await OperationsSpool(directory)
            try await fixture.openBundle("b")
            let first = try await fixture.write(to: "b", url: "https://example.com/1")
            let second = try await fixture.write(to: "b", url: "https://example.com/2")
            let third = try await fixture.write(to: "b", url: "https://example.com/3")
            let pending = try await fixture.write(to: "b", url: "https://example.com/4")
            for resource in [first, second, third] {
                let claim = try await fixture.claimOne(expecting: resource.id)
                try await fixture.store.recordFailed(
                    id: resource.id, token: claim.token, code: "conflict", message: "key taken (\(resource.id))")
            }

            let one = try await runTool("spool-inspect", ["retry", String(first.id), "--spool", fixture.spool])
            #expect(one.status == 0, "\(one.stderr)")
            #expect(one.stdout.contains("requeued 1 resource: \(first.id)"))
            let row = try await fixture.store.resourceDetail(first.id).resource
            #expect(row.state == .pending)
            #expect(row.attempts == 0)
            #expect(row.lastErrorCode == nil)
            #expect(row.nextAttemptAt <= SystemClock().nowMilliseconds())

            let events = try await auditLines(
                fixture.spool, ["--resource", String(first.id), "--action", "operator.retry"])
            #expect(events.count == 1)
            let detail = try #require(events.first?["detail"] as? [String: String])
            #expect(detail["previous_error"] == "conflict")
            #expect(detail["previous_message"] == "key taken (\(first.id))")
            #expect(detail["previous_attempts"] == "1")
            #expect(detail["from"] == "failed" && detail["to"] == "pending")

            // A pending resource is refused (nothing changes, even for the failed one in the same call)...
            let refused = try await runTool(
                "spool-inspect", ["retry", String(second.id), String(pending.id), "--spool", fixture.spool])
            #expect(refused.status == 65)
            #expect(refused.stderr.contains("resource \(pending.id) is pending, not failed"))
            #expect(try await fixture.store.resourceDetail(second.id).resource.state == .failed)
            // ... unless --force, which leaves it as it is.
            let forced = try await runTool(
                "spool-inspect", ["retry", String(second.id), String(pending.id), "--force", "--spool", fixture.spool])
            #expect(forced.status == 0, "\(forced.stderr)")
            #expect(forced.stdout.contains("left 1 already pending: \(pending.id)"))
            #expect(try await fixture.store.resourceDetail(second.id).resource.state == .pending)

            let missing = try await runTool("spool-inspect", ["retry", "9999", "--spool", fixture.spool])
            #expect(missing.status == 2)
            let usage = try await runTool("spool-inspect", ["retry", "--spool", fixture.spool])
            #expect(usage.status == 64)

            let all = try await runTool("spool-inspect", ["retry", "--all-failed", "--json", "--spool", fixture.spool])
            #expect(all.status == 0, "\(all.stderr)")
            let allJSON = try jsonObject(all.stdout)
            #expect(allJSON["count"] as? Int == 1)
            #expect((allJSON["requeued"] as? [NSNumber])?.map(\.int64Value) == [third.id])
            #expect(try await fixture.store.status().failuresByCode.isEmpty)
        }
    }

    // MARK: abort

    @Test("abort: the multipart upload is aborted at the destination (moto), forgotten, and the resource requeued")
    func abortAgainstLocalS3() async throws {
        let server = try await LocalS3.shared.server()
        let client = S3Client(
            configuration: S3Configuration(region: server.region, endpoint: server.endpoint),
            credentials: StaticCredentialsProvider(
                AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey)))
        let bucket = uniquePrefix("inspect-abort")
        try await client.createBucket(bucket)
        try await withTemporaryDirectory(prefix: "inspect-abort") { directory in
            let fixture = try await OperationsSpool(
                directory,
                destination: try .s3(bucket: bucket, region: server.region, endpoint: server.endpoint))
            try await fixture.openBundle("mp")
            let requeued = try await fixture.write(to: "mp", url: "https://example.com/big-1")
            let failing = try await fixture.write(to: "mp", url: "https://example.com/big-2")

            // A drainer's upload in progress: created at S3, recorded before its first part, one part sent.
            let claim = try await fixture.claimOne(expecting: requeued.id, lease: .seconds(120))
            let uploadID = try await client.createMultipartUpload(
                CreateMultipartUploadRequest(bucket: bucket, key: requeued.objectKey))
            try await fixture.store.recordUploadStarted(
                id: requeued.id, token: claim.token, uploadID: uploadID, partSize: 5 << 20)
            let part = try await client.uploadPart(
                bucket: bucket, key: requeued.objectKey, uploadID: uploadID, partNumber: 1,
                body: .bytes(Array(repeating: 1, count: 5 << 20)))
            try await fixture.store.recordPart(
                id: requeued.id, token: claim.token,
                part: PartRecord(
                    uploadID: uploadID, partNumber: 1, size: part.size, etag: part.etag, checksumCRC32C: nil,
                    checksumSHA256: nil, recordedAt: 0))
            #expect(try await client.listAllMultipartUploads(bucket: bucket).map(\.uploadID) == [uploadID])
            let environment = s3Environment(server)

            // The lease is live (this process holds it): refused.
            let refused = try await runTool(
                "spool-inspect", ["abort", String(requeued.id), "--spool", fixture.spool], environment: environment)
            #expect(refused.status == 75)
            #expect(refused.stderr.contains("is being uploaded by"))
            #expect(try await client.listAllMultipartUploads(bucket: bucket).count == 1)

            let forced = try await runTool(
                "spool-inspect", ["abort", String(requeued.id), "--force", "--spool", fixture.spool, "--json"],
                environment: environment)
            #expect(forced.status == 0, "\(forced.stderr)")
            let result = try jsonObject(forced.stdout)
            #expect(result["outcome"] as? String == "aborted")
            #expect(result["state"] as? String == "pending")
            #expect(result["forced"] as? Bool == true)
            #expect(try await client.listAllMultipartUploads(bucket: bucket).isEmpty)
            let detail = try await fixture.store.resourceDetail(requeued.id)
            #expect(detail.resource.state == .pending)
            #expect(detail.resource.uploadID == nil)
            #expect(detail.parts.isEmpty)
            #expect(try await fixture.store.recordedUploads()[uploadID]?.outcome == "aborted")
            // The drainer that held it has lost its claim.
            await #expect(throws: SpoolError.self) {
                try await fixture.store.recordPart(
                    id: requeued.id, token: claim.token,
                    part: PartRecord(
                        uploadID: uploadID, partNumber: 2, size: 1, etag: "x", checksumCRC32C: nil,
                        checksumSHA256: nil, recordedAt: 0))
            }
            let abortEvents = try await auditLines(fixture.spool, ["--action", "operator.abort"])
            #expect(abortEvents.count == 1)
            #expect((abortEvents.first?["detail"] as? [String: String])?["upload_id"] == uploadID)

            // A drainer that gave its claim back (upload id kept for a resume): abort --fail needs no --force.
            let second = try await fixture.claimOne(expecting: failing.id)
            let secondUpload = try await client.createMultipartUpload(
                CreateMultipartUploadRequest(bucket: bucket, key: failing.objectKey))
            try await fixture.store.recordUploadStarted(
                id: failing.id, token: second.token, uploadID: secondUpload, partSize: 5 << 20)
            try await fixture.store.releaseClaim(id: failing.id, token: second.token, reason: "test")
            let failed = try await runTool(
                "spool-inspect", ["abort", String(failing.id), "--fail", "--spool", fixture.spool],
                environment: environment)
            #expect(failed.status == 0, "\(failed.stderr)")
            #expect(failed.stdout.contains("aborted multipart upload \(secondUpload)"))
            #expect(failed.stdout.contains("resource \(failing.id) is failed (aborted-by-operator)"))
            let failedRow = try await fixture.store.resourceDetail(failing.id).resource
            #expect(failedRow.state == .failed)
            #expect(failedRow.lastErrorCode == "aborted-by-operator")
            #expect(try await client.listAllMultipartUploads(bucket: bucket).isEmpty)

            // Nothing left to abort.
            let nothing = try await runTool(
                "spool-inspect", ["abort", String(failing.id), "--spool", fixture.spool], environment: environment)
            #expect(nothing.status == 65)
            #expect(nothing.stderr.contains("has no multipart upload in progress"))
        }
    }

    // MARK: seal and discard

    @Test("seal: an abandoned bundle is sealed; a live writer's bundle only with --force")
    func sealOpenBundles() async throws {
        try await withTemporaryDirectory(prefix: "inspect-seal") { directory in
            let fixture = try await OperationsSpool(directory)
            try await fixture.openBundle("crashed")
            _ = try await fixture.write(to: "crashed")
            _ = try await fixture.write(to: "crashed")
            try await fixture.sql("UPDATE bundles SET writer_pid = ? WHERE id = 'crashed'", [.int(deadPID)])
            try await fixture.openBundle("live")

            let sealed = try await runTool("spool-inspect", ["seal", "crashed", "--spool", fixture.spool])
            #expect(sealed.status == 0, "\(sealed.stderr)")
            #expect(sealed.stdout.contains("sealed bundle crashed (2 resources)"))
            #expect(try await fixture.store.bundle("crashed")?.state == .sealed)
            let manifests = try await fixture.store.listResources(
                ResourceFilter(bundleID: "crashed", includeManifests: true)
            ).filter { $0.kind == .manifest }
            #expect(manifests.count == 1)
            let again = try await runTool("spool-inspect", ["seal", "crashed", "--spool", fixture.spool, "--json"])
            #expect(again.status == 0)
            #expect(try jsonObject(again.stdout)["changed"] as? Bool == false)
            let events = try await auditLines(fixture.spool, ["--bundle", "crashed", "--action", "operator.seal"])
            #expect(events.count == 1)
            #expect((events.first?["detail"] as? [String: String])?["writer_pid"] == String(deadPID))

            // This test process is the live writer of "live".
            let refused = try await runTool("spool-inspect", ["seal", "live", "--spool", fixture.spool])
            #expect(refused.status == 75)
            #expect(refused.stderr.contains("held open by a running writer"))
            #expect(try await fixture.store.bundle("live")?.state == .open)
            let forced = try await runTool("spool-inspect", ["seal", "live", "--force", "--spool", fixture.spool])
            #expect(forced.status == 0, "\(forced.stderr)")
            #expect(try await fixture.store.bundle("live")?.state == .sealed)

            let missing = try await runTool("spool-inspect", ["seal", "nope", "--spool", fixture.spool])
            #expect(missing.status == 2)
        }
    }

    @Test("discard: needs --yes without a terminal; removes undelivered rows and payloads, keeps delivered ones")
    func discardBundle() async throws {
        try await withTemporaryDirectory(prefix: "inspect-discard") { directory in
            let fixture = try await OperationsSpool(directory)
            let store = fixture.store
            try await fixture.openBundle("drop")
            let delivered = try await fixture.write(to: "drop", url: "https://example.com/done")
            let failed = try await fixture.write(to: "drop", url: "https://example.com/failed")
            let large = try await fixture.write(
                to: "drop", url: "https://example.com/large", bytes: Array(repeating: 3, count: 200_000))
            let claim = try await fixture.claimOne(expecting: delivered.id)
            try await store.recordDelivered(
                id: delivered.id, token: claim.token, etag: "\"e\"", versionID: nil, retainPayload: false)
            let failedClaim = try await fixture.claimOne(expecting: failed.id)
            try await store.recordFailed(id: failed.id, token: failedClaim.token, code: "conflict", message: "taken")
            try await store.sealBundle("drop")
            let largeFile = try #require(try await store.resourceDetail(large.id).resource.payloadPath)
            #expect(FileManager.default.fileExists(atPath: fixture.spool + "/" + largeFile))

            // No terminal, no --yes: refused, nothing changed.
            let refused = try await runTool("spool-inspect", ["discard", "drop", "--spool", fixture.spool])
            #expect(refused.status == 64)
            #expect(refused.stderr.contains("standard input is not a terminal; pass --yes"))
            #expect(try await store.bundle("drop")?.state == .sealed)

            let result = try await runTool(
                "spool-inspect", ["discard", "drop", "--yes", "--json", "--spool", fixture.spool])
            #expect(result.status == 0, "\(result.stderr)")
            let json = try jsonObject(result.stdout)
            #expect(json["removed_resources"] as? Int == 2)
            #expect(json["removed_bytes"] as? Int == Int(failed.size + large.size))
            #expect(json["kept_delivered"] as? Int == 1)
            #expect(json["changed"] as? Bool == true)
            #expect(try await store.bundle("drop")?.state == .discarded)
            let rows = try await store.listResources(ResourceFilter(bundleID: "drop", includeManifests: true))
            #expect(rows.map(\.id) == [delivered.id])
            #expect(!FileManager.default.fileExists(atPath: fixture.spool + "/" + largeFile))
            #expect(
                try await auditLines(fixture.spool, ["--bundle", "drop", "--action", "operator.discard"]).count == 1)
            let discarded = try await auditLines(fixture.spool, ["--bundle", "drop", "--action", "resource.discarded"])
            #expect(
                Set(discarded.compactMap { ($0["resource_id"] as? NSNumber)?.int64Value }) == [failed.id, large.id])
            // The claim query never sees them again.
            #expect(try await store.claimDue(owner: "t/1/x", limit: 10, leaseDuration: .seconds(10)).isEmpty)

            let again = try await runTool("spool-inspect", ["discard", "drop", "--spool", fixture.spool])
            #expect(again.status == 0)
            #expect(again.stdout.contains("already discarded"))

            // A resource uploading under a live lease blocks a discard, even with --yes.
            try await fixture.openBundle("busy")
            let busy = try await fixture.write(to: "busy")
            _ = try await fixture.claimOne(expecting: busy.id, lease: .seconds(120))
            try await fixture.sql("UPDATE bundles SET writer_pid = ? WHERE id = 'busy'", [.int(deadPID)])
            let blocked = try await runTool("spool-inspect", ["discard", "busy", "--yes", "--spool", fixture.spool])
            #expect(blocked.status == 75)
            #expect(blocked.stderr.contains("being uploaded by a live drainer"))
            #expect(try await store.bundle("busy")?.state == .open)
        }
    }

    // MARK: purge

    @Test("purge: payloads kept for delivered resources are removed once older than --older-than")
    func purgeDeliveredPayloads() async throws {
        try await withTemporaryDirectory(prefix: "inspect-purge") { directory in
            let fixture = try await OperationsSpool(directory)
            let store = fixture.store
            try await fixture.openBundle("kept")
            let small = try await fixture.write(to: "kept", url: "https://example.com/small")
            let large = try await fixture.write(
                to: "kept", url: "https://example.com/large", bytes: Array(repeating: 9, count: 100_000))
            let waiting = try await fixture.write(to: "kept", url: "https://example.com/waiting")
            for resource in [small, large] {
                let claim = try await fixture.claimOne(expecting: resource.id)
                try await store.recordDelivered(
                    id: resource.id, token: claim.token, etag: "\"e\"", versionID: nil, retainPayload: true)
            }
            let largeFile = try #require(try await store.resourceDetail(large.id).resource.payloadPath)

            let recent = try await runTool(
                "spool-inspect", ["purge", "--delivered", "--older-than", "1h", "--yes", "--spool", fixture.spool])
            #expect(recent.status == 0, "\(recent.stderr)")
            #expect(recent.stdout.contains("nothing to purge"))

            let twoHoursAgo = SystemClock().nowMilliseconds() - 7_200_000
            try await fixture.sql("UPDATE resources SET completed_at = ? WHERE state = 'done'", [.integer(twoHoursAgo)])
            let dryRun = try await runTool(
                "spool-inspect", ["purge", "--delivered", "--older-than", "1h", "--dry-run", "--spool", fixture.spool])
            #expect(dryRun.status == 0)
            #expect(dryRun.stdout.contains("would purge the payloads of 2 resources"))
            let unconfirmed = try await runTool(
                "spool-inspect", ["purge", "--delivered", "--older-than", "1h", "--spool", fixture.spool])
            #expect(unconfirmed.status == 64)
            #expect(FileManager.default.fileExists(atPath: fixture.spool + "/" + largeFile))

            let purged = try await runTool(
                "spool-inspect",
                ["purge", "--delivered", "--older-than", "1h", "--yes", "--json", "--spool", fixture.spool])
            #expect(purged.status == 0, "\(purged.stderr)")
            let json = try jsonObject(purged.stdout)
            #expect(json["payloads"] as? Int == 2)
            #expect(json["bytes"] as? Int == Int(small.size + large.size))
            #expect(json["dry_run"] as? Bool == false)
            #expect(!FileManager.default.fileExists(atPath: fixture.spool + "/" + largeFile))
            for id in [small.id, large.id] {
                let row = try await store.resourceDetail(id).resource
                #expect(row.payloadStorage == .removed)
                #expect(row.state == .done)
            }
            #expect(try await store.inlinePayloadRows() == 1)  // only the pending resource's
            #expect(try await store.resourceDetail(waiting.id).resource.payloadStorage == .inline)
            let events = try await auditLines(fixture.spool, ["--action", "operator.purge"])
            #expect(events.count == 1)
            #expect((events.first?["detail"] as? [String: String])?["payloads"] == "2")

            let missingFlag = try await runTool(
                "spool-inspect", ["purge", "--older-than", "1h", "--spool", fixture.spool])
            #expect(missingFlag.status == 64)
        }
    }

    // MARK: verify

    @Test("verify: finds a missing file, an altered file, altered inline bytes and an orphan; --fix repairs them")
    func verifyFindsAndFixesFaults() async throws {
        try await withTemporaryDirectory(prefix: "inspect-verify") { directory in
            let fixture = try await OperationsSpool(directory)
            let store = fixture.store
            try await fixture.openBundle("v")
            let intact = try await fixture.write(to: "v", url: "https://example.com/intact")
            let gone = try await fixture.write(
                to: "v", url: "https://example.com/gone", bytes: Array(repeating: 1, count: 100_000))
            let altered = try await fixture.write(
                to: "v", url: "https://example.com/altered", bytes: Array(repeating: 2, count: 100_000))
            let alteredInline = try await fixture.write(to: "v", url: "https://example.com/inline")
            _ = intact

            let clean = try await runTool("spool-inspect", ["verify", "--spool", fixture.spool])
            #expect(clean.status == 0, "\(clean.stderr)")
            #expect(clean.stdout.contains("No problems found."))

            let gonePath = try #require(try await store.resourceDetail(gone.id).resource.payloadPath)
            let alteredPath = try #require(try await store.resourceDetail(altered.id).resource.payloadPath)
            try FileManager.default.removeItem(atPath: fixture.spool + "/" + gonePath)
            let handle = try #require(FileHandle(forWritingAtPath: fixture.spool + "/" + alteredPath))
            try handle.seek(toOffset: 50_000)
            try handle.write(contentsOf: Data([0xFF]))
            try handle.close()
            try await fixture.sql(
                "UPDATE payloads SET bytes = ? WHERE resource_id = ?",
                [.blob(Array("tampered".utf8)), .integer(alteredInline.id)])
            let orphan = fixture.spool + "/data/orphan-left-by-a-crash"
            #expect(FileManager.default.createFile(atPath: orphan, contents: Data("junk".utf8)))
            try FileManager.default.setAttributes(
                [.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: orphan)

            let found = try await runTool("spool-inspect", ["verify", "--spool", fixture.spool, "--json"])
            #expect(found.status == 1, "\(found.stderr)")
            let report = try jsonObject(found.stdout)
            #expect(report["integrity"] as? [String] == ["ok"])
            #expect(report["clean"] as? Bool == false)
            let problems = try #require(report["problems"] as? [[String: Any]])
            func kind(of id: Int64) -> String? {
                problems.first { ($0["resource_id"] as? NSNumber)?.int64Value == id }?["kind"] as? String
            }
            #expect(kind(of: gone.id) == "payload-missing")
            #expect(kind(of: altered.id) == "corrupt-payload")
            #expect(kind(of: alteredInline.id) == "corrupt-payload")
            #expect(kind(of: intact.id) == nil)
            #expect(
                problems.contains {
                    $0["kind"] as? String == "orphan-file" && $0["path"] as? String == "data/orphan-left-by-a-crash"
                })
            #expect(problems.count == 4)
            #expect(problems.allSatisfy { $0["fixed"] as? Bool == false })
            let human = try await runTool("spool-inspect", ["verify", "--spool", fixture.spool])
            #expect(human.status == 1)
            #expect(human.stdout.contains("4 problems found; --fix repairs what can be repaired."))
            #expect(FileManager.default.fileExists(atPath: orphan))

            let fixed = try await runTool("spool-inspect", ["verify", "--fix", "--spool", fixture.spool, "--json"])
            #expect(fixed.status == 1)
            #expect(try jsonObject(fixed.stdout)["fixed_count"] as? Int == 4)
            #expect(!FileManager.default.fileExists(atPath: orphan))
            #expect(!FileManager.default.fileExists(atPath: fixture.spool + "/" + alteredPath))
            for (id, code) in [
                (gone.id, "payload-missing"), (altered.id, "corrupt-payload"), (alteredInline.id, "corrupt-payload"),
            ] {
                let row = try await store.resourceDetail(id).resource
                #expect(row.state == .failed, "resource \(id)")
                #expect(row.lastErrorCode == code, "resource \(id)")
                #expect(row.payloadStorage == .removed, "resource \(id)")
            }
            #expect(try await store.resourceDetail(intact.id).resource.state == .pending)

            let after = try await runTool("spool-inspect", ["verify", "--spool", fixture.spool])
            #expect(after.status == 0, "\(after.stdout)")
            let verifyEvents = try await auditLines(fixture.spool, ["--action", "operator.verify"])
            #expect(verifyEvents.count == 5)
            #expect((verifyEvents[3]["detail"] as? [String: String])?["fixed"] == "4")
        }
    }

    // MARK: find

    @Test("find: URL patterns (LIKE wildcards taken literally), metadata values, SHA-256")
    func findResources() async throws {
        try await withTemporaryDirectory(prefix: "inspect-find") { directory in
            let fixture = try await OperationsSpool(directory)
            try await fixture.openBundle("f")
            let a = try await fixture.write(
                to: "f", url: "https://example.com/2026/a.html", metadata: ["source": "alpha", "fetched.by": "w-7"])
            let b = try await fixture.write(
                to: "f", url: "https://example.com/2025/b.html", metadata: ["source": "beta"])
            let c = try await fixture.write(
                to: "f", url: "https://other.org/a_b", bytes: Array("unique content".utf8))
            let d = try await fixture.write(to: "f", url: "https://other.org/aXb")

            func found(_ arguments: [String]) async throws -> [Int64] {
                let result = try await runTool(
                    "spool-inspect", ["find", "--spool", fixture.spool, "--json"] + arguments)
                #expect(result.status == 0, "\(result.stderr)")
                let rows = try #require(
                    try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
                return rows.compactMap { ($0["id"] as? NSNumber)?.int64Value }
            }
            #expect(try await found(["--url", "*example.com/2026/*"]) == [a.id])
            #expect(try await found(["--url", "https://example.com/*"]) == [a.id, b.id])
            #expect(try await found(["--url", "*/a_b"]) == [c.id])  // '_' is not a wildcard
            #expect(try await found(["--url", "*other.org*"]) == [c.id, d.id])
            #expect(try await found(["--url", "https://other.org/a%"]).isEmpty)
            #expect(try await found(["--meta", "source=beta"]) == [b.id])
            #expect(try await found(["--meta", "fetched.by=w-7"]) == [a.id])
            #expect(try await found(["--meta", "source=gamma"]).isEmpty)
            #expect(
                try await found(["--sha256", SHA256Hasher.hexDigest(Array("unique content".utf8)).uppercased()]) == [
                    c.id
                ])
            #expect(try await found(["--url", "*example.com*", "--meta", "source=alpha"]) == [a.id])
            #expect(try await found(["--url", "*", "--limit", "2"]) == [a.id, b.id])

            let human = try await runTool(
                "spool-inspect", ["find", "--spool", fixture.spool, "--meta", "source=alpha"])
            #expect(human.status == 0)
            #expect(human.stdout.contains("https://example.com/2026/a.html"))
            #expect(human.stdout.contains("f/000001-a.html"))

            let badKey = try await runTool("spool-inspect", ["find", "--spool", fixture.spool, "--meta", "bad key=x"])
            #expect(badKey.status == 65)
            #expect(badKey.stderr.contains("'bad key'"))
            let badHash = try await runTool("spool-inspect", ["find", "--spool", fixture.spool, "--sha256", "xyz"])
            #expect(badHash.status == 65)
            let nothing = try await runTool("spool-inspect", ["find", "--spool", fixture.spool])
            #expect(nothing.status == 64)
        }
    }

    // MARK: audit

    @Test("audit: JSON lines, --since as ISO 8601 or a duration, --resource, --bundle, --action")
    func auditTrail() async throws {
        try await withTemporaryDirectory(prefix: "inspect-audit") { directory in
            let fixture = try await OperationsSpool(directory)
            try await fixture.openBundle("a1")
            let first = try await fixture.write(to: "a1")
            let second = try await fixture.write(to: "a1")
            try await fixture.store.sealBundle("a1")

            let all = try await auditLines(fixture.spool, [])
            #expect(all.count >= 5)  // destination, bundle opened, two spooled, sealed
            for event in all {
                #expect(event["at"] is NSNumber && event["action"] is String && event["actor_user"] is String)
                #expect(
                    event["actor_host"] is String && event["actor_pid"] is NSNumber
                        && event["detail"] is [String: String])
            }
            let ids = all.compactMap { ($0["id"] as? NSNumber)?.int64Value }
            #expect(ids == ids.sorted())

            #expect(try await auditLines(fixture.spool, ["--since", "1h"]).count == all.count)
            #expect(try await auditLines(fixture.spool, ["--since", "2099-01-01T00:00:00Z"]).isEmpty)
            #expect(try await auditLines(fixture.spool, ["--until", "2000-01-01"]).isEmpty)
            let now = Date()
            let formatter = ISO8601DateFormatter()
            #expect(
                try await auditLines(fixture.spool, ["--since", formatter.string(from: now.addingTimeInterval(-3600))])
                    .count
                    == all.count)
            #expect(
                try await auditLines(fixture.spool, ["--since", formatter.string(from: now.addingTimeInterval(3600))])
                    .isEmpty
            )

            let ofFirst = try await auditLines(fixture.spool, ["--resource", String(first.id)])
            #expect(ofFirst.map { $0["action"] as? String } == ["resource.spooled"])
            #expect(ofFirst.allSatisfy { ($0["resource_id"] as? NSNumber)?.int64Value == first.id })
            #expect(try await auditLines(fixture.spool, ["--resource", String(second.id)]).count == 1)
            let sealed = try await auditLines(fixture.spool, ["--bundle", "a1", "--action", "bundle.*"])
            #expect(sealed.map { $0["action"] as? String } == ["bundle.opened", "bundle.sealed"])
            #expect(try await auditLines(fixture.spool, ["--limit", "2"]).count == 2)

            let human = try await runTool("spool-inspect", ["audit", "--spool", fixture.spool, "--limit", "3"])
            #expect(human.status == 0)
            #expect(human.stdout.contains("bundle.sealed"))
            #expect(human.stdout.contains("(the last 3 of \(all.count) events"))
            #expect(human.stdout.contains("\(ActorIdentity.current.user)@\(ActorIdentity.current.host):"))

            let badTime = try await runTool(
                "spool-inspect", ["audit", "--spool", fixture.spool, "--since", "yesterday"])
            #expect(badTime.status == 64)
        }
    }

    @Test("Every new command documents its exit status")
    func helpListsExitStatus() async throws {
        for command in ["stuck", "retry", "abort", "seal", "discard", "purge", "verify", "find", "audit"] {
            let help = try await runTool("spool-inspect", [command, "--help"])
            #expect(help.status == 0)
            #expect(help.stdout.contains("Exit status:"), "\(command) --help")
        }
    }
}

// MARK: - Support

/// A spool with one destination (a local directory, or the given one), opened in this process.
private struct OperationsSpool {
    let spool: String
    let store: SpoolStore
    let destinationID: Int64

    init(_ directory: String, destination: DestinationSpec? = nil) async throws {
        spool = directory + "/spool"
        store = try SpoolStore.open(spool)
        destinationID = try await store.registerDestination(try destination ?? .directory(directory + "/target"))
    }

    /// Opens a bundle; this process is its (live) writer.
    func openBundle(_ id: String) async throws {
        _ = try await store.openBundle(id, destinationID: destinationID, keyPrefix: "", metadata: [:])
    }

    func write(
        to bundle: String, url: String = "https://example.com/r.bin", bytes: [UInt8] = Array("payload".utf8),
        metadata: [String: String] = [:]
    ) async throws -> SpooledResource {
        try await store.writeResource(
            bundleID: bundle,
            draft: ResourceDraft(
                url: url, contentType: "application/octet-stream", statusCode: 200, metadata: metadata),
            chunks: SingleChunk(bytes: bytes))
    }

    /// Claims the one due resource, which must be `id`.
    func claimOne(expecting id: Int64, lease: Duration = .seconds(60)) async throws -> DeliveryClaim {
        let claims = try await store.claimDue(owner: SpoolStore.leaseOwnerName(), limit: 1, leaseDuration: lease)
        let claim = try #require(claims.first)
        try #require(claim.resource.id == id, "claimed \(claim.resource.id), expected \(id)")
        return claim
    }

    /// Raw SQL behind the spool's back (a dead writer, another host, an old completion, corrupted bytes).
    func sql(_ statement: String, _ values: [Bound] = []) async throws {
        try await store.database.run { connection in
            _ = try connection.execute(
                statement,
                values.map {
                    switch $0 {
                    case .int(let value): .int(value)
                    case .integer(let value): .integer(value)
                    case .blob(let bytes): .blob(bytes)
                    }
                })
        }
    }

    /// A value bound by `sql` (SQLiteValue itself is not Sendable).
    enum Bound: Sendable {
        case int(Int)
        case integer(Int64)
        case blob([UInt8])
    }
}

extension SpoolStore {
    /// The multipart_uploads table: upload id → outcome.
    fileprivate func recordedUploads() async throws -> [String: (finished: Bool, outcome: String?)] {
        let rows = try await database.run { connection in
            try connection.query(
                "SELECT upload_id, finished_at IS NOT NULL, outcome FROM multipart_uploads", [],
                { ($0.text(0), $0.int(1) != 0, $0.optionalText(2)) })
        }
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.0, (finished: $0.1, outcome: $0.2)) })
    }

    fileprivate func inlinePayloadRows() async throws -> Int {
        try await database.run { try $0.queryFirst("SELECT COUNT(*) FROM payloads", [], { $0.int(0) }) ?? -1 }
    }
}

/// One chunk of bytes as an async sequence.
private struct SingleChunk: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let bytes: [UInt8]

    struct AsyncIterator: AsyncIteratorProtocol {
        var bytes: [UInt8]?
        mutating func next() async -> [UInt8]? {
            defer { bytes = nil }
            return bytes
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes.isEmpty ? nil : bytes) }
}

/// A pid no process has (above the kernel's maximum).
private let deadPID: Int = {
    let text = (try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8)) ?? "4194304"
    return (Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 4_194_304) + 12_345
}()

/// The ids of a JSON array of resources.
private func ids(_ value: Any?) -> [Int64] {
    ((value as? [[String: Any]]) ?? []).compactMap { ($0["id"] as? NSNumber)?.int64Value }
}

/// `spool-inspect audit --json` with extra arguments, parsed line by line.
private func auditLines(_ spool: String, _ arguments: [String]) async throws -> [[String: Any]] {
    let result = try await runTool("spool-inspect", ["audit", "--spool", spool, "--json"] + arguments)
    try #require(result.status == 0, "audit failed: \(result.stderr)")
    return try result.stdout.split(separator: "\n").map { line in
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
    }
}

/// What spool-inspect needs to reach moto: its credentials and region, and no proxy in the way.
private func s3Environment(_ server: LocalS3.Server) -> [String: String] {
    var environment = [
        "AWS_ACCESS_KEY_ID": server.accessKeyID, "AWS_SECRET_ACCESS_KEY": server.secretAccessKey,
        "AWS_REGION": server.region, "AWS_SESSION_TOKEN": "", "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    ]
    for name in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        environment[name] = ""
    }
    return environment
}
