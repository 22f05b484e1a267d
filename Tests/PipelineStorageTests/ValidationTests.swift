import Foundation
import PipelineStorage
import Testing

@testable import Spool

/// Every value a producer hands over is checked, and a refusal names the offending value (quoted; control characters
/// escaped; values longer than 120 characters cut with '…', so for those the message holds the first 120).
@Suite struct ValidationTests {
    static let long129 = String(repeating: "b", count: 129)
    static let long201 = String(repeating: "n", count: 201)
    static let longURL = "https://e.com/" + String(repeating: "u", count: 8193 - 14)

    @Test(arguments: [
        ("", ["bundle id ''", "empty"]),
        (long129, ["'" + String(repeating: "b", count: 120) + "…'", "129 bytes"]),
        ("a/b", ["'a/b'", "'/'"]),
        ("..x", ["'..x'"]),
        (".hidden", ["'.hidden'"]),
        ("x..y", ["'x..y'", "'..'"]),
        ("bad id", ["'bad id'", "a space"]),
        ("bündel", ["'bündel'", "non-ASCII"]),
        ("tab\there", ["'tab\\there'", "control character"]),
    ])
    func invalidBundleIDs(id: String, fragments: [String]) async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            await expectSpoolError(.invalidBundleID, mentioning: fragments) {
                _ = try await storage.openBundle(id)
            }
            await expectSpoolError(.invalidBundleID, mentioning: fragments) {
                try await storage.withBundle(id) { _ -> Void in Issue.record("the body ran for an invalid id") }
            }
            #expect(try await storage.spool.status().bundles.allSatisfy { $0.count == 0 })
        }
    }

    @Test func validBundleIDsAtTheLimits() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            for id in [String(repeating: "a", count: 128), "a", "0", "A.b_c-d~e=f,g@h"] {
                _ = try await storage.openBundle(id)
                #expect(try await storage.spool.bundle(id)?.state == .open)
            }
        }
    }

    @Test(arguments: [
        ("a/b", ["'a/b'", "'/'"]),
        ("..", ["'..'"]),
        (".x", ["'.x'", "starts with '.'"]),
        ("", ["resource name ''", "empty"]),
        (long201, ["'" + String(repeating: "n", count: 120) + "…'", "201 bytes"]),
        ("white space", ["'white space'", "a space"]),
    ])
    func invalidResourceNames(name: String, fragments: [String]) async throws {
        try await expectWriteRefused(.invalidResourceName, fragments) { bundle, stream in
            try await bundle.writeResource(
                url: "https://e.com/x", contentType: "text/plain", statusCode: 200, name: name, stream: stream)
        }
    }

    @Test(arguments: [
        ("", ["URL ''", "empty"]),
        ("data.json", ["'data.json'", "absolute"]),
        ("/a/data.json", ["'/a/data.json'", "absolute"]),
        ("https://e.com/a b", ["'https://e.com/a b'", "a space"]),
        ("https://e.com/a\r\nb", ["'https://e.com/a\\r\\nb'", "control character"]),
        (longURL, ["'" + String(longURL.prefix(120)) + "…'", "8193 bytes"]),
    ])
    func invalidURLs(url: String, fragments: [String]) async throws {
        try await expectWriteRefused(.invalidURL, fragments) { bundle, stream in
            try await bundle.writeResource(url: url, contentType: "text/plain", statusCode: 200, stream: stream)
        }
    }

    @Test func aURLOfExactlyTheLimitIsAccepted() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let url = "https://e.com/" + String(repeating: "u", count: 8192 - 14)
            let written = try await storage.withBundle("b") { bundle in
                try await bundle.writeResource(url: url, contentType: "text/plain", statusCode: 200, bytes: [1])
            }
            #expect(try await storage.spool.resourceDetail(written.id).resource.url == url)
        }
    }

    static let bigValue = String(repeating: "v", count: 2049)
    static let tooMuchMetadata = Dictionary(
        uniqueKeysWithValues: (0..<5).map { ("key-\($0)", String(repeating: "m", count: 2000)) })

    @Test(arguments: [
        (["bad key": "v"], ["'bad key'"]),
        (["": "v"], ["metadata key ''"]),
        (["k/slash": "v"], ["'k/slash'"]),
        (["line": "one\r\ntwo"], ["'line'", "carriage return"]),
        (["lf": "one\ntwo"], ["'lf'", "line feed"]),
        (["big": bigValue], ["'big'", "2049 bytes"]),
        (tooMuchMetadata, ["\(5 * (5 + 2000)) bytes in all"]),
    ])
    func invalidMetadata(metadata: [String: String], fragments: [String]) async throws {
        try await expectWriteRefused(.invalidMetadata, ["resource metadata"] + fragments) { bundle, stream in
            try await bundle.writeResource(
                url: "https://e.com/x", contentType: "text/plain", statusCode: 200, metadata: metadata, stream: stream)
        }
        // The same rules hold for bundle metadata.
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            await expectSpoolError(.invalidMetadata, mentioning: ["bundle metadata"] + fragments) {
                _ = try await storage.openBundle("b", metadata: metadata)
            }
            #expect(try await storage.spool.bundle("b") == nil)
        }
    }

    @Test func metadataAtTheLimitsIsAccepted() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            // 4 × (4 + 2044) = 8192 bytes in all; each value exactly 2044 (< 2048); keys of the allowed characters.
            var metadata = Dictionary(
                uniqueKeysWithValues: (0..<4).map { ("k.-\($0)", String(repeating: "m", count: 2044)) })
            #expect(metadata.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count } == 8192)
            metadata["k.-0"] = String(repeating: "ü", count: 1022)  // 2044 bytes of non-ASCII UTF-8
            let written = try await storage.withBundle("b", metadata: metadata) { bundle in
                try await bundle.writeResource(
                    url: "https://e.com/x", contentType: "text/plain", statusCode: 200, metadata: metadata, bytes: [])
            }
            #expect(try await storage.spool.resourceDetail(written.id).resource.metadata == metadata)
            #expect(try await storage.spool.bundle("b")?.metadata == metadata)
        }
    }

    @Test(arguments: [
        ("text", ["'text'"]),
        ("text/", ["'text/'"]),
        ("text/html; charset", ["'text/html; charset'"]),
        ("text/html\r\n", ["'text/html\\r\\n'"]),
        ("", ["content type ''"]),
        ("text/html; charset=\"utf-8", ["'text/html; charset=\"utf-8'"]),
    ])
    func invalidContentTypes(contentType: String, fragments: [String]) async throws {
        try await expectWriteRefused(.invalidContentType, fragments) { bundle, stream in
            try await bundle.writeResource(
                url: "https://e.com/x", contentType: contentType, statusCode: 200, stream: stream)
        }
    }

    @Test func validContentTypesAreAccepted() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let types = [
                "application/json", "text/html; charset=utf-8", "text/html;charset=\"utf-8\"",
                "application/vnd.api+json",
                "multipart/form-data; boundary=----x; charset=utf-8", "text/plain;",
            ]
            try await storage.withBundle("b") { bundle in
                for type in types {
                    try await bundle.writeResource(
                        url: "https://e.com/x", contentType: type, statusCode: 200, bytes: [1])
                }
            }
            #expect(try await resources(of: "b", in: storage).map(\.contentType) == types)
        }
    }

    @Test(arguments: [99, 600, -1, 0, 1000])
    func invalidStatusCodes(statusCode: Int) async throws {
        try await expectWriteRefused(.invalidStatusCode, ["status code \(statusCode) "]) { bundle, stream in
            try await bundle.writeResource(
                url: "https://e.com/x", contentType: "text/plain", statusCode: statusCode, stream: stream)
        }
    }

    @Test func statusCodesAtTheLimitsAreAccepted() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            try await storage.withBundle("b") { bundle in
                for code in [100, 599] {
                    try await bundle.writeResource(
                        url: "https://e.com/x", contentType: "text/plain", statusCode: code, bytes: [])
                }
            }
            #expect(try await resources(of: "b", in: storage).map(\.statusCode) == [100, 599])
        }
    }

    /// A refused write consumes nothing of its stream, keeps no row and no file, and uses no sequence number.
    private func expectWriteRefused(
        _ code: SpoolError.Code, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
        _ write: @escaping (BundleWriter, FailingChunks) async throws -> SpooledResource
    ) async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let bundle = try await storage.openBundle("b")
            // 3 MiB if it were consumed: enough to reach tmp/ (and then fail).
            let stream = FailingChunks(failAfter: 3 << 20, watching: spool.temporaryDirectory)
            await expectSpoolError(code, mentioning: fragments, sourceLocation: sourceLocation) {
                _ = try await write(bundle, stream)
            }
            #expect(stream.bytesYielded == 0, "the stream was consumed", sourceLocation: sourceLocation)
            #expect(try await resources(of: "b", in: storage).isEmpty, sourceLocation: sourceLocation)
            #expect(spool.temporaryFiles.isEmpty, sourceLocation: sourceLocation)
            #expect(spool.dataFiles.isEmpty, sourceLocation: sourceLocation)
            let next = try await bundle.writeResource(
                url: "https://e.com/ok", contentType: "text/plain", statusCode: 200, bytes: [1])
            #expect(next.seq == 1, sourceLocation: sourceLocation)
        }
    }

    // MARK: Configuration

    @Test(arguments: [
        ("My_Bucket", ["'My_Bucket'"]),
        ("ab", ["'ab'", "2 characters"]),
        ("192.168.1.1", ["'192.168.1.1'", "IP address"]),
        ("a..b", ["'a..b'", "'..'"]),
        ("-bucket", ["'-bucket'"]),
        (String(repeating: "b", count: 64), ["64 characters"]),
    ])
    func invalidBucketNames(bucket: String, fragments: [String]) async throws {
        try await withTemporarySpool { spool in
            await expectSpoolError(.invalidConfiguration, mentioning: fragments) {
                _ = try PipelineStorage(bucket: bucket, spool: .directory(spool.path))
            }
            #expect(!fileExists(spool.path), "a refused configuration must not create the spool")
        }
    }

    @Test(arguments: [
        ("ftp://x", ["'ftp://x'"]),
        ("https://user@host", ["'https://user@host'"]),
        ("http://host/path", ["'http://host/path'"]),
        ("s3.amazonaws.com", ["'s3.amazonaws.com'"]),
    ])
    func invalidEndpoints(endpoint: String, fragments: [String]) async throws {
        try await withTemporarySpool { spool in
            await expectSpoolError(.invalidConfiguration, mentioning: fragments) {
                _ = try PipelineStorage(bucket: "test-bucket", endpoint: endpoint, spool: .directory(spool.path))
            }
            #expect(!fileExists(spool.path))
        }
    }

    @Test func validEndpointsAndRegionsAreAccepted() async throws {
        try await withTemporarySpool { spool in
            let storage = try PipelineStorage(
                bucket: "my.dotted.bucket", region: "eu-central-2", endpoint: "http://127.0.0.1:9000/",
                spool: .directory(spool.path))
            #expect(storage.destination.endpoint == "http://127.0.0.1:9000/")
            #expect(storage.destination.region == "eu-central-2")
            await expectSpoolError(.invalidConfiguration, mentioning: ["'us east 1'"]) {
                _ = try PipelineStorage(bucket: "test-bucket", region: "us east 1", spool: .directory(spool.path))
            }
        }
    }

    @Test(arguments: [
        ("data/../x", ["'data/../x'", "'..'"]),
        ("..", ["'..'"]),
        ("./x", ["'./x'", "'.'"]),
        ("da ta", ["'da ta'"]),
    ])
    func invalidPrefixes(prefix: String, fragments: [String]) async throws {
        try await withTemporarySpool { spool in
            await expectSpoolError(.invalidConfiguration, mentioning: fragments) {
                _ = try spool.storage(prefix: prefix)
            }
            #expect(!fileExists(spool.path))
        }
    }

    @Test func invalidStorageOptions() async throws {
        try await withTemporarySpool { spool in
            var smallChunks = StorageOptions()
            smallChunks.multipartChunkSizeBytes = 1 << 20
            await expectSpoolError(.invalidConfiguration, mentioning: ["multipartChunkSize 1048576"]) {
                _ = try spool.storage(options: smallChunks)
            }
            var fastClass = StorageOptions()
            fastClass.storageClass = "FAST"
            await expectSpoolError(.invalidConfiguration, mentioning: ["storageClass 'FAST'", "STANDARD_IA"]) {
                _ = try spool.storage(options: fastClass)
            }
            var noUploads = StorageOptions()
            noUploads.maxConcurrentUploads = 0
            await expectSpoolError(.invalidConfiguration, mentioning: ["maxConcurrentUploads 0"]) {
                _ = try spool.storage(options: noUploads)
            }
            var lowThreshold = StorageOptions()
            lowThreshold.multipartThresholdBytes = 1000
            await expectSpoolError(.invalidConfiguration, mentioning: ["multipartThreshold 1000"]) {
                _ = try spool.storage(options: lowThreshold)
            }
            var awsNamespace = StorageOptions()
            awsNamespace.metricsNamespace = "AWS/S3"
            await expectSpoolError(.invalidConfiguration, mentioning: ["'AWS/S3'"]) {
                _ = try spool.storage(options: awsNamespace)
            }
            var badKey = StorageOptions()
            badKey.encryption = .kms(keyID: "has space", bucketKey: true)
            await expectSpoolError(.invalidConfiguration, mentioning: ["'has space'"]) {
                _ = try spool.storage(options: badKey)
            }
            // The same checks guard the file:// target.
            await expectSpoolError(.invalidConfiguration, mentioning: ["maxConcurrentUploads 0"]) {
                _ = try PipelineStorage(
                    directory: spool.base + "/out", options: noUploads, spool: .directory(spool.path))
            }
            #expect(!fileExists(spool.path))
        }
    }

    @Test func aNonFileURLIsRefusedForTheFileOverload() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let bundle = try await storage.openBundle("b")
            await expectSpoolError(.invalidConfiguration, mentioning: ["'https://e.com/file.bin'"]) {
                try await bundle.writeResource(
                    url: "https://e.com/x", contentType: "text/plain", statusCode: 200,
                    contentsOf: URL(string: "https://e.com/file.bin")!)
            }
            await expectSpoolError(.io, mentioning: [spool.base + "/missing.bin"]) {
                try await bundle.writeResource(
                    url: "https://e.com/x", contentType: "text/plain", statusCode: 200,
                    contentsOf: URL(fileURLWithPath: spool.base + "/missing.bin"))
            }
            #expect(try await resources(of: "b", in: storage).isEmpty)
            #expect(spool.temporaryFiles.isEmpty)
        }
    }
}
