import Foundation
import Synchronization
import Testing

@testable import S3

#if canImport(Glibc)
import Glibc
#endif

/// Servers that answer badly, over a real socket and the libcurl transport: bodies that are not XML or stop short,
/// 2xx answers without the headers a write must carry, answers that are not HTTP, headers too large to hold. Each
/// gets an `S3Error` with a code that says what was wrong (and whether trying again may help) — never a success
/// built from a half answer, never a crash.
@Suite("Malformed server answers, through the libcurl transport")
struct MalformedAnswerTests {
    static func client(_ server: CannedHTTPServer) -> S3Client {
        var configuration = S3Configuration(region: "us-east-1", endpoint: "http://127.0.0.1:\(server.port)")
        configuration.maxAttempts = 2
        configuration.maxBackoff = .milliseconds(1)
        configuration.transport.requestTimeout = .seconds(10)
        return S3Client(
            configuration: configuration,
            credentials: StaticCredentialsProvider(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret")))
    }

    /// Serves `answer` to every request, runs `operation`, and returns the `S3Error` it must throw.
    func error(
        answering answer: [UInt8], _ operation: (S3Client) async throws -> Void
    ) async throws -> S3Error {
        let server = try CannedHTTPServer(answer: answer)
        defer { server.stop() }
        let error = try await #require(throws: S3Error.self) { try await operation(Self.client(server)) }
        #expect(server.requests >= 1)
        return error
    }

    static func answer(_ status: String, headers: [String] = [], body: String = "") -> [UInt8] {
        let head = (["HTTP/1.1 " + status] + headers + ["Content-Length: \(body.utf8.count)", "", ""])
            .joined(separator: "\r\n")
        return Array((head + body).utf8)
    }

    @Sendable static func put(_ client: S3Client) async throws {
        _ = try await client.putObject(PutObjectRequest(bucket: "bkt", key: "k", body: .bytes(Array("hello".utf8))))
    }

    @Test("A 200 to PutObject without an ETag: InvalidResponse, retryable (a conditional retry settles it)")
    func putWithoutETag() async throws {
        let error = try await error(answering: Self.answer("200 OK"), Self.put)
        #expect(error.code == "InvalidResponse" && error.isRetryable)
        #expect(error.message.contains("no ETag"), "\(error)")
        #expect(error.operation.contains("PutObject"))
    }

    @Test("A 200 to UploadPart without an ETag: InvalidResponse (the part could never be completed)")
    func partWithoutETag() async throws {
        let error = try await error(answering: Self.answer("200 OK")) { client in
            _ = try await client.uploadPart(
                bucket: "bkt", key: "k", uploadID: "u", partNumber: 1, body: .bytes(Array("part".utf8)))
        }
        #expect(error.code == "InvalidResponse" && error.message.contains("no ETag"), "\(error)")
    }

    @Test("A 200 to CompleteMultipartUpload whose XML stops short: InvalidResponse naming the XML problem")
    func truncatedCompletion() async throws {
        let body = "<?xml version=\"1.0\"?><CompleteMultipartUploadResult><Location>x</Location><ETag>\"abc"
        let error = try await error(answering: Self.answer("200 OK", body: body)) { client in
            _ = try await client.completeMultipartUpload(
                bucket: "bkt", key: "k", uploadID: "u", parts: [UploadedPart(partNumber: 1, etag: "p", size: 5)])
        }
        #expect(error.code == "InvalidResponse" && error.isRetryable)
        #expect(error.message.contains("not valid XML"), "\(error)")
    }

    @Test("CreateMultipartUpload without an UploadId, ListParts with a part lacking its ETag: InvalidResponse")
    func missingElements() async throws {
        let create = try await error(
            answering: Self.answer("200 OK", body: "<InitiateMultipartUploadResult/>")
        ) { client in
            _ = try await client.createMultipartUpload(CreateMultipartUploadRequest(bucket: "bkt", key: "k"))
        }
        #expect(create.code == "InvalidResponse" && create.message.contains("no UploadId"), "\(create)")
        let parts = try await error(
            answering: Self.answer(
                "200 OK",
                body: "<ListPartsResult><Part><PartNumber>1</PartNumber><Size>5</Size></Part></ListPartsResult>")
        ) { client in
            _ = try await client.listParts(bucket: "bkt", key: "k", uploadID: "u")
        }
        #expect(parts.code == "InvalidResponse" && parts.message.contains("PartNumber, ETag or Size"), "\(parts)")
    }

    @Test("A listing that is not XML: InvalidResponse, with the parser's reason")
    func listingNotXML() async throws {
        let error = try await error(answering: Self.answer("200 OK", body: "<html>maintenance</html")) { client in
            _ = try await client.listObjectsV2(bucket: "bkt")
        }
        #expect(error.code == "InvalidResponse" && error.message.contains("invalid XML at byte"), "\(error)")
    }

    @Test("A HEAD without Content-Length: InvalidResponse, not an object of 0 bytes (which would read as a conflict)")
    func headWithoutLength() async throws {
        let error = try await error(answering: Array("HTTP/1.1 200 OK\r\nETag: \"e\"\r\n\r\n".utf8)) { client in
            _ = try await client.headObjectIfExists(bucket: "bkt", key: "k")
        }
        #expect(error.code == "InvalidResponse" && error.isRetryable && error.message.contains("Content-Length"))
    }

    @Test(
        "A body that stops short of its Content-Length, or a chunked body with a bad chunk size: ConnectionReset, retried",
        arguments: [
            "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 1000\r\n\r\nonly a little",
            "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ])
    func brokenBody(answer: String) async throws {
        let error = try await error(answering: Array(answer.utf8)) { client in
            _ = try await client.getObjectBytes(bucket: "bkt", key: "k")
        }
        #expect(error.code == "ConnectionReset" && error.isRetryable, "\(error)")
    }

    @Test("A 502 from a proxy with an HTML body: the status names the code, the body starts the message, retryable")
    func htmlError() async throws {
        let error = try await error(
            answering: Self.answer("502 Bad Gateway", body: "<html><body>upstream unavailable</body></html>"),
            Self.put)
        #expect(error.status == 502 && error.isRetryable, "\(error)")
        #expect(error.message.contains("upstream unavailable"), "\(error)")
    }

    @Test("An answer that is not HTTP at all: EndpointNotHTTP, not retried (the drainer pauses the destination)")
    func notHTTP() async throws {
        let error = try await error(answering: Array("SSH-2.0-OpenSSH_9.2\r\nProtocol mismatch.\r\n".utf8), Self.put)
        #expect(error.code == "EndpointNotHTTP" && !error.isRetryable, "\(error)")
        #expect(error.message.contains("check the endpoint URL and port"))
    }

    @Test("A status line curl cannot read: EndpointNotHTTP too")
    func garbledStatusLine() async throws {
        let error = try await error(answering: Array("HTTP/7 200 OK\r\nContent-Length: 0\r\n\r\n".utf8), Self.put)
        #expect(error.code == "EndpointNotHTTP" && !error.isRetryable, "\(error)")
    }

    @Test("A header of 1 MiB: refused by the transport with a clear error, nothing read as an answer")
    func hugeHeader() async throws {
        let huge = "x-amz-meta-huge: " + String(repeating: "a", count: 1 << 20)
        let error = try await error(answering: Self.answer("200 OK", headers: ["ETag: \"e\"", huge]), Self.put)
        #expect(error.code == "ResponseHeadersTooLarge" && error.isRetryable, "\(error)")
    }
}

/// A one-trick HTTP server on 127.0.0.1: for each connection, reads one request (head, and a body of the
/// Content-Length it gives), writes `answer` as it is, and closes. Runs on its own thread until `stop()`.
final class CannedHTTPServer: @unchecked Sendable {
    // @unchecked: `listener` is set once in init; the counter is atomic-by-lock.
    let port: Int
    private let listener: Int32
    private let received = Mutex(0)
    private let answer: [UInt8]

    /// Requests read so far (each is counted before its answer is sent).
    var requests: Int { received.withLock { $0 } }

    init(answer: [UInt8]) throws {
        self.answer = answer
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LocalServerError("socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw LocalServerError("bind/listen: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func serve() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            var request: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            var expected: Int?
            while expected.map({ request.count < $0 }) ?? true {
                let count = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
                if count <= 0 { break }
                request += buffer[0..<count]
                if expected == nil, let end = Self.headEnd(request) {
                    let head = String(decoding: request[..<end], as: UTF8.self).lowercased()
                    let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                        .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }
                    expected = end + 4 + (length ?? 0)
                }
            }
            // Counted before answering: a client that gives up on the first line of the answer returns (and the test
            // reads the count) while this thread may still be sending.
            if !request.isEmpty { received.withLock { $0 += 1 } }
            var sent = 0
            while sent < answer.count {
                let count = answer[sent...].withUnsafeBytes {
                    send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if count <= 0 { break }
                sent += count
            }
            shutdown(connection, Int32(SHUT_WR))
            close(connection)
        }
    }

    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index
        }
        return nil
    }
}

struct LocalServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
