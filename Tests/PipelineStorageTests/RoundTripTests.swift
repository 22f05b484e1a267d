import Foundation
import Hashing
import PipelineStorage
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite struct RoundTripTests {
    enum Overload: String, CaseIterable, Sendable {
        /// `stream:` with an `AsyncStream<[UInt8]>` of odd-sized chunks.
        case chunkStream
        /// `data:`
        case data
        /// `bytes: [UInt8]`
        case byteArray
        /// `contentsOf:` a file URL.
        case file
        /// `bytes:` with an `AsyncStream<UInt8>`, one byte at a time.
        case byteAtATime
    }

    /// Around the default inline threshold (64 KiB), empty, one byte, and a payload spanning several write buffers.
    static let sizes = [0, 1, 65_535, 65_536, 65_537, 3 << 20]

    @Test(arguments: Overload.allCases, sizes)
    func writtenResourcesReadBackExactly(overload: Overload, size: Int) async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage(prefix: "data/")
            let bytes = testBytes(
                size, seed: UInt64(size) &* 1_000 &+ UInt64(Overload.allCases.firstIndex(of: overload)!))
            let url = "https://example.com/a/data.json?x=1"
            let metadata = [
                "fetched-by": "worker-7", "size": String(size), "unicode": "grüße, 東京",
                "escapes": "a \"quoted\" \\ value, {json: [1]}",
            ]
            let bundleID = "bundle-\(overload.rawValue)-\(size)"
            let input = spool.base + "/input.bin"
            if overload == .file {
                try Data(bytes).write(to: URL(fileURLWithPath: input))
            }

            let written = try await storage.withBundle(bundleID, metadata: ["source": "example.com"]) { bundle in
                switch overload {
                case .chunkStream:
                    try await bundle.writeResource(
                        url: url, contentType: "application/json; charset=utf-8", statusCode: 203, metadata: metadata,
                        stream: chunkStream(oddChunks(bytes)))
                case .data:
                    try await bundle.writeResource(
                        url: url, contentType: "application/json; charset=utf-8", statusCode: 203, metadata: metadata,
                        data: Data(bytes))
                case .byteArray:
                    try await bundle.writeResource(
                        url: url, contentType: "application/json; charset=utf-8", statusCode: 203, metadata: metadata,
                        bytes: bytes)
                case .file:
                    try await bundle.writeResource(
                        url: url, contentType: "application/json; charset=utf-8", statusCode: 203, metadata: metadata,
                        contentsOf: URL(fileURLWithPath: input))
                case .byteAtATime:
                    try await bundle.writeResource(
                        url: url, contentType: "application/json; charset=utf-8", statusCode: 203, metadata: metadata,
                        bytes: byteStream(bytes))
                }
            }

            let expectedSHA256 = SHA256Hasher.hexDigest(bytes)
            let expectedCRC32C = CRC32C.checksum(bytes)
            let expectedKey = "data/\(bundleID)/000001-data.json"
            #expect(written.seq == 1)
            #expect(written.bundleID == bundleID)
            #expect(written.objectKey == expectedKey)
            #expect(written.size == Int64(size))
            #expect(written.sha256 == expectedSHA256)
            #expect(written.crc32c == expectedCRC32C)

            let listed = try await resources(of: bundleID, in: storage)
            let record = try #require(listed.first)
            #expect(listed.count == 1)
            #expect(record.id == written.id)
            #expect(record.kind == .resource)
            #expect(record.seq == 1)
            #expect(record.objectKey == expectedKey)
            #expect(record.name == "data.json")
            #expect(record.url == url)
            #expect(record.contentType == "application/json; charset=utf-8")
            #expect(record.statusCode == 203)
            #expect(record.metadata == metadata)
            #expect(record.size == Int64(size))
            #expect(record.sha256 == expectedSHA256)
            #expect(record.crc32c == expectedCRC32C)
            #expect(record.state == .pending)
            #expect(record.attempts == 0)
            #expect(record.spooledAt == written.spooledAt)

            let readBack = try await storage.spool.payloadBytes(of: written.id)
            #expect(readBack.count == size)
            #expect(readBack == bytes)
            #expect(SHA256Hasher.hexDigest(readBack) == expectedSHA256)

            if size <= storage.spool.options.inlineThresholdBytes {
                #expect(record.payloadStorage == .inline)
                #expect(record.payloadPath == nil)
                #expect(spool.dataFiles.isEmpty)
            } else {
                #expect(record.payloadStorage == .file)
                let path = try #require(record.payloadPath)
                #expect(path.hasPrefix("data/"))
                #expect(spool.dataFiles.count == 1)
                var info = stat()
                #expect(stat(spool.path + "/" + path, &info) == 0)
                #expect(info.st_size == size)
                #expect(info.st_mode & 0o777 == 0o600)
                let onDisk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: spool.path + "/" + path)))
                #expect(onDisk == bytes)
            }
            #expect(spool.temporaryFiles.isEmpty)

            let detail = try await storage.spool.resourceDetail(written.id)
            #expect(detail.resource == record)
            #expect(detail.bundle.state == .sealed)
            #expect(detail.bundle.metadata == ["source": "example.com"])
            #expect(detail.destination.spec.location == "test-bucket")
            #expect(detail.destination.spec.kind == .s3)
            #expect(detail.events.map(\.action) == ["resource.spooled"])
        }
    }

    @Test func anExplicitNameIsUsedInTheKey() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage(prefix: "data/")
            try await storage.withBundle("named") { bundle in
                let first = try await bundle.writeResource(
                    url: "https://example.com/a/data.json?x=1", contentType: "application/json", statusCode: 200,
                    name: "custom.name-v2.bin", bytes: [1, 2, 3])
                let second = try await bundle.writeResource(
                    url: "https://example.com/a/other.json", contentType: "application/json", statusCode: 200,
                    bytes: [4])
                #expect(first.objectKey == "data/named/000001-custom.name-v2.bin")
                #expect(second.objectKey == "data/named/000002-other.json")
            }
            let names = try await resources(of: "named", in: storage).map(\.name)
            #expect(names == ["custom.name-v2.bin", "other.json"])
        }
    }

    @Test(arguments: [
        ("https://example.com/", "index"), ("https://example.com", "index"),
        ("https://example.com/files/report%20final.pdf", "report_final.pdf"),
        ("https://example.com/a/b/?page=2#top", "b"), ("https://example.com/..", "_."),
    ])
    func theNameComesFromTheURLsLastSegment(url: String, name: String) async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage(prefix: "p")
            let written = try await storage.withBundle("b") { bundle in
                try await bundle.writeResource(url: url, contentType: "text/html", statusCode: 200, bytes: [0])
            }
            #expect(written.objectKey == "p/b/000001-\(name)")
        }
    }

    @Test(arguments: [("data", "data/"), ("data/", "data/"), ("/data//", "data/"), ("a//b/", "a/b/"), ("", "")])
    func thePrefixIsNormalised(prefix: String, normalised: String) async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage(prefix: prefix)
            #expect(storage.prefix == normalised)
            let written = try await storage.withBundle("b1") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/a/data.json?x=1", contentType: "application/json", statusCode: 200,
                    bytes: [1])
            }
            #expect(written.objectKey == "\(normalised)b1/000001-data.json")
            let manifest = try await storage.spool.listResources(ResourceFilter(bundleID: "b1", includeManifests: true))
                .first { $0.kind == .manifest }
            #expect(manifest?.objectKey == "\(normalised)b1/_bundle.json")
            #expect(try await storage.spool.bundle("b1")?.keyPrefix == normalised)
        }
    }

    @Test func storageOptionsAreRecordedWithTheDestination() async throws {
        try await withTemporarySpool { spool in
            var options = StorageOptions()
            options.storageClass = "STANDARD_IA"
            options.maxConcurrentUploads = 3
            let storage = try spool.storage(options: options)
            _ = try await storage.withBundle("b") { bundle in
                try await bundle.writeResource(
                    url: "https://e.com/x", contentType: "text/plain", statusCode: 200, bytes: [])
            }
            let destinations = try await storage.spool.destinations()
            #expect(destinations.count == 1)
            let recorded = try JSONDecoder().decode(
                StorageOptions.self, from: Data(try #require(destinations.first).spec.optionsJSON.utf8))
            #expect(recorded == options)
            #expect(destinations.first?.spec.region == "us-east-1")
        }
    }
}
