import Drain
import Foundation
import PipelineStorage
import S3
import Testing

@testable import LocalS3Support
@testable import Spool

@Suite("Delivery failures: taken keys, corrupt payloads, retries")
struct FailureHandlingTests {
    // MARK: Conflicts and lost answers

    @Test(
        "A different object at a key: failed with 'conflict', the object untouched, the rest delivered; the same object (a lost answer): done, no second version",
        arguments: DeliveryTarget.allCases)
    func takenKeys(target: DeliveryTarget) async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(target, in: directory)
            let small = [content(size: 3_000, seed: 1), content(size: 200_000, seed: 2), content(size: 10, seed: 3)]
            let large = content(size: (6 << 20) + 1, seed: 4)  // multipart on S3

            // Bundle "clash": resources 2 (small) and 4 (large) find a different object at their key.
            let clash = try await fixture.storage.withBundle("clash") { bundle in
                var spooled: [SpooledResource] = []
                for (index, bytes) in (small + [large]).enumerated() {
                    spooled.append(
                        try await bundle.writeResource(
                            url: "https://example.com/clash/\(index)", contentType: "application/octet-stream",
                            statusCode: 200, bytes: bytes))
                }
                return spooled
            }
            // Bundle "lost": every object is already there with our bytes (an earlier attempt's answer was lost).
            let lost = try await fixture.storage.withBundle("lost") { bundle in
                var spooled: [SpooledResource] = []
                for (index, bytes) in [small[0], large].enumerated() {
                    spooled.append(
                        try await bundle.writeResource(
                            url: "https://example.com/lost/\(index)", contentType: "application/octet-stream",
                            statusCode: 200, bytes: bytes))
                }
                return spooled
            }

            let foreignSmall = content(size: 3_000, seed: 99)
            let foreignLarge = content(size: 1234, seed: 98)
            let clashSmallVersion = try await fixture.place(clash[1].objectKey, foreignSmall)
            let clashLargeVersion = try await fixture.place(clash[3].objectKey, foreignLarge)
            let lostSmallVersion = try await fixture.place(lost[0].objectKey, small[0])
            let lostLargeVersion = try await fixture.place(lost[1].objectKey, large)

            let progress = try await drain(fixture.spool, timeout: .seconds(60), fixture.resolve())
            #expect(progress.failed == 2)

