import Foundation
import Hashing
import Spool
import Testing

/// The command-line tools, run as built binaries and checked by their output.
@Suite("spool-put, spool-inspect and spool-bench as built binaries")
struct ToolTests {
    @Test("spool-put from stdin and from a file, then --seal; spool-inspect shows it all, human and JSON")
    func putThenInspect() async throws {
        try await withTemporaryDirectory { directory in
            let spool = directory + "/spool"
            let first = try await runTool(
                "spool-put",
                [
                    "--spool", spool, "--bundle", "b-1", "--url", "https://example.com/a/hello.txt",
                    "--content-type", "text/plain", "--meta", "fetched-by=worker-7", "--bundle-meta", "source=cli",
                    "--bucket", "my-bucket", "--prefix", "data", "--json",
                ], stdin: Data("hello\n".utf8))
            #expect(first.status == 0, "\(first.stderr)")
            let firstJSON = try jsonObject(first.stdout)
            let resource = try #require(firstJSON["resource"] as? [String: Any])
            #expect(resource["object_key"] as? String == "data/b-1/000001-hello.txt")
            #expect(resource["sha256"] as? String == SHA256Hasher.hexDigest(Array("hello\n".utf8)))
            #expect(firstJSON["sealed"] as? Bool == false)

            let file = directory + "/payload.bin"
            let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
            // The bundle exists: no destination needed the second time.
            let second = try await runTool(
                "spool-put",
                ["--spool", spool, "--bundle", "b-1", "--url", "https://example.com/p.bin", file, "--seal"])
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stdout.contains("spooled resource 2: bundle b-1 seq 2"))
            #expect(second.stdout.contains("key data/b-1/000002-p.bin"))
            #expect(second.stdout.contains("sealed bundle b-1 (2 resources)"))

            let status = try await runTool("spool-inspect", ["status", "--spool", spool, "--json"])
            #expect(status.status == 0, "\(status.stderr)")
            let statusJSON = try jsonObject(status.stdout)
            let resources = try #require(statusJSON["resources"] as? [[String: Any]])
            let pending = try #require(resources.first { $0["state"] as? String == "pending" })
            #expect(pending["count"] as? Int == 2)
            #expect((pending["bytes"] as? NSNumber)?.int64Value == 300_006)
            #expect(statusJSON["manifests_pending"] as? Int == 1)
            #expect(statusJSON["oldest_pending_spooled_at"] != nil)

            let human = try await runTool("spool-inspect", ["--spool", spool])
            #expect(human.status == 0)
            #expect(
                human.stdout.split(separator: "\n").contains { $0.hasPrefix("pending ") && $0.hasSuffix(" 293 KiB") })
            #expect(human.stdout.contains("Markers:       1 _bundle.json waiting"))

