import Foundation
import Hashing
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A damaged spool, as the tools see it: payload files deleted or altered, an index that cannot be read (garbage
/// header, no permission), a WAL cut short. What is damaged is reported (verify, status) and fails alone with a clear
/// code; the drainer goes on with the rest; an unreadable index stops every tool with one line and a distinct status.
@Suite("A damaged spool: payloads, the index, the WAL")
struct SpoolDamageTests {
    /// spool-load into a directory target: `bundles` sealed bundles of payload files (100–200 KiB: never inline).
    func load(_ directory: String, bundles: Int, resources: Int, seed: UInt64) async throws -> [AcknowledgedWrite] {
        let result = try await runTool(
            "spool-load",
            [
                "--spool", directory + "/spool", "--directory", directory + "/target", "--bundles", String(bundles),
                "--resources", String(resources), "--min-size", "100KiB", "--max-size", "200KiB", "--seed",
                String(seed),
            ])
        try #require(result.status == 0, "spool-load: \(result.stderr)")
        return parseLoadOutput(result.stdout).writes
    }

    /// Copies every commit from the WAL into spool.db and empties the WAL (with Python's sqlite3): the tools leave
    /// their last commits in the WAL (a checkpoint starts at 1000 pages), and a test of spool.db itself needs them in
    /// the file.
    func checkpoint(_ spool: String) async throws {
        let result = try await runTool(
            "/usr/bin/env",
            [
                "python3", "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    + "print(c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone())", spool + "/spool.db",
            ])
        try #require(result.status == 0 && result.stdout.hasPrefix("(0,"), "checkpoint: \(result)")
    }

    /// `spool-inspect list --json`: every row, keyed by id.
    func rows(_ spool: String) async throws -> [Int64: [String: Any]] {
        let result = try await runTool("spool-inspect", ["list", "--spool", spool, "--json", "--limit", "100000"])
        try #require(result.status == 0, "\(result.stderr)")
        let array = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: array.map { (($0["id"] as! NSNumber).int64Value, $0) })
    }

    @Test("A payload file deleted, another altered: verify names both, the drainer fails them and delivers the rest")
    func damagedPayloads() async throws {
        try await withTemporaryDirectory(prefix: "damage-payload") { directory in
            let spool = directory + "/spool"
            let writes = try await load(directory, bundles: 2, resources: 8, seed: 61)
            let before = try await rows(spool)
            let missing = writes[3]
            let altered = writes[11]
            let missingPath = try #require(before[missing.id]?["payload_path"] as? String)
            let alteredPath = try #require(before[altered.id]?["payload_path"] as? String)
            try FileManager.default.removeItem(atPath: spool + "/" + missingPath)
            let handle = try #require(FileHandle(forUpdatingAtPath: spool + "/" + alteredPath))
            try handle.seek(toOffset: 5_000)
            try handle.write(contentsOf: Data([0xDE, 0xAD]))
            try handle.close()

            let verify = try await runTool("spool-inspect", ["verify", "--spool", spool, "--json"])
            #expect(verify.status == 1, "verify: \(verify.stderr)")
            let report = try jsonObject(verify.stdout)
            let problems = try #require(report["problems"] as? [[String: Any]])
            let byResource = Dictionary(
                problems.compactMap { problem in
                    (problem["resource_id"] as? NSNumber).map { ($0.int64Value, problem["kind"] as? String ?? "") }
                }, uniquingKeysWith: { first, _ in first })
            #expect(byResource == [missing.id: "payload-missing", altered.id: "corrupt-payload"], "\(problems)")

            let drain = try await runTool("spool-drain", ["--spool", spool, "--until-done", "--no-progress"])
            #expect(drain.status == 0, "drain: \(drain.stderr)")
            let after = try await rows(spool)
            #expect(after[missing.id]?["state"] as? String == "failed")
            #expect(after[missing.id]?["last_error_code"] as? String == "payload-missing")
            #expect(after[altered.id]?["state"] as? String == "failed")
            #expect(after[altered.id]?["last_error_code"] as? String == "corrupt-payload")
            for write in writes where write.id != missing.id && write.id != altered.id {
                #expect(after[write.id]?["state"] as? String == "done", "resource \(write.id)")
                let (sha256, size) = try sha256OfFile(directory + "/target/" + write.key)
                #expect(sha256 == write.sha256 && size == write.size, "\(write.key)")
            }
            #expect(!FileManager.default.fileExists(atPath: directory + "/target/" + altered.key), "never uploaded")

            let status = try jsonObject(
                try await runTool("spool-inspect", ["status", "--spool", spool, "--json"]).stdout)
            let failures = (status["failures_by_code"] as? [[String: Any]] ?? []).map {
                "\($0["code"] as? String ?? "?")=\($0["count"] as? NSNumber ?? 0)"
            }
            #expect(Set(failures) == ["payload-missing=1", "corrupt-payload=1"], "\(failures)")
        }
    }

    @Test("An index with a garbage header: status, verify, drain and put exit 76 with one line naming spool.db")
    func garbageHeader() async throws {
        try await withTemporaryDirectory(prefix: "damage-header") { directory in
            let spool = directory + "/spool"
            _ = try await load(directory, bundles: 1, resources: 2, seed: 62)
            try await checkpoint(spool)
            let handle = try #require(FileHandle(forUpdatingAtPath: spool + "/spool.db"))
            try handle.write(contentsOf: Data("this is not an SQLite header".utf8))
            try handle.close()
            for arguments in [
                ["spool-inspect", "status"], ["spool-inspect", "verify"], ["spool-drain", "--once", "--no-progress"],
                ["spool-put", "--bundle", "b", "--url", "https://e.com/x", "--directory", directory + "/target"],
            ] {
                let result = try await runTool(
                    arguments[0], Array(arguments.dropFirst()) + ["--spool", spool], stdin: Data("x".utf8))
                #expect(result.status == 76, "\(arguments): \(result.status) \(result.stderr)")
                let lines = result.stderr.split(separator: "\n")
                #expect(lines.count == 1, "\(arguments): \(result.stderr)")
                #expect(result.stderr.contains("spool.db") && result.stderr.contains("damaged"), "\(result.stderr)")
            }
        }
    }

    @Test("An index this user may not open: exit 73, saying to fix its owner or mode")
    func unreadableIndex() async throws {
        try await withTemporaryDirectory(prefix: "damage-mode") { directory in
            let spool = directory + "/spool"
            _ = try await load(directory, bundles: 1, resources: 2, seed: 63)
            chmod(spool + "/spool.db", 0)
            // Root opens any file: run the tools as nobody, on a spool nobody owns, to meet the permission check.
            var prefix: [String] = []
            if geteuid() == 0 {
                guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
                    print("SpoolDamageTests: running as root without setpriv; the permission case is not checked")
                    return
                }
                chmod(directory, 0o755)
                _ = try await runTool("/bin/chown", ["-R", "65534", spool])
                prefix = ["--reuid=65534", "--regid=65534", "--clear-groups", binDirectory + "/spool-inspect"]
            }
            let tool = prefix.isEmpty ? "spool-inspect" : "/usr/bin/setpriv"
            let result = try await runTool(tool, prefix + ["status", "--spool", spool])
            #expect(result.status == 73, "\(result.status) \(result.stderr)")
            #expect(result.stderr.contains("cannot be opened for reading and writing"), "\(result.stderr)")
            #expect(result.stderr.contains("spool.db"))
        }
    }

    @Test("A WAL cut short: the index opens at its last whole commit; verify lists the payload files of what was lost")
    func truncatedWAL() async throws {
        try await withTemporaryDirectory(prefix: "damage-wal") { directory in
            let spool = directory + "/spool"
            // A first producer, its commits then copied into spool.db.
            let kept = try await load(directory, bundles: 1, resources: 10, seed: 64)
            try await checkpoint(spool)
            // Then one killed after 40 writes or so: what it committed since the last checkpoint is only in the WAL.
            let producer = try ChildProcess(
                tool: "spool-load",
                arguments: [
                    "--spool", spool, "--directory", directory + "/target", "--forever", "--resources", "10",
                    "--min-size", "100KiB", "--max-size", "150KiB", "--seed", "65",
                ], environment: ProcessInfo.processInfo.environment, logPath: directory + "/load.log",
                outputPath: directory + "/load.out")
            let deadline = ContinuousClock.now + .seconds(60)
            while parseLoadOutput(producer.output).writes.count < 40 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            await producer.killAndWait()
            let killed = parseLoadOutput(producer.output).writes
            try #require(killed.count >= 40, "spool-load: \(producer.log)")

            // Cut the WAL after its header and three frames (4 KiB pages): commits since the last checkpoint are gone.
            let wal = spool + "/spool.db-wal"
            #expect(truncate(wal, off_t(32 + 3 * (24 + 4096))) == 0)

            let present = await Set(
                try rows(spool).values.filter { ($0["kind"] as? String) == "resource" }.map {
                    ($0["id"] as! NSNumber).int64Value
                })
            #expect(Set(kept.map(\.id)).isSubset(of: present), "a checkpointed commit was lost")
            let lost = (kept + killed).filter { !present.contains($0.id) }
            try #require(!lost.isEmpty, "the cut lost no commit (\(killed.count) written, all checkpointed)")
            let verify = try await runTool(
                "spool-inspect", ["verify", "--spool", spool, "--json", "--orphan-age", "0s"])
            #expect(verify.status == 1)
            let problems = try #require(try jsonObject(verify.stdout)["problems"] as? [[String: Any]])
            #expect(problems.allSatisfy { $0["kind"] as? String == "orphan-file" }, "\(problems.prefix(3))")
            // Every lost resource's file (renamed into data/ before its commit), and at most two more: the killed
            // producer's last file, renamed but not committed, and a commit it did not get to report.
            #expect((lost.count...lost.count + 2).contains(problems.count), "\(lost.count) lost, \(problems.count)")

            let drain = try await runTool("spool-drain", ["--spool", spool, "--until-done", "--no-progress"])
            #expect(drain.status == 0, "drain: \(drain.stderr)")
            for write in kept {
                #expect(try sha256OfFile(directory + "/target/" + write.key).sha256 == write.sha256)
            }
            print(
                "SpoolDamageTests: WAL cut: \(kept.count + killed.count) acknowledged, \(present.count) in the index, "
                    + "\(lost.count) lost, \(problems.count) payload files listed as orphans by verify")
        }
    }
}
