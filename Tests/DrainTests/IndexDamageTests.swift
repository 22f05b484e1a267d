import Drain
import Foundation
import PipelineStorage
import Testing

@testable import Spool

/// A damaged page inside spool.db, met by a running drainer: the resources whose bytes were on it fail with a code and
/// the others are delivered; damage on what claims read stops the drainer with `.corrupt` instead of a claim loop;
/// a flood of unreferenced payload files (an index that lost rows) is reported, not swept away.
@Suite("A damaged index, met by the drainer")
struct IndexDamageTests {
    /// Writes inline and file resources in two sealed bundles, then copies every commit into spool.db and overwrites
    /// the first page of `object` (a table or an index) with garbage; returns what was written.
    func spoolWithDamagedPage(_ directory: TestDirectory, object: String) async throws -> [SpooledResource] {
        var written: [SpooledResource] = []
        do {
            let storage = try PipelineStorage(
                directory: directory.target, prefix: "", options: testStorageOptions(),
                spool: .directory(directory.spool))
            for bundle in 0..<2 {
                written += try await storage.withBundle("damaged-\(bundle)") { writer in
                    var spooled: [SpooledResource] = []
                    for index in 0..<6 {
                        // Even: 2 KB, kept in the index; odd: 100 KB, a payload file.
                        let size = index % 2 == 0 ? 2_000 : 100_000
                        spooled.append(
                            try await writer.writeResource(
                                url: "https://example.com/\(bundle)/\(index)", contentType: "text/plain",
                                statusCode: 200, bytes: content(size: size, seed: bundle * 10 + index)))
                    }
                    return spooled
                }
            }
            let (page, pageSize) = try await storage.spool.database.run { connection in
                _ = try connection.queryFirst("PRAGMA wal_checkpoint(TRUNCATE)", [], { $0.int(0) })
                let page = try connection.queryFirst(
                    "SELECT rootpage FROM sqlite_master WHERE name = ?", [.text(object)], { $0.int(0) })
                let size = try connection.queryFirst("PRAGMA page_size", [], { $0.int(0) })
                return (page ?? 0, size ?? 4096)
            }
            try #require(page > 1, "no page for \(object)")
            let handle = try #require(FileHandle(forUpdatingAtPath: directory.spool + "/spool.db"))
            try handle.seek(toOffset: UInt64((page - 1) * pageSize))
            try handle.write(contentsOf: Data(repeating: 0xA5, count: pageSize))
            try handle.close()
        }
        return written
    }

    @Test("The payloads table's page is garbage: inline resources fail with corrupt-payload, the files are delivered")
    func damagedPayloadPage() async throws {
        try await withTestDirectory { directory in
            let written = try await spoolWithDamagedPage(directory, object: "payloads")
            let spool = try SpoolStore.open(directory.spool)
            let report = try await spool.verify(fix: false, orphanMinimumAge: .seconds(600))
            #expect(report.problems.contains { $0.kind == "index-integrity" }, "\(report.problems)")

            let progress = try await drain(spool, resolver())
            #expect(progress.failed == 6 && progress.delivered == 6, "\(progress)")
            for resource in written {
                let row = try await spool.row(resource.id)
                if resource.size < 64 << 10 {
                    #expect(row.state == .failed && row.lastErrorCode == "corrupt-payload", "\(resource.id): \(row)")
                    #expect(row.lastErrorMessage?.contains("cannot be read from the index") == true)
                } else {
                    #expect(row.state == .done, "\(resource.id): \(row.state) \(row.lastErrorCode ?? "")")
                    #expect(sha256Hex(try readFile(directory.target + "/" + resource.objectKey)) == resource.sha256)
                }
            }
            #expect(try await spool.status().failuresByCode.map(\.code) == ["corrupt-payload"])
        }
    }

    @Test("The index claims read is garbage: the drainer stops with .corrupt instead of failing every poll")
    func damagedClaimIndex() async throws {
        try await withTestDirectory { directory in
            _ = try await spoolWithDamagedPage(directory, object: "resources_due")
            let spool = try SpoolStore.open(directory.spool)
            let started = ContinuousClock.now
            let drainer = Drainer(spool: spool, options: testDrainOptions(untilDone: false), logger: testLogger()) {
                try resolver()($0)
            }
            let watchdog = Task {
                try await Task.sleep(for: .seconds(120))
                drainer.stop()
            }
            defer { watchdog.cancel() }
            await #expect {
                _ = try await drainer.run()
            } throws: { error in
                (error as? SpoolError)?.code == .corrupt
            }
            // At its first claim, not polling on until the watchdog: loose for a loaded machine, well below 120 s.
            #expect(ContinuousClock.now - started < .seconds(40))
        }
    }

    @Test("More unreferenced payload files than the sweep's limit are kept (an index that lost rows)")
    func manyOrphansAreKept() async throws {
        try await withTestDirectory { directory in
            let storage = try PipelineStorage(
                directory: directory.target, prefix: "", options: testStorageOptions(),
                spool: .directory(directory.spool))
            for index in 0...Drainer.orphanFileRemovalLimit {
                let path = directory.data + "/lost-\(index)"
                try writeFile(path, [UInt8(index & 0xFF)])
                age(path, bySeconds: 3_600)
            }
            _ = try await drain(storage.spool, resolver())
            #expect(directoryEntries(directory.data).count == Drainer.orphanFileRemovalLimit + 1)
            // At the limit, they are crash leftovers: removed.
            unlink(directory.data + "/lost-0")
            _ = try await drain(storage.spool, resolver())
            #expect(directoryEntries(directory.data).isEmpty)
        }
    }
}
