import Foundation
import Hashing

/// Signs the chunks of an S3 aws-chunked upload (`x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD`).
///
/// Each chunk's signature chains to the previous one, starting from the seed signature (the request's own signature,
/// ``SigV4Signer/SigningResult/signature``), so chunks must be signed in the order they are sent, ending with an
/// empty chunk. The body on the wire is, for each chunk including the final empty one:
///
/// ```
/// <hex size>;chunk-signature=<64 hex digits>\r\n<data>\r\n
/// ```
///
/// The request carries `Content-Encoding: aws-chunked`, `x-amz-decoded-content-length: <body bytes>` and
/// `Content-Length: ` ``encodedLength(decodedLength:chunkSize:)``, all of them signed.
///
/// ```swift
/// let seed = signer.signingResult(request, payload: .streamingSigned, credentials: credentials, date: now).signature
/// var chunks = AWSChunkedSigner(signer: signer, credentials: credentials, date: now, seedSignature: seed)
/// let header = AWSChunkedSigner.chunkHeader(size: chunk.count, signature: chunks.signChunk(chunk))
/// ```
public struct AWSChunkedSigner: Sendable {
    /// The algorithm line of a chunk's string to sign.
    public static let chunkAlgorithm = "AWS4-HMAC-SHA256-PAYLOAD"

    /// The bytes that follow each chunk's data, the final empty chunk's included.
    public static let chunkTerminator = "\r\n"

    /// The length of `;chunk-signature=` plus a signature plus the two CRLFs: the per-chunk overhead besides the
    /// hexadecimal size.
    private static let chunkOverheadWithoutSize = ";chunk-signature=".utf8.count + 64 + 2 * chunkTerminator.utf8.count

    private let signingKey: [UInt8]
    private let timestamp: String
    private let scope: String

    /// The signature of the last chunk signed; the seed signature before the first.
    public private(set) var previousSignature: String

    /// A chunk signer continuing from the request's seed signature.
    ///
    /// - Parameters:
    ///   - signer: The signer that signed the request.
    ///   - credentials: The credentials the request was signed with.
    ///   - date: The signing time of the request: chunks are signed with the same timestamp and scope.
    ///   - seedSignature: The request's signature (``SigV4Signer/SigningResult/signature``).
    public init(signer: SigV4Signer, credentials: AWSCredentials, date: Date, seedSignature: String) {
        signingKey = signer.signingKey(secret: credentials.secretAccessKey, date: date)
        timestamp = SigV4Signer.amzDate(date)
        scope = signer.credentialScope(date: date)
        previousSignature = seedSignature
    }

    /// Signs the next chunk and makes its signature the one the following chunk chains to.
    ///
    /// - Parameter data: The chunk's bytes; empty for the final chunk.
    /// - Returns: The chunk's signature, 64 lowercase hex digits.
    public mutating func signChunk(_ data: UnsafeRawBufferPointer) -> String {
        signChunk(sha256Hex: SHA256Hasher.hash(data).hexString)
    }

    /// Signs the next chunk: `[UInt8]`, `ArraySlice<UInt8>`, `Data` and the like.
    ///
    /// - Parameter data: The chunk's bytes; empty for the final chunk.
    /// - Returns: The chunk's signature, 64 lowercase hex digits.
    public mutating func signChunk(_ data: some Sequence<UInt8>) -> String {
        signChunk(sha256Hex: SHA256Hasher.hexDigest(data))
    }

    /// Signs the next chunk from its digest, for callers that hash the data while reading it.
    ///
    /// - Parameter sha256Hex: The lowercase hex SHA-256 of the chunk's bytes.
    /// - Returns: The chunk's signature, 64 lowercase hex digits.
    public mutating func signChunk(sha256Hex: String) -> String {
        let stringToSign = [
            Self.chunkAlgorithm, timestamp, scope, previousSignature, SigV4Signer.emptyPayloadSHA256, sha256Hex,
        ].joined(separator: "\n")
        previousSignature = HMAC.sha256(key: signingKey, message: stringToSign.utf8).hexString
        return previousSignature
    }

    /// The line that precedes a chunk's data: `<hex size>;chunk-signature=<signature>\r\n`.
    ///
    /// - Parameters:
    ///   - size: The chunk's length in bytes.
    ///   - signature: The chunk's signature from `signChunk`.
    /// - Returns: The chunk header, CRLF included; the data and ``chunkTerminator`` follow it.
    public static func chunkHeader(size: Int, signature: String) -> String {
        "\(String(size, radix: 16));chunk-signature=\(signature)\r\n"
    }

    /// The length of the aws-chunked body, the `Content-Length` of the request.
    ///
    /// For example 66,560 bytes in 64 KiB chunks (65,536 + 1,024 + the final 0) encode to 66,824 bytes.
    ///
    /// - Parameters:
    ///   - decodedLength: The body's length before encoding (`x-amz-decoded-content-length`).
    ///   - chunkSize: The length of every chunk but the last non-empty one; at least 1.
    /// - Returns: The total length: every chunk's header, data and terminator, and the final empty chunk's.
    public static func encodedLength(decodedLength: Int, chunkSize: Int) -> Int {
        precondition(decodedLength >= 0, "aws-chunked: negative body length \(decodedLength)")
        precondition(chunkSize > 0, "aws-chunked: chunk size must be at least 1 byte, not \(chunkSize)")
        let fullChunkCount = decodedLength / chunkSize
        let lastChunkSize = decodedLength % chunkSize
        var length = fullChunkCount * encodedChunkLength(size: chunkSize) + encodedChunkLength(size: 0)
        if lastChunkSize > 0 {
            length += encodedChunkLength(size: lastChunkSize)
        }
        return length
    }

    private static func encodedChunkLength(size: Int) -> Int {
        String(size, radix: 16).utf8.count + chunkOverheadWithoutSize + size
    }
}

/// Only the scope and the chain position: the signing key must not reach logs.
extension AWSChunkedSigner: CustomStringConvertible, CustomReflectable {
    /// The scope and the previous signature; never the signing key.
    public var description: String {
        "AWSChunkedSigner(scope: \(scope), previousSignature: \(previousSignature))"
    }

    /// A mirror without the signing key, so `dump` and debuggers cannot show it.
    public var customMirror: Mirror {
        Mirror(self, children: ["scope": scope, "previousSignature": previousSignature])
    }
}
