import Foundation
import Hashing
import Spool
import SpoolTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Durability claims backed by killing real writer processes.
@Suite("Writers killed with SIGKILL, and several writer processes at once", .serialized)
struct CrashTests {
    /// Every resource in the spool has its bytes, matching its recorded sha256 and size.
    func checkEveryVisibleResourceIsIntact(_ spool: SpoolStore) async throws -> [ResourceRecord] {
        let all = try await spool.listResources(ResourceFilter(limit: 1_000_000))
        for resource in all {
            let bytes = try await spool.payloadBytes(of: resource.id)
            #expect(Int64(bytes.count) == resource.size, "resource \(resource.id) size")
            #expect(SHA256Hasher.hexDigest(bytes) == resource.sha256, "resource \(resource.id) sha256")
        }
        return all
    }

    func temporaryFiles(_ spoolDirectory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: spoolDirectory + "/tmp")
    }

    @Test("SIGKILL while streaming large resources, 12 times: acknowledged writes survive, tmp/ is cleaned")
    func killWhileWritingLargeStreams() async throws {
        try await withTemporaryDirectory(prefix: "crash") { directory in
            let spoolDirectory = directory + "/spool"
            var acknowledged: [AcknowledgedWrite] = []
            var generator = SystemRandomNumberGenerator()
            var killsWithLeftovers = 0
            for round in 0..<12 {
                let outPath = directory + "/out-\(round)"
                _ = FileManager.default.createFile(atPath: outPath, contents: nil)
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binDirectory + "/spool-load")
                process.arguments = [
                    "--spool", spoolDirectory, "--directory", directory + "/target", "--forever",
                    "--resources", "6", "--min-size", "512KiB", "--max-size", "24MiB", "--writers", "3",
                    "--chunk", "128KiB", "--seed", String(round + 1),
                    "--durability", round % 2 == 0 ? "fsync" : "batched",
                ]
                process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
                process.standardError = FileHandle.nullDevice
                try process.run()
                try await Task.sleep(for: .milliseconds(Int.random(in: 300...1200, using: &generator)))
                kill(process.processIdentifier, SIGKILL)
                await process.exited()
                #expect(process.terminationReason == .uncaughtSignal)
                if let leftovers = try? temporaryFiles(spoolDirectory), !leftovers.isEmpty { killsWithLeftovers += 1 }
                acknowledged += parseLoadOutput(try String(contentsOfFile: outPath, encoding: .utf8)).writes

                // The spool opens cleanly after every kill, and what was acknowledged is there.
                let spool = try SpoolStore.open(spoolDirectory)
                #expect(try temporaryFiles(spoolDirectory).isEmpty, "tmp/ holds crash leftovers after open")
                let visible = try await checkEveryVisibleResourceIsIntact(spool)
                let byID = Dictionary(uniqueKeysWithValues: visible.map { ($0.id, $0) })
                for write in acknowledged {
                    let resource = try #require(byID[write.id], "acknowledged resource \(write.id) is missing")
                    #expect(resource.sha256 == write.sha256)
                    #expect(resource.size == write.size)
                    #expect(resource.objectKey == write.key)
                }
            }
            // The kills must have hit mid-stream at least sometimes, or this test proves little.
            #expect(killsWithLeftovers > 0, "no kill left a partial payload in tmp/; the test did not hit a write")
            #expect(acknowledged.count > 10)
            // No payload file is orphaned beyond what a kill between rename and commit can leave.
            let spool = try SpoolStore.open(spoolDirectory)
            let referenced = Set(
                try await spool.listResources(ResourceFilter(limit: 1_000_000)).compactMap(\.payloadPath))
            let files = try FileManager.default.contentsOfDirectory(atPath: spoolDirectory + "/data")
            let orphans = files.filter { !referenced.contains("data/" + $0) }
            #expect(orphans.count <= 12 * 3, "at most one orphan per writer per kill: \(orphans.count)")
        }
    }

    @Test("Three writer processes on one spool: nothing lost or duplicated, numbering contiguous per bundle")
    func severalWriterProcesses() async throws {
        try await withTemporaryDirectory(prefix: "multi") { directory in
            let spoolDirectory = directory + "/spool"
            var processes: [(Process, String)] = []
            for index in 0..<3 {
                let outPath = directory + "/out-\(index)"
                _ = FileManager.default.createFile(atPath: outPath, contents: nil)
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binDirectory + "/spool-load")
                process.arguments = [
                    "--spool", spoolDirectory, "--directory", directory + "/target", "--bundles", "2",
                    "--resources", "40", "--min-size", "0", "--max-size", "200KiB", "--writers", "4",
                    "--seed", String(index + 10), "--durability", index == 0 ? "fsync" : "batched",
                ]
                process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
                let errPath = directory + "/err-\(index)"
                _ = FileManager.default.createFile(atPath: errPath, contents: nil)
                process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
                try process.run()
                processes.append((process, outPath))
            }
            var acknowledged: [AcknowledgedWrite] = []
            var sealed: Set<String> = []
            for (process, outPath) in processes {
                await process.exited()
                #expect(process.terminationStatus == 0)
                let output = parseLoadOutput(try String(contentsOfFile: outPath, encoding: .utf8))
                #expect(output.finished)
                acknowledged += output.writes
                sealed.formUnion(output.sealed)
            }
            #expect(acknowledged.count == 3 * 2 * 40)
            #expect(sealed.count == 6)
            #expect(Set(acknowledged.map(\.id)).count == acknowledged.count, "a resource id was handed out twice")
            #expect(Set(acknowledged.map(\.key)).count == acknowledged.count, "an object key was handed out twice")

            let spool = try SpoolStore.open(spoolDirectory)
            let visible = try await checkEveryVisibleResourceIsIntact(spool)
            #expect(visible.count == acknowledged.count)
            for bundleID in sealed {
                let seqs = visible.filter { $0.bundleID == bundleID }.map(\.seq).sorted()
                #expect(seqs == Array(1...40), "bundle \(bundleID) numbering")
                let bundle = try #require(try await spool.bundle(bundleID))
                #expect(bundle.state == .sealed)
                #expect(bundle.resourceCount == 40)
            }
            let byID = Dictionary(uniqueKeysWithValues: visible.map { ($0.id, $0) })
            for write in acknowledged { #expect(byID[write.id]?.sha256 == write.sha256) }
        }
    }
}
