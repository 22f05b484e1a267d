import Foundation
import Hashing
@testable import LocalS3Support
import PipelineStorage
import S3
import SpoolTestSupport
import Testing

/// Runs tools/testarchives.py (python3's own gzip and zipfile modules).
private func testArchives(_ arguments: [String]) async throws -> String {
    let root = try #require(LocalS3.repositoryRoot, "no Package.swift above the tests")
    let result = try await runProgram("/usr/bin/env", ["python3", root + "/tools/testarchives.py"] + arguments)
    try #require(result.status == 0, "testarchives.py \(arguments.first ?? ""): \(result.stderr)")
    return result.stdout
}

/// A zip made by python's zipfile: `members` are (name, bytes).
private func makeZip(_ path: String, _ members: [(String, [UInt8])]) async throws {
    let spec = members.map { ["name": $0.0, "data": Data($0.1).base64EncodedString(), "method": "deflate"] }
    try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path + ".json"))
    _ = try await testArchives(["zip", path, path + ".json"])
}

@Suite("Decorators through the built tools")
struct DecoratorToolTests {
    @Test(
        "spool-put --unzip stores a 1 GiB gzip stream decompressed with flat memory (peak RSS of the child process)",
        .timeLimit(.minutes(2)))
    func gigabyteGzipWithFlatMemory() async throws {
        try await withTemporaryDirectory(prefix: "decor-rss") { directory in
            // Streamed by python's gzip module: a 1 MiB pattern block 1,024 times (about 73 MiB compressed).
            let produced = try await jsonObject(try testArchives(["pattern-gzip", directory + "/big.gz", "1024"]))
            _ = try await testArchives(["pattern-gzip", directory + "/small.gz", "1"])
            let expectedSHA256 = try #require(produced["sha256"] as? String)

            /// Peak RSS in KiB of one spool-put run, measured by its parent (a python process with no other child).
            func peakKiB(_ input: String, bundle: String) async throws -> (kib: Int, output: [String: Any]) {
                let measure = """
                    import json, resource, subprocess, sys
                    run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
                    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                    print(json.dumps({"status": run.returncode, "peak_kib": peak, "stdout": run.stdout,
                                      "stderr": run.stderr}))
                    """
                let result = try await runProgram(
                    "/usr/bin/env",
                    [
                        "python3", "-c", measure, binDirectory + "/spool-put", "--spool", directory + "/spool",
                        "--directory", directory + "/target", "--bundle", bundle, "--url",
                        "https://example.com/dump/\(bundle).bin.gz", "--content-type", "application/gzip", "--unzip",
                        "--json", input,
                    ])
                let report = try jsonObject(result.stdout)
                try #require(report["status"] as? Int == 0, "spool-put failed: \(report["stderr"] ?? result.stderr)")
                return (try #require(report["peak_kib"] as? Int), try jsonObject(report["stdout"] as! String))
            }
            let started = ContinuousClock.now
            let small = try await peakKiB(directory + "/small.gz", bundle: "small")
            let big = try await peakKiB(directory + "/big.gz", bundle: "big")
            let elapsed = ContinuousClock.now - started
            let growthKiB = big.kib - small.kib
            print(
                "spool-put --unzip: peak RSS \(big.kib) KiB for a 1 GiB gzip stream, \(small.kib) KiB for 1 MiB: "
                    + "growth \(growthKiB) KiB; both runs took \(elapsed)")
            #expect(growthKiB < 64 << 10, "memory grew by \(growthKiB) KiB for 1 GiB: not streamed")

            let resource = try #require(big.output["resource"] as? [String: Any])
            #expect((resource["size"] as? NSNumber)?.int64Value == 1 << 30)
            #expect(resource["sha256"] as? String == expectedSHA256)
            #expect(resource["object_key"] as? String == "big/000001-big.bin")
            let scratch = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/spool/tmp")) ?? []
            #expect(scratch.isEmpty, "scratch files left: \(scratch)")
        }
    }

    @Test("spool-put --unzip --json lists a zip's members; a zip-slip archive exits 65 naming the member")
    func spoolPutUnzipsZip() async throws {
        try await withTemporaryDirectory(prefix: "decor-put") { directory in
            try await makeZip(directory + "/two.zip", [("a.txt", Array("a".utf8)), ("d/b.txt", Array("bb".utf8))])
            try await makeZip(directory + "/slip.zip", [("../../x", Array("x".utf8))])
            let common = ["--spool", directory + "/spool", "--directory", directory + "/target", "--bundle", "z"]
            let put = try await runTool(
                "spool-put",
                common + ["--url", "https://example.com/two.zip", "--unzip", "--json", directory + "/two.zip"])
            try #require(put.status == 0, "\(put.stderr)")
            let output = try jsonObject(put.stdout)
            let resources = try #require(output["resources"] as? [[String: Any]])
            #expect(resources.compactMap { $0["object_key"] as? String } == ["z/000001-a.txt", "z/000002-b.txt"])
            #expect(resources.compactMap { ($0["size"] as? NSNumber)?.intValue } == [1, 2])

            let slip = try await runTool(
                "spool-put", common + ["--url", "https://example.com/slip.zip", "--unzip", directory + "/slip.zip"])
            #expect(slip.status == 65)
            #expect(slip.stderr.contains("zip member '../../x' of 'https://example.com/slip.zip'"), "\(slip.stderr)")
        }
    }

    @Test(
        "end to end: decorated bundles drained by spool-drain to moto; S3 holds the expanded members and bundle.zip",
        .timeLimit(.minutes(3)))
    func drainedToS3() async throws {
        try await withTemporaryDirectory(prefix: "decor-e2e") { directory in
            let scenario = try await DrainScenario.make(directory: directory)
            let prefix = "decor/"
            let storage = try PipelineStorage(
                bucket: scenario.bucket, prefix: prefix, region: scenario.server.region,
                endpoint: scenario.server.endpoint, spool: .directory(scenario.spoolDirectory))

            let index = Array("<html>index</html>".utf8)
            let rows = testBytes(2 << 20, seed: 21)
            let note = Array("a gzip member\n".utf8) + testBytes(100_000, seed: 22)
            try await makeZip(directory + "/site.zip", [("index.html", index), ("data/rows.bin", rows)])
            try Data(note).write(to: URL(fileURLWithPath: directory + "/note.txt"))
            _ = try await testArchives(["gzip", directory + "/note.txt", directory + "/note.txt.gz"])
            let site = URL(fileURLWithPath: directory + "/site.zip")
            let gzipped = URL(fileURLWithPath: directory + "/note.txt.gz")

            // The same inputs twice: unzip only (every member its own object), then the whole stack (expanded, then
            // packed into one bundle.zip).
            for (bundleID, packs) in [("expanded", false), ("packed", true)] {
                let stack = try createStorageStack(base: storage, bundleResources: packs, unzipResources: true)
                try await stack.withBundle(bundleID, metadata: ["crawl": "e2e"]) { bundle in
                    try await bundle.writeResource(
                        url: "https://example.com/site.zip", contentType: "application/zip", statusCode: 200,
                        contentsOf: site)
                    try await bundle.writeResource(
                        url: "https://example.com/note.txt.gz", contentType: "application/gzip", statusCode: 200,
                        contentsOf: gzipped)
                }
            }

            let drain = try await runTool(
                "spool-drain",
                ["--spool", scenario.spoolDirectory, "--until-done", "--no-progress", "--log-level", "error"],
                environment: scenario.drainerEnvironment)
            try #require(drain.status == 0, "spool-drain failed: \(drain.stderr)")

            let client = scenario.client
            let keys = Set(try await client.listAllObjects(bucket: scenario.bucket, prefix: prefix).map(\.key))
            let expanded = [
                ("decor/expanded/000001-index.html", index, "text/html"),
                ("decor/expanded/000002-rows.bin", rows, "application/octet-stream"),
                ("decor/expanded/000003-note.txt", note, "text/plain"),
            ]
            #expect(
                keys
                    == Set(
                        expanded.map(\.0) + [
                            "decor/expanded/_bundle.json", "decor/packed/000001-bundle.zip",
                            "decor/packed/_bundle.json",
                        ]))
            for (key, bytes, contentType) in expanded {
                let (object, metadata) = try await client.getObjectBytes(bucket: scenario.bucket, key: key)
                #expect(SHA256Hasher.hexDigest(object) == SHA256Hasher.hexDigest(bytes), "\(key)")
                #expect(metadata.metadata["sha256"] == SHA256Hasher.hexDigest(bytes), "\(key)")
                #expect(metadata.contentType == contentType, "\(key)")
            }
            let (_, indexMetadata) = try await client.getObjectBytes(
                bucket: scenario.bucket, key: "decor/expanded/000001-index.html")
            #expect(indexMetadata.metadata["url"] == "https://example.com/site.zip/index.html")

            // _bundle.json keeps the decorators' metadata.
            let (manifestBytes, _) = try await client.getObjectBytes(
                bucket: scenario.bucket, key: "decor/expanded/_bundle.json")
            let manifest = try jsonObject(String(decoding: manifestBytes, as: UTF8.self))
            let entries = try #require(manifest["resources"] as? [[String: Any]])
            #expect(
                entries.compactMap { ($0["metadata"] as? [String: String])?["unzip-source"] } == ["zip", "zip", "gzip"])

            // bundle.zip, downloaded and opened by python's zipfile: members match the manifest inside it.
            let zipPath = directory + "/downloaded.zip"
            let zipMetadata = try await client.getObject(
                bucket: scenario.bucket, key: "decor/packed/000001-bundle.zip", to: zipPath)
            #expect(zipMetadata.contentType == "application/zip")
            #expect(zipMetadata.metadata["sha256"] == (try sha256OfFile(zipPath)).sha256)
            let packed = try await jsonObject(try testArchives(["read-zip", zipPath]))
            #expect(packed["testzip"] is NSNull)
            let members = try #require(packed["members"] as? [String: [String: Any]])
            let inside = try #require((packed["manifest"] as? [String: Any])?["members"] as? [[String: Any]])
            #expect(
                inside.compactMap { $0["url"] as? String } == [
                    "https://example.com/site.zip/index.html", "https://example.com/site.zip/data/rows.bin",
                    "https://example.com/note.txt",
                ])
            for (entry, bytes) in zip(inside, [index, rows, note]) {
                let path = try #require(entry["path"] as? String)
                #expect(entry["sha256"] as? String == SHA256Hasher.hexDigest(bytes), "\(path)")
                #expect(members[path]?["sha256"] as? String == SHA256Hasher.hexDigest(bytes), "\(path)")
            }
        }
    }
}
