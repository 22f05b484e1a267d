import Drain
import Foundation
import PipelineStorage
import SpoolTestSupport
import Testing

@testable import Spool

/// SPEC §2 on a disk that really fills up: the spool on a small filesystem (an ext4 image on a loop device, else a
/// tmpfs; when neither can be mounted, the spool's own `maxSpoolBytes` stands in, and the test says so). Writers get
/// `spoolFull` — from a payload write and from SQLite's own commit — and nothing of the refused resource is left; what
/// was accepted stays intact; a drainer on the full disk still delivers (it spends the spool's headroom file) and
/// frees space; writing resumes, and a writer that was waiting for room finishes.
@Suite("Disk full: a spool on a small filesystem", .serialized)
struct DiskFullTests {
    static let megabyte = 1 << 20

    func write(_ bundle: BundleWriter, _ name: String, size: Int, seed: Int) async throws -> SpooledResource {
        try await bundle.writeResource(
            url: "https://example.com/\(name)", contentType: "application/octet-stream", statusCode: 200,
            stream: chunkStream(contentChunks(size: size, seed: seed)))
    }

    @Test("ENOSPC from a payload write and from an SQLite commit: spoolFull, nothing half-visible; drain; resume")
    func fullDisk() async throws {
        try await withTestDirectory { directory in
            try await SmallFilesystem.withMounted(megabytes: 48) { mounted, reasons in
                guard let filesystem = mounted else {
                    print("DiskFullTests: no small filesystem (\(reasons.joined(separator: "; "))); used maxSpoolBytes")
                    try await limitFallback(directory)
                    return
                }
                print("DiskFullTests: spool on a 48 MiB \(filesystem.kind)")
                var spoolOptions = SpoolOptions()
                spoolOptions.spoolFullWait = .milliseconds(300)
                let storage = try PipelineStorage(
                    directory: directory.target, prefix: "", options: testStorageOptions(),
                    spool: .directory(filesystem.path + "/spool"), spoolOptions: spoolOptions)
                let spool = storage.spool
                #expect(spool.layout.hasHeadroom, "a new spool sets its headroom aside")
                let bundle = try await storage.openBundle("full-disk")
                var accepted: [SpooledResource] = []
                for index in 0..<12 {
                    accepted.append(try await write(bundle, "file-\(index)", size: Self.megabyte, seed: index))
                }

                // A payload write finds the disk full: spoolFull, after waiting spoolFullWait; nothing left in tmp/ or data/.
                _ = await filesystem.fill(leaving: 1 << 20, name: "filler-1")
                let dataFiles = directoryEntries(spool.layout.dataDirectory)
                let payloadError = await expectSpoolError(.spoolFull, mentioning: ["full", "https://example.com/big"]) {
                    _ = try await write(bundle, "big", size: 4 * Self.megabyte, seed: 100)
                }
                let payloadCause = (payloadError?.underlying as? SpoolError)?.underlying as? SystemCallError
                #expect(payloadCause?.errno == ENOSPC, "the cause is kept: \(String(describing: payloadError))")
                #expect(directoryEntries(spool.layout.temporaryDirectory).isEmpty, "a payload was left in tmp/")
                #expect(directoryEntries(spool.layout.dataDirectory) == dataFiles, "a payload was left in data/")

                // Small resources go into the index until SQLite itself cannot grow its WAL: spoolFull from the commit.
                _ = await filesystem.fill(leaving: 256 << 10, name: "filler-2")
                var commitError: SpoolError?
                for index in 0..<50_000 where commitError == nil {
                    do {
                        accepted.append(try await write(bundle, "small-\(index)", size: 2_000, seed: 1_000 + index))
                    } catch let error as SpoolError {
                        commitError = error
                    }
                }
                let refused = try #require(commitError, "the disk never filled")
                #expect(refused.code == .spoolFull, "\(refused)")
                let cause = (refused.underlying as? SpoolError)?.underlying
                #expect(cause is SQLiteResultError, "refused by SQLite's commit: \(String(describing: cause))")
                print(
                    "DiskFullTests: \(accepted.count) resources accepted (\(accepted.count - 12) in the index); the refusal: \(refused.message) (cause: \(cause.map { "\($0)" } ?? "none"))"
                )

                // Nothing half-visible: exactly the accepted resources, numbered without a gap, each with its bytes.
                let rows = try await spool.listResources(ResourceFilter(bundleID: "full-disk", limit: 100_000))
                #expect(rows.map(\.id) == accepted.map(\.id))
                #expect(rows.map(\.seq) == Array(1...accepted.count))
                #expect(try await spool.bundle("full-disk")?.resourceCount == accepted.count)
                for resource in accepted.prefix(12) + accepted.suffix(3) {
                    #expect(sha256Hex(try await spool.payloadBytes(of: resource.id)) == resource.sha256)
                }

                // A drainer on the full disk: spends the headroom, delivers everything, removes the payloads.
                var options = testDrainOptions(untilDone: false)
                options.once = true
                let progress = try await drain(spool, options: options, resolver())
                #expect(progress.delivered == accepted.count, "\(progress)")
                #expect(progress.failed == 0)
                print(
                    "DiskFullTests: the drainer delivered \(progress.delivered) on the full disk; free now \(filesystem.freeBytes) bytes, headroom \(spool.layout.hasHeadroom ? "restored" : "missing")"
                )

                // Writing resumes; a writer that finds the disk full waits for a drainer and finishes.
                accepted.append(try await write(bundle, "after", size: Self.megabyte, seed: 200))
                for index in 0..<6 {
                    accepted.append(try await write(bundle, "pending-\(index)", size: Self.megabyte, seed: 300 + index))
                }
                var patientOptions = spoolOptions
                patientOptions.spoolFullWait = .seconds(30)
                let patient = try PipelineStorage(
                    directory: directory.target, prefix: "", options: testStorageOptions(),
                    spool: .directory(filesystem.path + "/spool"), spoolOptions: patientOptions)
                let patientBundle = try await patient.openBundle("patient")
                _ = await filesystem.fill(leaving: 0, name: "filler-3")
                let waiting = Task { try await write(patientBundle, "patient", size: 3 * Self.megabyte, seed: 400) }
                try await Task.sleep(for: .milliseconds(500))
                let drained = try await drain(spool, options: options, resolver())
                #expect(drained.delivered >= 7, "\(drained)")
                let late = try await waiting.value
                try await patientBundle.close()
                try await bundle.close()
                // Its bytes are checked with the rest, in the bucket, below: the drain above may already have
                // delivered it and removed its payload (the writer finished while the drainer ran).
                accepted.append(late)

                // Everything delivered once, the index sound.
                _ = try await drain(spool, options: testDrainOptions(), resolver())
                for path in ["filler-1", "filler-2", "filler-3"] { unlink(filesystem.path + "/" + path) }
                let report = try await spool.verify(fix: false, orphanMinimumAge: .zero)
                #expect(report.clean, "verify: \(report.problems)")
                for resource in accepted {
                    #expect(sha256Hex(try readFile(directory.target + "/" + resource.objectKey)) == resource.sha256)
                }
                let deliveries = try await spool.auditEvents(action: "resource.delivered")
                #expect(deliveries.count == accepted.count + 2, "every resource and both manifests, once")
            }
        }
    }

