import S3
import Testing

@Suite("URIEncoding")
struct URIEncodingTests {
    static let unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

    @Test("unreserved characters are kept")
    func unreservedKept() {
        #expect(URIEncoding.encode(Self.unreserved) == Self.unreserved)
        #expect(URIEncoding.encodePath("/" + Self.unreserved) == "/" + Self.unreserved)
    }

    @Test("space is %20 and plus is %2B, never the form encoding")
    func spaceAndPlus() {
        #expect(URIEncoding.encode("a b") == "a%20b")
        #expect(URIEncoding.encode("a+b") == "a%2Bb")
        #expect(URIEncoding.encodePath("/a b+c") == "/a%20b%2Bc")
    }

    @Test("slash: kept by encodePath, encoded by encode")
    func slash() {
        #expect(URIEncoding.encode("a/b") == "a%2Fb")
        #expect(URIEncoding.encodePath("/a/b/") == "/a/b/")
    }

    @Test("UTF-8 bytes with uppercase hex")
    func utf8() {
        #expect(URIEncoding.encode("ü") == "%C3%BC")
        #expect(URIEncoding.encode("ሴ") == "%E1%88%B4")
        #expect(URIEncoding.encodePath("/日本/😀") == "/%E6%97%A5%E6%9C%AC/%F0%9F%98%80")
        // A precomposed and a decomposed "é" are different bytes, so they encode (and sign) differently.
        #expect(URIEncoding.encode("\u{E9}") == "%C3%A9")
        #expect(URIEncoding.encode("e\u{301}") == "e%CC%81")
    }

    @Test(
        "reserved and other characters",
        arguments: [
            ("*", "%2A"), ("'", "%27"), ("(", "%28"), (")", "%29"), ("!", "%21"), ("=", "%3D"), ("&", "%26"),
            ("%", "%25"), ("~", "~"), ("?", "%3F"), ("#", "%23"), ("$", "%24"), (":", "%3A"), ("@", "%40"),
            (",", "%2C"), (";", "%3B"), ("\"", "%22"), ("\\", "%5C"), ("\t", "%09"), ("\u{7F}", "%7F"),
        ])
    func reserved(character: String, expected: String) {
        #expect(URIEncoding.encode(character) == expected)
        #expect(URIEncoding.encodePath(character) == expected)
    }

    @Test("an already-encoded text is encoded again: callers encode once")
    func notIdempotent() {
        #expect(URIEncoding.encode("a%20b") == "a%2520b")
    }

    @Test("encodePath never normalises: double slashes and dot segments stay")
    func pathNotNormalised() {
        #expect(URIEncoding.encodePath("a//b") == "a//b")
        #expect(URIEncoding.encodePath("//lead/and/trail//") == "//lead/and/trail//")
        #expect(URIEncoding.encodePath("/bucket/./x/../y") == "/bucket/./x/../y")
        #expect(URIEncoding.encodePath("/bucket/..") == "/bucket/..")
        #expect(URIEncoding.encodePath("") == "")
    }

    @Test("canonical query: encoded, then sorted by encoded name and value bytes")
    func canonicalQuery() {
        #expect(URIEncoding.canonicalQuery([]) == "")
        #expect(URIEncoding.canonicalQuery([("uploads", "")]) == "uploads=")
        #expect(
            URIEncoding.canonicalQuery([("prefix", "J"), ("max-keys", "2")]) == "max-keys=2&prefix=J")
        // Uppercase sorts before lowercase, and values break ties between repeated names.
        #expect(
            URIEncoding.canonicalQuery([("b", "2"), ("B", "1"), ("a", "z"), ("a", "Z"), ("a", "")])
                == "B=1&a=&a=Z&a=z&b=2")
        // Sorting is by the ENCODED form: "%" (0x25) sorts before "-" (0x2D) and letters.
        #expect(
            URIEncoding.canonicalQuery([("Param-3", "Value3"), ("Param", "Value2"), ("ሴ", "Value1")])
                == "%E1%88%B4=Value1&Param=Value2&Param-3=Value3")
        #expect(
            URIEncoding.canonicalQuery([("a b", "c+d"), ("a", "x=y&z"), ("key", "a/b")])
                == "a=x%3Dy%26z&a%20b=c%2Bd&key=a%2Fb")
    }
}
