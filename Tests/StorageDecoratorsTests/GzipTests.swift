import Foundation
import PipelineStorage
import Testing

@Suite("UnzipResourcesDecorator: gzip")
struct GzipTests {
    @Test("a gzip made by python's gzip module is stored decompressed: .gz dropped, type guessed, bytes and SHA-256")
    func pythonGzipRoundTrip() async throws {
        try await withSandbox { sandbox in
            let plain = Array(#"{"fetched": true, "items": [1, 2, 3]}"#.utf8) + testBytes(300_000, seed: 1)
            try Data(plain).write(to: URL(fileURLWithPath: sandbox.path("data.json")))
            try await archiveTool(["gzip", sandbox.path("data.json"), sandbox.path("data.json.gz")], in: sandbox)
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            let stored = try await storage.withBundle("gz-1") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/dump/data.json.gz?token=1", contentType: "application/gzip",
                    statusCode: 203, metadata: ["fetched-by": "worker-7"],
                    contentsOf: URL(fileURLWithPath: sandbox.path("data.json.gz")))
            }
            #expect(stored.count == 1)
            #expect(stored.first?.url == "https://example.com/dump/data.json?token=1")
            #expect(stored.first?.spooled != nil)

            let records = try await spooledResources(storage.base, bundle: "gz-1")
            let record = try #require(records.first)
            #expect(records.count == 1)
            #expect(record.url == "https://example.com/dump/data.json?token=1")
            #expect(record.name == "data.json")
            #expect(record.contentType == "application/json")
            #expect(record.statusCode == 203)
            #expect(record.metadata == ["fetched-by": "worker-7", "unzip-source": "gzip"])
            #expect(record.size == Int64(plain.count))
            #expect(record.sha256 == sha256Hex(plain))
            #expect(try await payload(storage.base, record) == plain)
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    @Test("multi-member gzip from the gzip program (two files concatenated) is read whole")
    func multiMemberGzip() async throws {
        try await withSandbox { sandbox in
            let first = testBytes(70_000, seed: 2)
            let second = Array("second member\n".utf8)
            try Data(first).write(to: URL(fileURLWithPath: sandbox.path("one")))
            try Data(second).write(to: URL(fileURLWithPath: sandbox.path("two")))
            try await run("/usr/bin/env", ["gzip", "-k", "one", "two"], workingDirectory: sandbox.base)
            let joined = try fileBytes(sandbox.path("one.gz")) + fileBytes(sandbox.path("two.gz"))

            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            try await storage.withBundle("gz-2") { bundle in
                // Tiny chunks: member boundaries and the gzip headers fall across chunk boundaries.
                try await bundle.writeResource(
                    url: "https://example.com/log.tgz", contentType: "application/octet-stream", statusCode: 200,
                    stream: chunked(joined, size: 7))
            }
            let record = try #require(try await spooledResources(storage.base, bundle: "gz-2").first)
            #expect(record.url == "https://example.com/log.tar")
            #expect(record.contentType == "application/x-tar")
            #expect(try await payload(storage.base, record) == first + second)
        }
    }

    @Test("gzip is recognised by its first bytes under another type; the type and URL are then kept")
    func gzipDetectedByMagicBytes() async throws {
        try await withSandbox { sandbox in
            let page = Array("<html><body>compressed by a confused server</body></html>".utf8)
            try Data(page).write(to: URL(fileURLWithPath: sandbox.path("page")))
            try await archiveTool(["gzip", sandbox.path("page"), sandbox.path("page.gz")], in: sandbox)
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            try await storage.withBundle("gz-3") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/index", contentType: "text/html; charset=utf-8", statusCode: 200,
                    data: Data(try fileBytes(sandbox.path("page.gz"))))
                // Detection by content can be switched off.
            }
            let record = try #require(try await spooledResources(storage.base, bundle: "gz-3").first)
            #expect(record.url == "https://example.com/index")
            #expect(record.contentType == "text/html; charset=utf-8")
            #expect(try await payload(storage.base, record) == page)

            var options = UnzipOptions()
            options.detectByContent = false
            let literal = try UnzipResourcesDecorator(base: try sandbox.storage(), options: options)
            try await literal.withBundle("gz-3b") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/index", contentType: "text/html", statusCode: 200,
                    data: Data(try fileBytes(sandbox.path("page.gz"))))
            }
            let kept = try #require(try await spooledResources(storage.base, bundle: "gz-3b").first)
            #expect(try await payload(storage.base, kept) == fileBytes(sandbox.path("page.gz")))
        }
    }

    /// How a gzip stream is damaged.
    enum Damage: String, CaseIterable, Sendable {
        /// Cut in the middle.
        case truncated
        /// One byte of the deflate data flipped (a bad block or a CRC-32 mismatch).
        case flippedByte
        /// Not gzip at all, only named so (a client that already decompressed it).
        case notGzip
        /// A good member followed by garbage.
        case trailingGarbage
        /// Nothing.
        case empty
    }

    @Test("a corrupt gzip stream is stored unchanged, with unzip-warning saying why", arguments: Damage.allCases)
    func corruptGzipStoredUnchanged(damage: Damage) async throws {
        try await withSandbox { sandbox in
            let plain = testBytes(400_000, seed: 3)
            try Data(plain).write(to: URL(fileURLWithPath: sandbox.path("p")))
            try await archiveTool(["gzip", sandbox.path("p"), sandbox.path("p.gz")], in: sandbox)
            var bytes = try fileBytes(sandbox.path("p.gz"))
            switch damage {
            case .truncated: bytes = Array(bytes.prefix(bytes.count / 2))
            case .flippedByte: bytes[bytes.count / 2] ^= 0xFF
            case .notGzip: bytes = Array("plain text, not gzip".utf8)
            case .trailingGarbage: bytes += Array("garbage".utf8)
            case .empty: bytes = []
            }
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            let stored = try await storage.withBundle("gz-bad") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/p.bin.gz", contentType: "application/gzip", statusCode: 200,
                    stream: chunked(bytes, size: 65_536))
            }
            #expect(stored.count == 1)
            let records = try await spooledResources(storage.base, bundle: "gz-bad")
            let record = try #require(records.first)
            #expect(records.count == 1, "the partly decompressed attempt must not stay visible")
            #expect(record.url == "https://example.com/p.bin.gz")
            #expect(record.contentType == "application/gzip")
            let warning = try #require(record.metadata["unzip-warning"])
            #expect(warning.hasPrefix("gzip data is corrupt ("), "\(warning)")
            #expect(warning.hasSuffix("; stored unchanged"), "\(warning)")
            #expect(record.metadata["unzip-source"] == nil)
            #expect(try await payload(storage.base, record) == bytes)
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    @Test("a gzip bomb is refused by the ratio limit and the size limit; nothing is stored, no scratch file left")
    func gzipBombRefused() async throws {
        try await withSandbox { sandbox in
            // 64 MiB of zeros deflate to about 64 KiB: a ratio of about 1,000.
            try await archiveTool(["zeros-gzip", sandbox.path("zeros.gz"), "64"], in: sandbox)
            let url = URL(fileURLWithPath: sandbox.path("zeros.gz"))
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            let bundle = try await storage.openBundle("bomb")
            await expectSpoolError(
                .archiveLimitExceeded,
                mentioning: [
                    "gzip resource 'https://example.com/zeros.gz'", "UnzipOptions.maxCompressionRatio",
                    "likely zip bomb", "nothing of it was stored",
                ]
            ) {
                try await bundle.writeResource(
                    url: "https://example.com/zeros.gz", contentType: "application/gzip", statusCode: 200,
                    contentsOf: url)
            }
            let sized = try UnzipResourcesDecorator(
                base: try sandbox.storage(),
                options: UnzipOptions(maxExpandedBytes: 10 << 20, maxCompressionRatio: 10_000))
            await expectSpoolError(
                .archiveLimitExceeded, mentioning: ["more than 10485760 bytes", "UnzipOptions.maxExpandedBytes"]
            ) {
                _ = try await sized.withBundle("bomb") { bundle in
                    try await bundle.writeResource(
                        url: "https://example.com/zeros.gz", contentType: "application/gzip", statusCode: 200,
                        contentsOf: url)
                }
            }
            #expect(try await spooledResources(storage.base, bundle: "bomb").isEmpty)
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")

            // Raised limits let the same stream through.
            let lenient = try UnzipResourcesDecorator(
                base: try sandbox.storage(), options: UnzipOptions(maxCompressionRatio: 2_000))
            try await lenient.withBundle("bomb") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/zeros.gz", contentType: "application/gzip", statusCode: 200,
                    contentsOf: url)
            }
            #expect(try await spooledResources(storage.base, bundle: "bomb").first?.size == 64 << 20)
        }
    }

    @Test("a producer's stream error comes back unchanged and leaves nothing")
    func producerErrorPassesThrough() async throws {
        struct Reset: Error, Equatable {}
        try await withSandbox { sandbox in
            try Data(testBytes(200_000, seed: 4)).write(to: URL(fileURLWithPath: sandbox.path("p")))
            try await archiveTool(["gzip", sandbox.path("p"), sandbox.path("p.gz")], in: sandbox)
            let compressed = try fileBytes(sandbox.path("p.gz"))
            let failing = AsyncThrowingStream<[UInt8], any Error> { continuation in
                continuation.yield(Array(compressed.prefix(50_000)))
                continuation.finish(throwing: Reset())
            }
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            let bundle = try await storage.openBundle("reset")
            await #expect(throws: Reset.self) {
                try await bundle.writeResource(
                    url: "https://example.com/p.gz", contentType: "application/gzip", statusCode: 200,
                    stream: failing)
            }
            #expect(try await spooledResources(storage.base, bundle: "reset").isEmpty)
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    @Test("options out of range are refused, naming the option")
    func optionsValidated() throws {
        #expect(throws: SpoolError.self) { try UnzipOptions(maxExpandedBytes: 0).validate() }
        #expect(throws: SpoolError.self) { try UnzipOptions(maxCompressionRatio: 0).validate() }
        #expect(throws: SpoolError.self) { try UnzipOptions(maxMembers: 0).validate() }
        #expect(throws: Never.self) { try UnzipOptions(ratioCheckMinimumBytes: 0).validate() }
        #expect(throws: SpoolError.self) { try BundleOptions(archiveName: "bundle.tar").validate() }
        #expect(throws: SpoolError.self) { try BundleOptions(archiveName: "../x.zip").validate() }
    }
}
