import Foundation
import PipelineStorage
import Testing

@Suite("BundleResourcesDecorator and the storage stack")
struct BundleTests {
    /// What a test wrote, to compare with the zip and its manifest.
    struct Written {
        var url: String
        var contentType: String
        var statusCode: Int
        var metadata: [String: String]
        var bytes: [UInt8]
    }

    @Test("a bundle's resources become one bundle.zip that python's zipfile reads, its manifest matching every member")
    func bundleZipReadByPython() async throws {
        try await withSandbox { sandbox in
            var written = [
                Written(
                    url: "https://example.com/a/page.html", contentType: "text/html; charset=utf-8", statusCode: 200,
                    metadata: ["fetched-by": "worker-7"], bytes: Array("<html>a</html>".utf8)),
                Written(
                    url: "https://example.com/big.bin", contentType: "application/octet-stream", statusCode: 206,
                    metadata: [:], bytes: testBytes(3 << 20, seed: 11)),
                Written(
                    url: "https://example.com/logo.png", contentType: "image/png", statusCode: 200,
                    metadata: ["alt": "logo"], bytes: testBytes(40_000, seed: 12)),
            ]
            for index in 0..<8 {
                written.append(
                    Written(
                        url: "https://example.com/items/\(index).json", contentType: "application/json",
                        statusCode: 200, metadata: ["index": String(index)],
                        bytes: Array(#"{"item": \#(index)}"#.utf8)))
            }
            let storage = try BundleResourcesDecorator(base: try sandbox.storage())
            let stored = try await storage.withBundle("packed", metadata: ["source": "example.com"]) { bundle in
                var stored: [StoredResource] = []
                for resource in written.prefix(3) {
                    stored += try await bundle.writeResource(
                        url: resource.url, contentType: resource.contentType, statusCode: resource.statusCode,
                        metadata: resource.metadata, stream: chunked(resource.bytes))
                }
                // The rest from concurrent tasks: members are added one at a time, in whatever order they finish.
                try await withThrowingTaskGroup(of: [StoredResource].self) { group in
                    for resource in written.dropFirst(3) {
                        group.addTask {
                            try await bundle.writeResource(
                                url: resource.url, contentType: resource.contentType, statusCode: resource.statusCode,
                                metadata: resource.metadata, data: Data(resource.bytes))
                        }
                    }
                    for try await more in group { stored += more }
                }
                // The zip and its manifest wait in the spool's tmp/, private, and locked: another process opening
                // the spool (which removes what crashed writers left there) leaves them alone.
                #expect(sandbox.scratchFiles.count == 2, "the zip and its manifest: \(sandbox.scratchFiles)")
                for name in sandbox.scratchFiles {
                    let attributes = try FileManager.default.attributesOfItem(atPath: sandbox.scratchPath + "/" + name)
                    #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(name)")
                }
                let other = try SpoolStore.open(sandbox.spoolPath)
                #expect(other.crashLeftoversRemoved == 0)
                #expect(sandbox.scratchFiles.count == 2)
                return stored
            }
            #expect(stored.count == written.count)
            #expect(stored.allSatisfy { $0.spooled == nil })

            let records = try await spooledResources(storage.base, bundle: "packed")
            try #require(records.count == 1)
            let zipRecord = records[0]
            #expect(zipRecord.name == "bundle.zip")
            #expect(zipRecord.objectKey == "data/packed/000001-bundle.zip")
            #expect(zipRecord.url == "bundle://packed/bundle.zip")
            #expect(zipRecord.contentType == "application/zip")
            #expect(zipRecord.metadata == ["bundle-members": String(written.count)])
            #expect(try await storage.base.spool.bundle("packed")?.state == .sealed)
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")

            let zipPath = sandbox.path("bundle.zip")
            try Data(try await payload(storage.base, zipRecord)).write(to: URL(fileURLWithPath: zipPath))
            let zip = try await readZip(zipPath, in: sandbox)
            #expect(zip["testzip"] is NSNull, "python's testzip found a bad member: \(zip["testzip"] ?? "")")
            let members = try #require(zip["members"] as? [String: [String: Any]])
            let order = try #require(zip["order"] as? [String])
            #expect(order.last == "manifest.json")
            #expect(order.count == written.count + 1)
            let manifest = try #require(zip["manifest"] as? [String: Any])
            #expect(manifest["bundle_id"] as? String == "packed")
            #expect(manifest["metadata"] as? [String: String] == ["source": "example.com"])
            #expect(manifest["member_count"] as? Int == written.count)
            #expect(manifest["format"] as? Int == 1)
            let entries = try #require(manifest["members"] as? [[String: Any]])
            #expect(entries.count == written.count)
            #expect(entries.compactMap { $0["seq"] as? Int } == Array(1...written.count))
            let byURL = Dictionary(uniqueKeysWithValues: written.map { ($0.url, $0) })
            for entry in entries {
                let path = try #require(entry["path"] as? String)
                let url = try #require(entry["url"] as? String)
                let want = try #require(byURL[url], "manifest lists an unknown url \(url)")
                let member = try #require(members[path], "manifest lists \(path), which is not in the zip")
                #expect(member["sha256"] as? String == sha256Hex(want.bytes), "\(path)")
                #expect(member["size"] as? Int == want.bytes.count, "\(path)")
                #expect(entry["sha256"] as? String == sha256Hex(want.bytes), "\(path)")
                #expect(entry["size"] as? Int == want.bytes.count, "\(path)")
                #expect(entry["content_type"] as? String == want.contentType, "\(path)")
                #expect(entry["status_code"] as? Int == want.statusCode, "\(path)")
                #expect(entry["metadata"] as? [String: String] == want.metadata, "\(path)")
                // Compressed types are stored, the rest deflated.
                #expect(member["compress_type"] as? Int == (want.contentType == "image/png" ? 0 : 8), "\(path)")
                #expect(stored.contains { $0.placement == .packed(bundleID: "packed", member: path) })
            }
            #expect(members["000001-page.html"] != nil)
        }
    }

    @Test("an empty bundle writes no zip; a write after close is refused; the member limit holds")
    func emptyClosedAndLimited() async throws {
        try await withSandbox { sandbox in
            let storage = try BundleResourcesDecorator(
                base: try sandbox.storage(), options: BundleOptions(maxMembers: 2))
            let empty = try await storage.openBundle("empty")
            try await empty.close()
            try await empty.close()  // twice does nothing
            #expect(try await spooledResources(storage.base, bundle: "empty").isEmpty)
            #expect(try await storage.base.spool.bundle("empty")?.state == .sealed)
            await expectSpoolError(.bundleNotOpen, mentioning: ["'empty'"]) {
                try await empty.writeResource(
                    url: "https://example.com/late", contentType: "text/plain", statusCode: 200, data: Data())
            }

            let limited = try await storage.openBundle("limited")
            for index in 0..<2 {
                try await limited.writeResource(
                    url: "https://example.com/\(index)", contentType: "text/plain", statusCode: 200,
                    data: Data("\(index)".utf8))
            }
            await expectSpoolError(.archiveLimitExceeded, mentioning: ["already packs 2", "BundleOptions.maxMembers"]) {
                try await limited.writeResource(
                    url: "https://example.com/2", contentType: "text/plain", statusCode: 200, data: Data("2".utf8))
            }
            try await limited.close()
            let records = try await spooledResources(storage.base, bundle: "limited")
            #expect(records.map(\.metadata) == [["bundle-members": "2"]])
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    @Test("when the producer fails inside withBundle, what it wrote is spooled as bundle.zip and the bundle left open")
    func failedProducerKeepsWhatItWrote() async throws {
        struct Crawl: Error {}
        try await withSandbox { sandbox in
            let storage = try BundleResourcesDecorator(base: try sandbox.storage())
            await #expect(throws: Crawl.self) {
                try await storage.withBundle("failing") { bundle in
                    try await bundle.writeResource(
                        url: "https://example.com/kept", contentType: "text/plain", statusCode: 200,
                        data: Data("kept".utf8))
                    throw Crawl()
                }
            }
            let records = try await spooledResources(storage.base, bundle: "failing")
            #expect(records.map(\.name) == ["bundle.zip"])
            #expect(try await storage.base.spool.bundle("failing")?.state == .open)
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    @Test("createStorageStack: archives are expanded first, then packed; both off gives the base itself")
    func stackExpandsThenPacks() async throws {
        try await withSandbox { sandbox in
            try await makeZip(
                sandbox.path("site.zip"),
                [
                    ZipMemberSpec("index.html", Array("<html/>".utf8)),
                    ZipMemberSpec("data/rows.csv", Array("a,b\n".utf8)),
                ],
                in: sandbox)
            let rows = Array("line\n".utf8) + testBytes(10_000, seed: 13)
            try Data(rows).write(to: URL(fileURLWithPath: sandbox.path("rows.txt")))
            try await archiveTool(["gzip", sandbox.path("rows.txt"), sandbox.path("rows.txt.gz")], in: sandbox)

            let base = try sandbox.storage()
            #expect(
                try createStorageStack(base: base, bundleResources: false, unzipResources: false) is PipelineStorage)
            #expect(
                try createStorageStack(base: base, bundleResources: true, unzipResources: false)
                    is BundleResourcesDecorator<PipelineStorage>)
            #expect(
                try createStorageStack(base: base, bundleResources: false, unzipResources: true)
                    is UnzipResourcesDecorator<PipelineStorage>)
            let stack = try createStorageStack(base: base, bundleResources: true, unzipResources: true)
            try await stack.withBundle("stacked", metadata: ["crawl": "42"]) { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/site.zip", contentType: "application/zip", statusCode: 200,
                    contentsOf: URL(fileURLWithPath: sandbox.path("site.zip")))
                try await bundle.writeResource(
                    url: "https://example.com/rows.txt.gz", contentType: "application/gzip", statusCode: 200,
                    contentsOf: URL(fileURLWithPath: sandbox.path("rows.txt.gz")))
                try await bundle.writeResource(
                    url: "https://example.com/plain.txt", contentType: "text/plain", statusCode: 404,
                    data: Data("not found".utf8))
            }
            let records = try await spooledResources(base, bundle: "stacked")
            try #require(records.map(\.name) == ["bundle.zip"])
            let zipPath = sandbox.path("stacked.zip")
            try Data(try await payload(base, records[0])).write(to: URL(fileURLWithPath: zipPath))
            let zip = try await readZip(zipPath, in: sandbox)
            let manifest = try #require(zip["manifest"] as? [String: Any])
            let entries = try #require(manifest["members"] as? [[String: Any]])
            #expect(
                entries.compactMap { $0["url"] as? String } == [
                    "https://example.com/site.zip/index.html", "https://example.com/site.zip/data/rows.csv",
                    "https://example.com/rows.txt", "https://example.com/plain.txt",
                ])
            #expect(
                entries.compactMap { $0["path"] as? String } == [
                    "000001-index.html", "000002-rows.csv", "000003-rows.txt", "000004-plain.txt",
                ])
            #expect(
                entries.compactMap { ($0["metadata"] as? [String: String])?["unzip-source"] } == ["zip", "zip", "gzip"])
            #expect(entries[2]["sha256"] as? String == sha256Hex(rows))
            #expect(entries[3]["status_code"] as? Int == 404)
            #expect(manifest["metadata"] as? [String: String] == ["crawl": "42"])
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }
}