    /// Without a small filesystem: the same story with `maxSpoolBytes` as the wall.
    func limitFallback(_ directory: TestDirectory) async throws {
        var spoolOptions = SpoolOptions()
        spoolOptions.maxSpoolBytes = 4 << 20
        spoolOptions.spoolFullWait = .milliseconds(300)
        let storage = try PipelineStorage(
            directory: directory.target, prefix: "", options: testStorageOptions(),
            spool: .directory(directory.spool), spoolOptions: spoolOptions)
        let bundle = try await storage.openBundle("limited")
        var accepted: [SpooledResource] = []
        for index in 0..<4 { accepted.append(try await write(bundle, "r-\(index)", size: Self.megabyte, seed: index)) }
        await expectSpoolError(.spoolFull, mentioning: ["maxSpoolBytes"]) {
            _ = try await write(bundle, "more", size: Self.megabyte, seed: 9)
        }
        #expect(try await storage.spool.listResources(ResourceFilter(limit: 100)).map(\.id) == accepted.map(\.id))
        var options = testDrainOptions(untilDone: false)
        options.once = true
        _ = try await drain(storage.spool, options: options, resolver())
        accepted.append(try await write(bundle, "after", size: Self.megabyte, seed: 10))
        try await bundle.close()
        _ = try await drain(storage.spool, options: testDrainOptions(), resolver())
        #expect(try await storage.spool.verify(fix: false, orphanMinimumAge: .zero).clean)
        for resource in accepted {
            #expect(sha256Hex(try readFile(directory.target + "/" + resource.objectKey)) == resource.sha256)
        }
    }
}