            let list = try await runTool("spool-inspect", ["list", "--spool", spool, "--state", "pending"])
            #expect(list.status == 0)
            #expect(list.stdout.contains("data/b-1/000001-hello.txt"))
            #expect(list.stdout.contains("data/b-1/000002-p.bin"))
            #expect(!list.stdout.contains("_bundle.json"))
            let listJSON = try await runTool("spool-inspect", ["list", "--spool", spool, "--json", "--limit", "1"])
            let rows = try #require(
                try JSONSerialization.jsonObject(with: Data(listJSON.stdout.utf8)) as? [[String: Any]])
            #expect(rows.count == 1)
            #expect(rows.first?["metadata"] as? [String: String] == ["fetched-by": "worker-7"])

            let show = try await runTool("spool-inspect", ["show", "1", "--spool", spool])
            #expect(show.status == 0)
            let showLines = show.stdout.split(separator: "\n")
            #expect(showLines.contains { $0.hasPrefix("url ") && $0.hasSuffix(" https://example.com/a/hello.txt") })
            #expect(showLines.contains { $0.hasPrefix("meta fetched-by ") && $0.hasSuffix(" worker-7") })
            #expect(show.stdout.contains("resource.spooled"))
            let showJSON = try jsonObject(
                try await runTool("spool-inspect", ["show", "2", "--spool", spool, "--json"]).stdout)
            #expect((showJSON["resource"] as? [String: Any])?["size"] as? Int == 300_000)
            #expect((showJSON["events"] as? [Any])?.isEmpty == false)
        }
    }

    @Test("Bad input: a one-line reason naming the value, and the documented exit status")
    func errorsAndExitCodes() async throws {
        try await withTemporaryDirectory { directory in
            let spool = directory + "/spool"
            let badID = try await runTool(
                "spool-put", ["--spool", spool, "--bundle", "a/b", "--url", "https://x.example/", "--bucket", "bkt"],
                stdin: Data("x".utf8))
            #expect(badID.status == 65)
            #expect(badID.stderr.hasPrefix("spool-put: bundle id 'a/b'"))
            #expect(badID.stderr.split(separator: "\n").count == 1)

            let badURL = try await runTool(
                "spool-put", ["--spool", spool, "--bundle", "b", "--url", "not a url", "--bucket", "bkt"],
                stdin: Data("x".utf8))
            #expect(badURL.status == 65)
            #expect(badURL.stderr.contains("'not a url'"))

            let badBucket = try await runTool(
                "spool-put",
                ["--spool", spool, "--bundle", "b", "--url", "https://x.example/", "--bucket", "Bad_Bucket"],
                stdin: Data("x".utf8))
            #expect(badBucket.status == 65)
            #expect(badBucket.stderr.contains("'Bad_Bucket'"))

            let noDestination = try await runTool(
                "spool-put", ["--spool", spool, "--bundle", "new-bundle", "--url", "https://x.example/"],
                stdin: Data("x".utf8))
            #expect(noDestination.status != 0)
            #expect(noDestination.stderr.contains("--bucket"))

            let missing = try await runTool("spool-inspect", ["show", "12345", "--spool", spool])
            #expect(missing.status == 2)
            #expect(missing.stderr.contains("resource 12345 does not exist"))

            let underFile = directory + "/plain-file"
            _ = FileManager.default.createFile(atPath: underFile, contents: Data())
            let unwritable = try await runTool(
                "spool-put", ["--spool", underFile + "/spool", "--url", "https://x.example/", "--bucket", "bkt"],
                stdin: Data("x".utf8))
            #expect(unwritable.status == 73)
            #expect(unwritable.stderr.contains(underFile))

            // An operator tool never creates a spool: a mistyped path is reported.
            let mistyped = try await runTool("spool-inspect", ["status", "--spool", directory + "/no-such-spool"])
            #expect(mistyped.status == 2)
            #expect(mistyped.stderr.contains("there is no spool at '\(directory)/no-such-spool'"))
            #expect(!FileManager.default.fileExists(atPath: directory + "/no-such-spool"))

            // Nothing was spooled by any of the failures.
            let status = try jsonObject(
                try await runTool("spool-inspect", ["status", "--spool", spool, "--json"]).stdout)
            let resources = try #require(status["resources"] as? [[String: Any]])
            #expect(resources.allSatisfy { $0["count"] as? Int == 0 })
        }
    }

    @Test("spool-bench write reports rates beside the raw limits")
    func benchWrite() async throws {
        let result = try await runTool(
            "spool-bench",
            ["write", "--size", "4KiB", "--count", "200", "--writers", "4", "--durability", "batched", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try jsonObject(result.stdout)
        #expect(json["count"] as? Int == 200)
        #expect(((json["resources_per_second"] as? NSNumber)?.doubleValue ?? 0) > 0)
        let raw = try #require(json["raw"] as? [String: Any])
        #expect(((raw["fsync_writes_per_second"] as? NSNumber)?.doubleValue ?? 0) > 0)
        #expect(((raw["sequential_mib_per_second"] as? NSNumber)?.doubleValue ?? 0) > 0)
    }
}
