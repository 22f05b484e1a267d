import Foundation
import PipelineStorage
import Testing

@Suite("UnzipResourcesDecorator: zip")
struct ZipTests {
    @Test("a zip made by python's zipfile is stored as one resource per member: URLs, types, status, bytes, SHA-256")
    func pythonZipRoundTrip() async throws {
        try await withSandbox { sandbox in
            let text = Array("hello from a.txt\n".utf8)
            let json = Array(#"{"b": 2}"#.utf8)
            let big = testBytes(3 << 20, seed: 5)
            let umlaut = Array("grüße\n".utf8)
            try await makeZip(
                sandbox.path("a.zip"),
                [
                    ZipMemberSpec("a.txt", text), ZipMemberSpec("dir/", [], method: "store"),
                    ZipMemberSpec("dir/b.json", json, method: "store"), ZipMemberSpec("dir/sub/c d.bin", big),
                    ZipMemberSpec("./ümlaut.txt", umlaut), ZipMemberSpec("empty.txt", []),
                ], in: sandbox)
            let archive = try fileBytes(sandbox.path("a.zip"))
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            let stored = try await storage.withBundle("zip-1") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/files/a.zip?sig=abc", contentType: "application/zip", statusCode: 203,
                    metadata: ["fetched-by": "worker-7"], stream: chunked(archive, size: 65_537))
            }
            #expect(stored.count == 5)

            let records = try await spooledResources(storage.base, bundle: "zip-1")
            let expected: [(url: String, type: String, bytes: [UInt8], member: String)] = [
                ("https://example.com/files/a.zip/a.txt?sig=abc", "text/plain", text, "a.txt"),
                ("https://example.com/files/a.zip/dir/b.json?sig=abc", "application/json", json, "dir/b.json"),
                (
                    "https://example.com/files/a.zip/dir/sub/c%20d.bin?sig=abc", "application/octet-stream", big,
                    "dir/sub/c%20d.bin"
                ),
                ("https://example.com/files/a.zip/%C3%BCmlaut.txt?sig=abc", "text/plain", umlaut, "%C3%BCmlaut.txt"),
                ("https://example.com/files/a.zip/empty.txt?sig=abc", "text/plain", [], "empty.txt"),
            ]
            try #require(records.count == expected.count, "\(records.map(\.url))")
            for (record, want) in zip(records, expected) {
                #expect(record.url == want.url)
                #expect(record.contentType == want.type, "\(record.url)")
                #expect(record.statusCode == 203)
                #expect(record.size == Int64(want.bytes.count))
                #expect(record.sha256 == sha256Hex(want.bytes), "\(record.url)")
                #expect(try await payload(storage.base, record) == want.bytes, "\(record.url)")
                #expect(record.metadata["fetched-by"] == "worker-7")
                #expect(record.metadata["unzip-source"] == "zip")
                #expect(record.metadata["unzip-member"] == want.member)
                #expect(record.metadata["unzip-archive-sha256"] == sha256Hex(archive))
            }
            // Key names keep only key characters (SPEC §4): "ü" is two bytes, two underscores.
            #expect(records.map(\.name) == ["a.txt", "b.json", "c_d.bin", "__mlaut.txt", "empty.txt"])
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    @Test("zips made by the zip program, from files and streamed to stdout (data descriptors), expand the same")
    func zipProgramArchives() async throws {
        try await withSandbox { sandbox in
            let tree = sandbox.path("tree")
            try FileManager.default.createDirectory(atPath: tree + "/docs", withIntermediateDirectories: true)
            let readme = Array("read me\n".utf8)
            let data = testBytes(500_000, seed: 6)
            try Data(readme).write(to: URL(fileURLWithPath: tree + "/README.md"))
            try Data(data).write(to: URL(fileURLWithPath: tree + "/docs/data.csv"))
            try await run("/usr/bin/env", ["zip", "-q", "-X", "-r", "../files.zip", "."], workingDirectory: tree)
            // `zip -` writes to a pipe, so it cannot seek back: sizes and CRCs go in data descriptors.
            let streamed = try await run(
                "/bin/sh", ["-c", "zip -q -X -r - . | cat > ../streamed.zip"], workingDirectory: tree)
            #expect(streamed.isEmpty)

            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            for name in ["files.zip", "streamed.zip"] {
                try await storage.withBundle(name) { bundle in
                    try await bundle.writeResource(
                        url: "https://example.com/\(name)", contentType: "application/zip", statusCode: 200,
                        contentsOf: URL(fileURLWithPath: sandbox.path(name)))
                }
                let records = try await spooledResources(storage.base, bundle: name)
                let byMember = Dictionary(uniqueKeysWithValues: records.map { ($0.metadata["unzip-member"]!, $0) })
                #expect(Set(byMember.keys) == ["README.md", "docs/data.csv"], "\(name)")
                #expect(try await payload(storage.base, try #require(byMember["README.md"])) == readme)
                #expect(try #require(byMember["docs/data.csv"]).sha256 == sha256Hex(data))
                #expect(byMember["docs/data.csv"]?.contentType == "text/csv")
            }
        }
    }

    /// A member path that would climb out of the archive.
    struct SlipCase: Sendable, CustomTestStringConvertible {
        var name: String
        var reason: String
        /// Bytes to patch after zipfile wrote the name (zipfile cuts names at a NUL).
        var patch: (String, String)?
        var testDescription: String { name }
    }

    static let slipCases = [
        SlipCase(name: "../../etc/passwd", reason: "climbs out of the archive ('..')"),
        SlipCase(name: "docs/../../escape.txt", reason: "climbs out of the archive ('..')"),
        SlipCase(name: "/etc/cron.d/evil", reason: "is an absolute path"),
        SlipCase(name: "..\\..\\windows\\evil.dll", reason: "has a backslash"),
        SlipCase(name: "C:/Windows/evil.dll", reason: "is an absolute Windows path"),
        SlipCase(name: "evilXname.txt", reason: "has a NUL character", patch: (hex("evilXname"), hex("evil\0name"))),
    ]

    @Test(
        "zip-slip members are refused with an error naming the member; nothing of the archive is stored",
        arguments: slipCases)
    func zipSlipRefused(slip: SlipCase) async throws {
        try await withSandbox { sandbox in
            try await makeZip(
                sandbox.path("slip.zip"),
                [ZipMemberSpec("fine.txt", Array("fine".utf8)), ZipMemberSpec(slip.name, Array("evil".utf8))],
                in: sandbox, replace: slip.patch)
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            let bundle = try await storage.openBundle("slip")
            let shownName = slip.patch == nil ? slip.name : "evil"
            await expectSpoolError(
                .unsafeArchiveMember,
                mentioning: [
                    shownName, "'https://example.com/slip.zip'", slip.reason, "zip-slip",
                    "nothing of the archive was stored",
                ]
            ) {
                try await bundle.writeResource(
                    url: "https://example.com/slip.zip", contentType: "application/zip", statusCode: 200,
                    contentsOf: URL(fileURLWithPath: sandbox.path("slip.zip")))
            }
            #expect(try await spooledResources(storage.base, bundle: "slip").isEmpty)
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    @Test("a symbolic link member is refused like zip-slip")
    func symbolicLinkRefused() async throws {
        try await withSandbox { sandbox in
            try await makeZip(
                sandbox.path("link.zip"), [ZipMemberSpec("passwd", Array("/etc/passwd".utf8), mode: "120777")],
                in: sandbox)
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            await expectSpoolError(.unsafeArchiveMember, mentioning: ["'passwd'", "symbolic link"]) {
                try await storage.withBundle("link") { bundle in
                    _ = try await bundle.writeResource(
                        url: "https://example.com/link.zip", contentType: "application/zip", statusCode: 200,
                        contentsOf: URL(fileURLWithPath: sandbox.path("link.zip")))
                }
            }
        }
    }

    @Test("zip bombs are refused: compression ratio, total size, member count, overlapping members")
    func zipBombsRefused() async throws {
        try await withSandbox { sandbox in
            try await makeZip(
                sandbox.path("ratio.zip"), [ZipMemberSpec("zeros.bin", [UInt8](repeating: 0, count: 64 << 20))],
                in: sandbox)
            try await makeZip(
                sandbox.path("many.zip"), (1...5).map { ZipMemberSpec("f\($0).txt", Array("x".utf8)) }, in: sandbox)
            try await archiveTool(["overlapping-zip", sandbox.path("overlap.zip")], in: sandbox)
            // 70,000 entries do not fit the end record's 16-bit count: the count comes from the zip64 end record.
            try await archiveTool(["many-zip", sandbox.path("zip64.zip"), "70000"], in: sandbox)
            let cases: [(file: String, options: UnzipOptions, fragments: [String])] = [
                ("ratio.zip", UnzipOptions(), ["zip member 'zeros.bin'", "UnzipOptions.maxCompressionRatio"]),
                (
                    "ratio.zip", UnzipOptions(maxExpandedBytes: 1 << 20, maxCompressionRatio: 100_000),
                    ["more than 1048576 bytes", "UnzipOptions.maxExpandedBytes"]
                ),
                ("many.zip", UnzipOptions(maxMembers: 4), ["has 5 entries", "UnzipOptions.maxMembers"]),
                ("zip64.zip", UnzipOptions(), ["has 70000 entries", "limit of 10000"]),
                ("overlap.zip", UnzipOptions(), ["'a.txt' and 'b.txt' share bytes", "zip bomb"]),
            ]
            for (file, options, fragments) in cases {
                let storage = try UnzipResourcesDecorator(base: try sandbox.storage(), options: options)
                let bundle = try await storage.openBundle("bomb")
                await expectSpoolError(.archiveLimitExceeded, mentioning: fragments + ["nothing of it was stored"]) {
                    try await bundle.writeResource(
                        url: "https://example.com/\(file)", contentType: "application/zip", statusCode: 200,
                        contentsOf: URL(fileURLWithPath: sandbox.path(file)))
                }
                #expect(try await spooledResources(storage.base, bundle: "bomb").isEmpty, "\(file)")
            }
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    /// How a zip archive is damaged.
    enum Damage: String, CaseIterable, Sendable {
        /// Cut in half: no end of central directory record.
        case truncated
        /// A byte flipped in the second member's deflate data.
        case flippedByteInSecondMember
        /// The second member's compressed size made smaller in both headers: its deflate data ends early.
        /// (ZIPFoundation 0.9.20's extract spins forever on this on Linux.)
        case shortCompressedSize
        /// The first member's declared size made smaller than what its data expands to.
        case understatedSize
        /// Encrypted members cannot be expanded.
        case encrypted
        /// No file members at all.
        case onlyDirectories
        /// Not a zip, only named so.
        case notZip
    }

    @Test(
        "a corrupt zip is stored unchanged with unzip-warning; members stored before the damage stay",
        .timeLimit(.minutes(1)), arguments: Damage.allCases)
    func corruptZipStoredUnchanged(damage: Damage) async throws {
        try await withSandbox { sandbox in
            let first = Array("first member\n".utf8)
            let second = testBytes(200_000, seed: 8)  // incompressible: deflate keeps it in stored blocks
            var members = [ZipMemberSpec("first.txt", first), ZipMemberSpec("second.bin", second)]
            if damage == .onlyDirectories { members = [ZipMemberSpec("a/", [], method: "store")] }
            try await makeZip(sandbox.path("d.zip"), members, in: sandbox)
            var bytes = try fileBytes(sandbox.path("d.zip"))
            switch damage {
            case .truncated: bytes = Array(bytes.prefix(bytes.count / 2))
            case .flippedByteInSecondMember: bytes[bytes.count / 2] ^= 0xFF
            case .shortCompressedSize: try patchSizes(&bytes, member: "second.bin", compressedDelta: -1_000)
            case .understatedSize: try patchSizes(&bytes, member: "first.txt", uncompressedDelta: -3)
            case .encrypted: try setFlag(&bytes, member: "second.bin", bit: 0)
            case .onlyDirectories, .notZip: break
            }
            if damage == .notZip { bytes = Array("a fetched error page, not a zip".utf8) }

            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            try await storage.withBundle("bad") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/d.zip", contentType: "application/zip", statusCode: 200,
                    stream: chunked(bytes))
            }
            let records = try await spooledResources(storage.base, bundle: "bad")
            let archive = try #require(records.last)
            #expect(archive.url == "https://example.com/d.zip")
            #expect(try await payload(storage.base, archive) == bytes, "the archive must be stored unchanged")
            let warning = try #require(archive.metadata["unzip-warning"], "\(damage)")
            #expect(warning.hasSuffix("stored unchanged") || warning.contains("stored unchanged;"), "\(warning)")
            switch damage {
            case .flippedByteInSecondMember, .shortCompressedSize:
                // The first member was stored before the damage in the second was found; nothing is dropped.
                #expect(records.count == 2)
                #expect(records.first?.metadata["unzip-member"] == "first.txt")
                #expect(try await payload(storage.base, records[0]) == first)
                #expect(warning.contains("member 'second.bin' is corrupt"), "\(warning)")
                #expect(warning.contains("the 1 members before it were stored"), "\(warning)")
            case .understatedSize:
                #expect(records.count == 1)
                #expect(warning.contains("expands past its declared size"), "\(warning)")
            case .encrypted:
                #expect(records.count == 1)
                #expect(warning == "zip member 'second.bin' is encrypted; stored unchanged")
            case .onlyDirectories:
                #expect(warning == "zip archive has no file members; stored unchanged")
            case .truncated, .notZip:
                #expect(records.count == 1)
                #expect(warning.contains("no end of central directory record"), "\(warning)")
            }
            #expect(sandbox.scratchFiles.isEmpty, "scratch files left: \(sandbox.scratchFiles)")
        }
    }

    @Test("archives inside an archive are stored as they are, even with a second unzip layer stacked on the first")
    func nestedArchivesExpandOneLevel() async throws {
        try await withSandbox { sandbox in
            try await makeZip(sandbox.path("inner.zip"), [ZipMemberSpec("deep.txt", Array("deep".utf8))], in: sandbox)
            try Data("gz inside".utf8).write(to: URL(fileURLWithPath: sandbox.path("note.txt")))
            try await archiveTool(["gzip", sandbox.path("note.txt"), sandbox.path("note.txt.gz")], in: sandbox)
            let inner = try fileBytes(sandbox.path("inner.zip"))
            let gz = try fileBytes(sandbox.path("note.txt.gz"))
            try await makeZip(
                sandbox.path("outer.zip"),
                [ZipMemberSpec("inner.zip", inner, method: "store"), ZipMemberSpec("note.txt.gz", gz)], in: sandbox)

            let twice = try UnzipResourcesDecorator(base: try UnzipResourcesDecorator(base: try sandbox.storage()))
            try await twice.withBundle("nested") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/outer.zip", contentType: "application/zip", statusCode: 200,
                    contentsOf: URL(fileURLWithPath: sandbox.path("outer.zip")))
            }
            let records = try await spooledResources(twice.base.base, bundle: "nested")
            #expect(
                records.map(\.url) == [
                    "https://example.com/outer.zip/inner.zip", "https://example.com/outer.zip/note.txt.gz",
                ])
            #expect(records.map(\.contentType) == ["application/zip", "application/gzip"])
            #expect(try await payload(twice.base.base, records[0]) == inner)
            #expect(try await payload(twice.base.base, records[1]) == gz)
        }
    }

