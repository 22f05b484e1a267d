import Foundation
import Hashing
import S3
import Testing

/// The AWS Signature Version 4 test suite (as botocore carries it): every case must give the suite's canonical
/// request, string to sign and Authorization header.
///
/// The suite is generic SigV4 (service `service`), so these run with `normalizesPath: true`. No case is skipped: the
/// four that botocore skips pass here too. botocore skips them because it parses the query into a dictionary, which
/// loses repeated names (`get-vanilla-query-order-key`, `-value`) and their order (`-key-case`), and because its HTTP
/// parser cannot read the unencoded space in `normalize-path/get-space`; this parser keeps every pair in order and
/// takes the request target as everything between the method and the final ` HTTP/`.
@Suite("SigV4 test suite")
struct SigV4TestSuiteTests {
    static let credentials = AWSCredentials(
        accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let signer = SigV4Signer(service: "service", region: "us-east-1")
    /// 2015-08-30T12:36:00Z.
    static let date = Date(timeIntervalSince1970: 1_440_938_160)

    /// The session token each case signs with (nil: none), following the suite's own notes.
    static func sessionToken(forCase name: String, request: SigV4SuiteRequest) -> String? {
        switch name {
        case "get-vanilla-with-session-token":
            // The token appears only in the .creq and .sreq: the signer is expected to add and sign it.
            "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
        case "post-sts-token/post-sts-header-before":
            // "The X-Amz-Security-Token header is part of the canonical request": the .req carries it already.
            request.headers.first { $0.name.lowercased() == "x-amz-security-token" }?.value
        default:
            // Including post-sts-header-after, where the token is added only after signing: signed without one.
            nil
        }
    }

    @Test("all 34 cases are present")
    func suiteIsComplete() throws {
        let names = try SigV4TestData.suiteCaseNames()
        #expect(names.count == 34)
        for skippedByBotocore in [
            "normalize-path/get-space", "get-vanilla-query-order-key", "get-vanilla-query-order-key-case",
            "get-vanilla-query-order-value",
        ] {
            #expect(names.contains(skippedByBotocore))
        }
    }

    @Test("canonical request, string to sign and Authorization", arguments: try SigV4TestData.suiteCaseNames())
    func suiteCase(_ name: String) throws {
        let folder = try SigV4TestData.directory().appendingPathComponent("aws4_testsuite/\(name)")
        let base = folder.appendingPathComponent(String(name.split(separator: "/").last!))
        func expected(_ suffix: String) throws -> String {
            try SigV4TestData.expectedValue(of: base.appendingPathExtension(suffix))
        }

        let parsed = try SigV4SuiteRequest(parsing: SigV4TestData.text(of: base.appendingPathExtension("req")))
        var credentials = Self.credentials
        credentials.sessionToken = Self.sessionToken(forCase: name, request: parsed)
        let request = SigV4Signer.Request(
            method: parsed.method, path: parsed.path, query: parsed.query, headers: parsed.headers)
        let payload = SigV4Signer.Payload.sha256Hex(SHA256Hasher.hexDigest(parsed.body.utf8))

        let result = Self.signer.signingResult(request, payload: payload, credentials: credentials, date: Self.date)
        #expect(result.canonicalRequest == (try expected("creq")))
        #expect(result.stringToSign == (try expected("sts")))
        #expect(result.authorization == (try expected("authz")))

        let added = Self.signer.sign(request, payload: payload, credentials: credentials, date: Self.date)
        #expect(added.first { $0.name == "Authorization" }?.value == (try expected("authz")))
        #expect(added.first { $0.name == "X-Amz-Date" }?.value == "20150830T123600Z")
        #expect(added.first { $0.name == "X-Amz-Security-Token" }?.value == credentials.sessionToken)
        // x-amz-content-sha256 is an S3 header: a generic service is signed without it.
        #expect(!added.contains { $0.name.lowercased() == "x-amz-content-sha256" })
    }

    @Test("the canonical request alone: steps agree with signingResult")
    func stepsAgree() throws {
        let request = SigV4Signer.Request(
            method: "GET", path: "/", headers: [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")])
        let canonical = Self.signer.canonicalRequest(request, payload: .sha256Hex(SigV4Signer.emptyPayloadSHA256))
        let stringToSign = Self.signer.stringToSign(canonicalRequest: canonical.text, date: Self.date)
        let key = Self.signer.signingKey(secret: Self.credentials.secretAccessKey, date: Self.date)
        #expect(canonical.signedHeaders == "host;x-amz-date")
        #expect(
            HMAC.sha256(key: key, message: stringToSign.utf8).hexString
                == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    @Test("signing key: the AWS documentation's derivation example, cached and per day")
    func signingKey() {
        let signer = SigV4Signer(service: "iam", region: "us-east-1")
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
        let february15 = Date(timeIntervalSince1970: 1_329_264_000)  // 2012-02-15T00:00:00Z
        let expected = "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        #expect(signer.signingKey(secret: secret, date: february15).hexString == expected)
        // Any time on the same UTC day gives the (cached) same key; the next day and another secret do not.
        #expect(signer.signingKey(secret: secret, date: february15 + 86_399).hexString == expected)
        #expect(signer.signingKey(secret: secret, date: february15 + 86_400).hexString != expected)
        #expect(signer.signingKey(secret: secret + "x", date: february15).hexString != expected)
        // Many secrets overflow the cache; a key derived again must still be right.
        for index in 0..<20 { _ = signer.signingKey(secret: "secret-\(index)", date: february15) }
        #expect(signer.signingKey(secret: secret, date: february15).hexString == expected)
    }

    @Test(
        "amzDate formats UTC without a DateFormatter",
        arguments: [
            (0.0, "19700101T000000Z"),
            (1_440_938_160, "20150830T123600Z"),
            (1_369_353_600.999, "20130524T000000Z"),
            (951_825_599, "20000229T115959Z"),  // a leap day of a year divisible by 400
            (4_107_542_399, "21000228T235959Z"),  // 2100 is not a leap year
            (-1, "19691231T235959Z"),
        ])
    func amzDate(seconds: Double, expected: String) {
        #expect(SigV4Signer.amzDate(Date(timeIntervalSince1970: seconds)) == expected)
        #expect(SigV4Signer.dateStamp(Date(timeIntervalSince1970: seconds)) == String(expected.prefix(8)))
    }
}

/// A request as the suite's `.req` files write it: request line, headers (continuation lines allowed), blank line,
/// body.
struct SigV4SuiteRequest {
    var method: String
    var path: String
    var query: [(name: String, value: String)]
    var headers: [(name: String, value: String)]
    var body: String

    init(parsing text: String) throws {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        let requestLine = lines.removeFirst()
        // The target may contain a raw space (normalize-path/get-space), so it ends at the last " HTTP/", not at the
        // next space.
        guard let methodEnd = requestLine.firstIndex(of: " "),
            let versionStart = requestLine.range(of: " HTTP/", options: .backwards)?.lowerBound
        else { throw SigV4TestDataError.malformed("request line '\(requestLine)'") }
        method = String(requestLine[..<methodEnd])
        let target = requestLine[requestLine.index(after: methodEnd)..<versionStart]
        if let questionMark = target.firstIndex(of: "?") {
            path = String(target[..<questionMark])
            query = try Self.decodedQuery(target[target.index(after: questionMark)...])
        } else {
            path = String(target)
            query = []
        }

        headers = []
        while !lines.isEmpty {
            let line = lines.removeFirst()
            if line.isEmpty { break }
            if line.first == " " || line.first == "\t" {
                // An obsolete folded line continues the previous value; the line break is kept so that the signer's
                // whitespace rules, not this parser, decide how it is signed.
                guard !headers.isEmpty else { throw SigV4TestDataError.malformed("continuation before any header") }
                headers[headers.count - 1].value += "\n" + line
                continue
            }
            guard let colon = line.firstIndex(of: ":") else {
                throw SigV4TestDataError.malformed("header line '\(line)'")
            }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
        body = lines.joined(separator: "\n")
    }

    /// Splits a raw query into decoded pairs, keeping repeated names and their order; `+` stays `+`.
    static func decodedQuery(_ raw: Substring) throws -> [(name: String, value: String)] {
        guard !raw.isEmpty else { return [] }
        return try raw.split(separator: "&", omittingEmptySubsequences: false).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (try percentDecoded(parts[0]), parts.count > 1 ? try percentDecoded(parts[1]) : "")
        }
    }

    static func percentDecoded(_ text: Substring) throws -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { throw SigV4TestDataError.malformed("percent escape in '\(text)'") }
            bytes.append(value)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

enum SigV4TestDataError: Error, CustomStringConvertible {
    case notFound([String])
    case malformed(String)

    var description: String {
        switch self {
        case .notFound(let tried):
            "SigV4 test vectors not found; set SIGV4_TESTDATA to the sigv4 folder "
                + "(tried \(tried.joined(separator: ", ")))"
        case .malformed(let what): "malformed test vector: \(what)"
        }
    }
}

/// Where the SigV4 vectors live: `$SIGV4_TESTDATA`, else the copy kept with these tests (`Tests/S3Tests/testdata`,
/// the AWS suite under its Apache-2.0 LICENSE and NOTICE), else the shared folder beside the package.
enum SigV4TestData {
    static func directory() throws -> URL {
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates =
            [ProcessInfo.processInfo.environment["SIGV4_TESTDATA"]].compactMap { $0 } + [
                packageRoot.appendingPathComponent("Tests/S3Tests/testdata/sigv4").path,
                packageRoot.deletingLastPathComponent().appendingPathComponent("shared/testdata/sigv4").path,
            ]
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/README.md") })
        else { throw SigV4TestDataError.notFound(candidates) }
        return URL(fileURLWithPath: found)
    }

    /// The suite's case names, relative to `aws4_testsuite` (nested ones as `normalize-path/get-slash`), sorted.
    static func suiteCaseNames() throws -> [String] {
        let root = try directory().appendingPathComponent("aws4_testsuite")
        guard let walker = FileManager.default.enumerator(atPath: root.path) else {
            throw SigV4TestDataError.notFound([root.path])
        }
        return walker.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".req") }
            .map { ($0 as NSString).deletingLastPathComponent }
            .sorted()
    }

    static func text(of file: URL) throws -> String {
        String(decoding: try Data(contentsOf: file), as: UTF8.self)
    }

    /// An expected value from a file: its text without the line break an editor may have added at the end.
    static func expectedValue(of file: URL) throws -> String {
        var text = Substring(try text(of: file))
        while text.last == "\n" || text.last == "\r\n" { text = text.dropLast() }
        return String(text)
    }
}
