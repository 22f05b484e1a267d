import Testing

@testable import Spool

@Suite struct ObjectKeyTests {
    @Test(
        arguments: [
            ("https://e.com/", "index"),
            ("https://e.com", "index"),
            ("https://e.com?x=/a/b.json", "index"),
            ("https://e.com/a/b%20c.html", "b_c.html"),
            ("https://example.com/a/data.json?x=1", "data.json"),
            ("https://e.com/a/data.json#part/two", "data.json"),
            ("https://e.com/a/b/?q=1#f", "b"),
            ("https://e.com/a//b.txt//", "b.txt"),
            ("https://user@e.com:8080/path/file.tar.gz", "file.tar.gz"),
            ("https://e.com/caf%C3%A9.html", "caf__.html"),
            ("https://e.com/a%2Fb", "a_b"),
            ("urn:isbn:0451450523", "isbn_0451450523"),
        ])
    func nameFromURL(url: String, expected: String) {
        #expect(ObjectKey.name(fromURL: url) == expected)
    }

    @Test(arguments: [
        "https://e.com/..", "https://e.com/.", "https://e.com/.hidden", "https://e.com/a/...json",
        "https://e.com/%2E%2E", "https://e.com/x..y",
    ])
    func derivedNamesNeverNavigate(url: String) throws {
        let name = ObjectKey.name(fromURL: url)
        #expect(!name.contains(".."))
        #expect(!name.hasPrefix("."))
        #expect(!name.isEmpty)
        try Validation.checkResourceName(name)
    }

    @Test func aLongSegmentIsCutToTheLimitKeepingItsExtension() throws {
        let segment = String(repeating: "a", count: 295) + ".json"
        let name = ObjectKey.name(fromURL: "https://e.com/dir/" + segment + "?page=2")
        #expect(name.utf8.count == Validation.maximumResourceNameBytes)
        #expect(name == String(repeating: "a", count: 195) + ".json")
        try Validation.checkResourceName(name)
    }

    @Test func aLongSegmentWithALongExtensionIsCutPlainly() {
        let segment = String(repeating: "b", count: 250) + "." + String(repeating: "e", count: 40)
        let name = ObjectKey.name(fromURL: "https://e.com/" + segment)
        #expect(name == String(repeating: "b", count: 200))
    }

    /// Cutting a long name must not glue a dot before the cut to the extension's dot (`x.` + `.json` = `x..json`).
    @Test func cuttingALongSegmentNeverMakesDotDot() throws {
        for dotPosition in 190...199 {
            var segment = Array(repeating: UInt8(ascii: "x"), count: 300)
            segment[dotPosition] = UInt8(ascii: ".")
            let url = "https://e.com/" + String(decoding: segment, as: UTF8.self) + ".json"
            let name = ObjectKey.name(fromURL: url)
            #expect(!name.contains(".."), "dot at \(dotPosition): \(name)")
            #expect(name.hasSuffix(".json"))
            #expect(name.utf8.count <= Validation.maximumResourceNameBytes)
            try Validation.checkResourceName(name)
        }
    }

    /// Whatever the URL, the derived name is a valid resource name.
    @Test func everyDerivedNameIsAValidResourceName() throws {
        let pieces = [
            "a", ".", "..", "%2E", "%2F", "/", "?", "#", "%", "%zz", "é", " ", "b.c", "~", "=", "%00", "\u{1F600}",
        ]
        var generatorState: UInt64 = 0x0B_1EC7
        func nextIndex(_ bound: Int) -> Int {
            generatorState = generatorState &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((generatorState >> 33) % UInt64(bound))
        }
        for _ in 0..<2000 {
            var path = ""
            for _ in 0..<nextIndex(40) { path += pieces[nextIndex(pieces.count)] }
            let name = ObjectKey.name(fromURL: "https://e.com/" + path)
            #expect(throws: Never.self, "\(path.debugDescription) → \(name.debugDescription)") {
                try Validation.checkResourceName(name)
            }
        }
    }

    @Test func resourceAndManifestKeys() {
        #expect(ObjectKey.resource(prefix: "data/", bundleID: "b1", seq: 1, name: "x.json") == "data/b1/000001-x.json")
        #expect(ObjectKey.resource(prefix: "", bundleID: "b1", seq: 999_999, name: "x") == "b1/999999-x")
        #expect(ObjectKey.resource(prefix: "p/", bundleID: "b1", seq: 1_234_567, name: "x") == "p/b1/1234567-x")
        #expect(ObjectKey.manifest(prefix: "data/", bundleID: "b1") == "data/b1/_bundle.json")
    }

    @Test(arguments: [
        ("data", "data/"), ("data/", "data/"), ("/data//", "data/"), ("a//b///c", "a/b/c/"),
        ("", ""), ("/", ""), ("///", ""),
    ])
    func prefixNormalisation(prefix: String, expected: String) throws {
        #expect(try ObjectKey.normalizePrefix(prefix) == expected)
    }

    @Test(arguments: ["data/../x", "..", "./data", "data/a b", "data/é"])
    func badPrefixesAreRefused(prefix: String) async {
        await expectSpoolError(.invalidConfiguration, mentioning: [Validation.quoted(prefix)]) {
            _ = try ObjectKey.normalizePrefix(prefix)
        }
    }

    @Test func anOverlongPrefixIsRefused() async {
        let prefix = String(repeating: "p", count: Validation.maximumPrefixBytes)
        await expectSpoolError(.invalidConfiguration, mentioning: ["\(Validation.maximumPrefixBytes + 1) bytes"]) {
            _ = try ObjectKey.normalizePrefix(prefix)
        }
    }
}