            // The clashes: failed, never overwritten.
            for (resource, foreign, version) in [
                (clash[1], foreignSmall, clashSmallVersion), (clash[3], foreignLarge, clashLargeVersion),
            ] {
                let row = try await fixture.spool.row(resource.id)
                #expect(row.state == .failed)
                #expect(row.lastErrorCode == "conflict")
                #expect(row.lastErrorMessage?.contains(resource.objectKey) == true)
                #expect(row.attempts == 1)
                #expect(row.payloadStorage != .removed, "a failed resource keeps its payload")
                #expect(try await fixture.object(resource.objectKey) == foreign, "the existing object is untouched")
                let versions = try await fixture.versions(resource.objectKey)
                #expect(versions.count == 1)
                if let version { #expect(versions == [version]) }
            }
            // The rest of the clashing bundle is delivered, but its marker is not written.
            for index in [0, 2] {
                let row = try await fixture.spool.row(clash[index].id)
                #expect(row.state == .done)
                #expect(try await fixture.object(clash[index].objectKey) == small[index])
            }
            #expect(try await fixture.spool.bundle("clash")?.state == .sealed)
            #expect(try await fixture.object(ObjectKey.manifest(prefix: "data/", bundleID: "clash")) == nil)

            // The lost answers: done, with the version that was already there, and no second version.
            for (resource, bytes, version) in [
                (lost[0], small[0], lostSmallVersion), (lost[1], large, lostLargeVersion),
            ] {
                let row = try await fixture.spool.row(resource.id)
                #expect(row.state == .done)
                #expect(row.attempts == 0)
                #expect(try await fixture.object(resource.objectKey) == bytes)
                let versions = try await fixture.versions(resource.objectKey)
                #expect(versions.count == 1, "no second version")
                if let version { #expect(row.versionID == version) }
                let events = try await fixture.spool.resourceDetail(resource.id).events
                #expect(
                    events.contains {
                        $0.action == "resource.delivered" && $0.detail["note"]?.contains("already") == true
                    })
            }
            #expect(try await fixture.spool.bundle("lost")?.state == .delivered)
            #expect(try await fixture.object(ObjectKey.manifest(prefix: "data/", bundleID: "lost")) != nil)

            let status = try await fixture.spool.status()
            #expect(status.failuresByCode == [SpoolStatus.ErrorTotal(code: "conflict", count: 2)])
            #expect(try await fixture.unfinishedUploads().isEmpty, "the multipart upload of the clash was aborted")
        }
    }

    // MARK: Corrupt payloads

    @Test(
        "A payload changed on disk (file or inline) never becomes an object: failed with 'corrupt-payload' (a multipart upload of it aborted before completion), no _bundle.json",
        arguments: DeliveryTarget.allCases)
    func corruptPayloads(target: DeliveryTarget) async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(target, in: directory)
            let payloads = [
                content(size: 1 << 20, seed: 10),  // file, corrupted
                content(size: 500, seed: 11),  // inline, corrupted
                content(size: (6 << 20) + 3, seed: 12),  // file, multipart on S3, corrupted
                content(size: 700, seed: 13),  // fine
                content(size: 300_000, seed: 14),  // fine
            ]
            let spooled = try await fixture.storage.withBundle("damaged") { bundle in
                var spooled: [SpooledResource] = []
                for (index, bytes) in payloads.enumerated() {
                    spooled.append(
                        try await bundle.writeResource(
                            url: "https://example.com/damaged/\(index)", contentType: "application/octet-stream",
                            statusCode: 200, bytes: bytes))
                }
                return spooled
            }
            // Flip one byte in the middle of each damaged payload: same size, different SHA-256.
            for index in [0, 2] {
                let row = try await fixture.spool.row(spooled[index].id)
                #expect(row.payloadStorage == .file)
                let path = directory.spool + "/" + (try #require(row.payloadPath))
                var bytes = try readFile(path)
                bytes[bytes.count / 2] ^= 0x01
                try writeFile(path, bytes)
            }
            let inlineRow = try await fixture.spool.row(spooled[1].id)
            #expect(inlineRow.payloadStorage == .inline)
            var inline = payloads[1]
            inline[250] ^= 0x80
            try await fixture.spool.overwriteInlinePayload(id: spooled[1].id, with: inline)

            let (progress, instrumented) = try await fixture.drainCountingCalls()
            #expect(progress.failed == 3)
            #expect(progress.delivered == 2)

            for index in [0, 1, 2] {
                let row = try await fixture.spool.row(spooled[index].id)
                #expect(row.state == .failed)
                #expect(row.lastErrorCode == "corrupt-payload")
                #expect(row.attempts == 1)
                #expect(row.lastErrorMessage?.contains("not uploaded") == true)
                #expect(try await fixture.object(spooled[index].objectKey) == nil, "nothing at the key")
                let key = spooled[index].objectKey
                for call in [InstrumentedStore.Call.put, .completeUpload] {
                    #expect(instrumented.count(call, key: key) == 0, "\(call) for a damaged payload")
                }
                if index == 2 && target == .versionedBucket {
                    // Multipart: read once, part by part, as the parts are sent; the whole CRC32C combined from the
                    // parts' does not match the writer's, so the upload is aborted instead of completed.
                    #expect(instrumented.count(.uploadPart, key: key) == 2)
                    #expect(instrumented.count(.abortUpload, key: key) == 1)
                    #expect(try await fixture.spool.recordedUploads().values.map(\.outcome) == ["aborted"])
                    #expect(try await fixture.spool.row(spooled[index].id).uploadID == nil)
                } else {
                    for call in [InstrumentedStore.Call.createUpload, .uploadPart] {
                        #expect(instrumented.count(call, key: key) == 0, "\(call) for a damaged payload")
                    }
                }
            }
            for index in [3, 4] {
                #expect(try await fixture.spool.row(spooled[index].id).state == .done)
                #expect(try await fixture.object(spooled[index].objectKey) == payloads[index])
            }
            #expect(try await fixture.spool.bundle("damaged")?.state == .sealed)
            #expect(try await fixture.object(ObjectKey.manifest(prefix: "data/", bundleID: "damaged")) == nil)
            let manifest = try #require(try await fixture.spool.allRows().first { $0.kind == .manifest })
            #expect(manifest.state == .pending)
            #expect(manifest.attempts == 0)
            let status = try await fixture.spool.status()
            #expect(status.failuresByCode == [SpoolStatus.ErrorTotal(code: "corrupt-payload", count: 3)])
            #expect(try await fixture.unfinishedUploads().isEmpty)
        }
    }

    @Test(
        "A multipart payload damaged after spooling: cut short, it fails before anything is sent; a flipped byte in its last part is found from the parts' checksums and the upload aborted, never completed"
    )
    func damagedMultipartPayloads() async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(.versionedBucket, in: directory)
            let payloads = [
                content(size: (12 << 20) + 5, seed: 20),  // 3 parts, last byte flipped
                content(size: (10 << 20) + 7, seed: 21),  // 3 parts, one byte cut off the end
                content(size: (11 << 20) + 1, seed: 22),  // fine
            ]
            let spooled = try await fixture.storage.withBundle("parts") { bundle in
                var spooled: [SpooledResource] = []
                for (index, bytes) in payloads.enumerated() {
                    spooled.append(
                        try await bundle.writeResource(
                            url: "https://example.com/parts/\(index)", contentType: "application/octet-stream",
                            statusCode: 200, bytes: bytes))
                }
                return spooled
            }
            var paths: [String] = []
            for resource in spooled {
                let relative = try #require(try await fixture.spool.row(resource.id).payloadPath)
                paths.append(directory.spool + "/" + relative)
            }
            var flipped = try readFile(paths[0])
            flipped[flipped.count - 1] ^= 0x20
            try writeFile(paths[0], flipped)
            try writeFile(paths[1], Array(try readFile(paths[1]).dropLast()))

            let (progress, instrumented) = try await fixture.drainCountingCalls()
            #expect(progress.failed == 2)
            #expect(progress.delivered == 1)

            let flippedRow = try await fixture.spool.row(spooled[0].id)
            #expect(flippedRow.state == .failed && flippedRow.lastErrorCode == "corrupt-payload")
            #expect(flippedRow.lastErrorMessage?.contains("crc32c") == true, "\(flippedRow.lastErrorMessage ?? "")")
            #expect(instrumented.partNumbers(key: spooled[0].objectKey) == [1, 2, 3])
            #expect(instrumented.count(.completeUpload, key: spooled[0].objectKey) == 0)
            #expect(instrumented.count(.abortUpload, key: spooled[0].objectKey) == 1)

            let shortRow = try await fixture.spool.row(spooled[1].id)
            #expect(shortRow.state == .failed && shortRow.lastErrorCode == "corrupt-payload")
            #expect(shortRow.lastErrorMessage?.contains("size \((10 << 20) + 6) vs \((10 << 20) + 7)") == true)
            for call in [InstrumentedStore.Call.createUpload, .uploadPart, .completeUpload] {
                #expect(instrumented.count(call, key: spooled[1].objectKey) == 0, "\(call) for a truncated payload")
            }

            for index in [0, 1] {
                #expect(try await fixture.object(spooled[index].objectKey) == nil, "nothing at the key")
            }
            #expect(try await fixture.spool.row(spooled[2].id).state == .done)
            #expect(try await fixture.object(spooled[2].objectKey) == payloads[2])
            #expect(try await fixture.unfinishedUploads().isEmpty)
            let outcomes = try await fixture.spool.recordedUploads().values.map(\.outcome)
            #expect(outcomes.sorted { ($0 ?? "") < ($1 ?? "") } == ["aborted", "completed"])
        }
    }

    // MARK: Retries

    @Test(
        "Transient failures: retried with backoff until delivered (attempts recorded), or failed after maxRetries with the last error kept; a permanent error fails at once"
    )
    func retriesWithBackoff() async throws {
        try await withTestDirectory { directory in
            // Two destinations in one spool, with their own retry budgets.
            let patient = try PipelineStorage(
                directory: directory.path + "/patient", prefix: "p", options: testStorageOptions(maxRetries: 6),
                spool: .directory(directory.spool))
            let strict = try PipelineStorage(
                directory: directory.path + "/strict", prefix: "s", options: testStorageOptions(maxRetries: 3),
                spool: .directory(directory.spool))
            let flaky = try await patient.withBundle("flaky") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/flaky", contentType: "text/plain", statusCode: 200,
                    bytes: content(size: 100_000, seed: 20))
            }
            let (broken, refused) = try await strict.withBundle("broken") { bundle in
                let broken = try await bundle.writeResource(
                    url: "https://example.com/broken", contentType: "text/plain", statusCode: 200,
                    bytes: content(size: 1_000, seed: 21))
                let refused = try await bundle.writeResource(
                    url: "https://example.com/refused", contentType: "text/plain", statusCode: 200,
                    bytes: content(size: 1_000, seed: 22))
                return (broken, refused)
            }

            let failures = 4
            let putTimes = Shared<[String: [ContinuousClock.Instant]]>([:])
            let wrap: @Sendable (any ObjectStore) -> any ObjectStore = { base in
                InstrumentedStore(base) { call, key, _ in
                    guard call == .put else { return }
                    let count = putTimes.update { times -> Int in
                        times[key, default: []].append(.now)
                        return times[key]!.count
                    }
                    if key == flaky.objectKey, count <= failures {
                        throw ObjectStoreError(.transient, code: "SlowDown", message: "please slow down (test)")
                    }
                    if key == broken.objectKey {
                        throw ObjectStoreError(.transient, code: "InternalError", message: "always failing (test)")
                    }
                    if key == refused.objectKey {
                        throw ObjectStoreError(.permanent, code: "InvalidArgument", message: "refused (test)")
                    }
                }
            }
            let progress = try await drain(patient.spool, timeout: .seconds(60), resolver(wrap: wrap))
            #expect(progress.retriesScheduled == failures + 2)

            // Delivered after `failures` transient errors, each attempt counted.
            let flakyRow = try await patient.spool.row(flaky.id)
            #expect(flakyRow.state == .done)
            #expect(flakyRow.attempts == failures)
            #expect(flakyRow.lastErrorCode == nil)
            #expect(try readFile(directory.path + "/patient/" + flaky.objectKey) == content(size: 100_000, seed: 20))
            let times = putTimes.get()
            #expect(times[flaky.objectKey]?.count == failures + 1)
            let flakyEvents = try await patient.spool.resourceDetail(flaky.id).events
            let retries = flakyEvents.filter { $0.action == "resource.retry_scheduled" }
            #expect(retries.count == failures)
            #expect(retries.map { $0.detail["attempt"] } == (1...failures).map { String($0) })
            #expect(retries.allSatisfy { $0.detail["error"] == "SlowDown" })
            for event in retries {
                let delay = try #require(event.detail["delay_ms"].flatMap { Int($0) })
                #expect((50...2_000).contains(delay), "backoff between retryDelay and the cap: \(delay) ms")
            }
            // Each attempt waited for its backoff (at least retryDelay = 50 ms after the one before).
            let instants = times[flaky.objectKey] ?? []
            for (earlier, later) in zip(instants, instants.dropFirst()) {
                #expect(later - earlier >= .milliseconds(45), "retried after \(later - earlier)")
            }
            #expect(try await patient.spool.bundle("flaky")?.state == .delivered)

            // Always failing: failed after maxRetries (3) attempts, the last error kept.
            let brokenRow = try await patient.spool.row(broken.id)
            #expect(brokenRow.state == .failed)
            #expect(brokenRow.attempts == 3)
            #expect(brokenRow.lastErrorCode == "InternalError")
            #expect(brokenRow.lastErrorMessage?.contains("gave up after 3 attempts") == true)
            #expect(times[broken.objectKey]?.count == 3)
            let brokenEvents = try await patient.spool.resourceDetail(broken.id).events.map(\.action)
            #expect(brokenEvents.filter { $0 == "resource.retry_scheduled" }.count == 2)
            #expect(brokenEvents.last == "resource.failed")

            // A permanent error: failed on the first attempt, no retry.
            let refusedRow = try await patient.spool.row(refused.id)
            #expect(refusedRow.state == .failed)
            #expect(refusedRow.attempts == 1)
            #expect(refusedRow.lastErrorCode == "InvalidArgument")
            #expect(times[refused.objectKey]?.count == 1)
            #expect(try await patient.spool.bundle("broken")?.state == .sealed)
        }
    }
}