    @Test("a zip recognised by its first bytes only under a generic type and a name without extension")
    func zipDetectedByMagicBytes() async throws {
        try await withSandbox { sandbox in
            try await makeZip(
                sandbox.path("x.zip"), [ZipMemberSpec("word/document.xml", Array("<w/>".utf8))], in: sandbox)
            let bytes = try fileBytes(sandbox.path("x.zip"))
            let storage = try UnzipResourcesDecorator(base: try sandbox.storage())
            try await storage.withBundle("magic") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/download", contentType: "application/octet-stream", statusCode: 200,
                    data: Data(bytes))
                // A .docx is a zip too, but stays whole.
                try await bundle.writeResource(
                    url: "https://example.com/report.docx", contentType: "application/octet-stream",
                    statusCode: 200, data: Data(bytes))
            }
            let records = try await spooledResources(storage.base, bundle: "magic")
            #expect(
                records.map(\.url) == [
                    "https://example.com/download/word/document.xml", "https://example.com/report.docx",
                ])
        }
    }
}

/// Changes a member's sizes in its local header and its central directory header.
private func patchSizes(
    _ bytes: inout [UInt8], member: String, compressedDelta: Int = 0, uncompressedDelta: Int = 0
) throws {
    let headers: [(signature: [UInt8], nameOffset: Int, sizeOffset: Int)] = [
        ([0x50, 0x4B, 0x03, 0x04], 30, 18), ([0x50, 0x4B, 0x01, 0x02], 46, 20),
    ]
    for (signature, nameOffset, sizeOffset) in headers {
        let start = try #require(headerStart(bytes, signature: signature, nameOffset: nameOffset, member: member))
        for (offset, delta) in [(sizeOffset, compressedDelta), (sizeOffset + 4, uncompressedDelta)] where delta != 0 {
            let old =
                Int(bytes[start + offset]) | Int(bytes[start + offset + 1]) << 8
                | Int(bytes[start + offset + 2]) << 16 | Int(bytes[start + offset + 3]) << 24
            let new = UInt32(old + delta)
            for index in 0..<4 { bytes[start + offset + index] = UInt8(truncatingIfNeeded: new >> (8 * index)) }
        }
    }
}

/// Sets a general purpose flag bit of a member in both headers.
private func setFlag(_ bytes: inout [UInt8], member: String, bit: Int) throws {
    let headers: [(signature: [UInt8], nameOffset: Int, flagOffset: Int)] = [
        ([0x50, 0x4B, 0x03, 0x04], 30, 6), ([0x50, 0x4B, 0x01, 0x02], 46, 8),
    ]
    for (signature, nameOffset, flagOffset) in headers {
        let start = try #require(headerStart(bytes, signature: signature, nameOffset: nameOffset, member: member))
        bytes[start + flagOffset] |= UInt8(1 << bit)
    }
}

/// Where the header with `signature` whose name (at `nameOffset`) is `member` starts.
private func headerStart(_ bytes: [UInt8], signature: [UInt8], nameOffset: Int, member: String) -> Int? {
    let name = Array(member.utf8)
    var index = 0
    while index + nameOffset + name.count <= bytes.count {
        if Array(bytes[index..<index + 4]) == signature,
            Array(bytes[(index + nameOffset)..<(index + nameOffset + name.count)]) == name
        {
            return index
        }
        index += 1
    }
    return nil
}
