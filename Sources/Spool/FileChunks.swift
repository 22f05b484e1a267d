import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file's bytes as an async sequence of chunks, read on the blocking I/O queue: the way to spool a file (or
/// standard input) without loading it whole.
public struct FileChunks: AsyncSequence, Sendable {
    /// One chunk of the file.
    public typealias Element = [UInt8]

    fileprivate enum Source: Sendable {
        case path(String)
        case descriptor(Int32)
    }

    private let source: Source
    private let chunkBytes: Int

    /// The chunks of the file at `path`; it is opened when iteration starts.
    public init(path: String, chunkBytes: Int = 1 << 20) {
        source = .path(path)
        self.chunkBytes = chunkBytes
    }

    /// The chunks of a local file.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` when `fileURL` is not a file URL.
    public init(fileURL: URL, chunkBytes: Int = 1 << 20) throws {
        guard fileURL.isFileURL else {
            throw SpoolError(
                .invalidConfiguration, "'\(fileURL.absoluteString)' is not a file URL; pass URL(fileURLWithPath:)")
        }
        self.init(path: fileURL.path, chunkBytes: chunkBytes)
    }

    /// The chunks read from an open descriptor (e.g. 0 for standard input); it is not closed.
    public init(fileDescriptor: Int32, chunkBytes: Int = 1 << 20) {
        source = .descriptor(fileDescriptor)
        self.chunkBytes = chunkBytes
    }

    /// Reads one chunk at a time.
    public final class AsyncIterator: AsyncIteratorProtocol, @unchecked Sendable {
        // @unchecked: iterated by one task at a time, which awaits each read before the next.
        private let source: Source
        private let chunkBytes: Int
        private var descriptor: Int32 = -1
        private var ownsDescriptor = false
        private var finished = false

        fileprivate init(source: Source, chunkBytes: Int) {
            self.source = source
            self.chunkBytes = chunkBytes
        }

        deinit {
            if ownsDescriptor, descriptor >= 0 { close(descriptor) }
        }

        /// The next chunk, or nil at the end of the file.
        public func next() async throws -> [UInt8]? {
            guard !finished else { return nil }
            let chunk = try await BlockingIO.run { [self] in try readChunk() }
            if chunk == nil { finished = true }
            return chunk
        }

        private func readChunk() throws -> [UInt8]? {
            if descriptor < 0 {
                switch source {
                case .descriptor(let existing): descriptor = existing
                case .path(let path):
                    descriptor = open(path, O_RDONLY | O_CLOEXEC)
                    guard descriptor >= 0 else {
                        throw SpoolError.io("open the input file", path: path, call: "open")
                    }
                    ownsDescriptor = true
                }
            }
            var chunk = [UInt8](repeating: 0, count: chunkBytes)
            var filled = 0
            while filled < chunkBytes {
                let count = chunk.withUnsafeMutableBytes {
                    read(descriptor, $0.baseAddress! + filled, chunkBytes - filled)
                }
                if count < 0 {
                    if errno == EINTR { continue }
                    let name: String
                    switch source {
                    case .path(let path): name = path
                    case .descriptor(let number): name = "file descriptor \(number)"
                    }
                    throw SpoolError.io("read", path: name, call: "read")
                }
                if count == 0 { break }
                filled += count
            }
            if filled == 0 { return nil }
            chunk.removeSubrange(filled...)
            return chunk
        }
    }

    /// Starts reading.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: source, chunkBytes: chunkBytes) }
}

/// One in-memory buffer as a one-element async sequence.
package struct SingleChunk<Chunk: ContiguousBytes & Sendable>: AsyncSequence, Sendable {
    package typealias Element = Chunk
    let chunk: Chunk

    package init(chunk: Chunk) { self.chunk = chunk }

    package struct AsyncIterator: AsyncIteratorProtocol {
        var chunk: Chunk?
        package mutating func next() async -> Chunk? {
            defer { chunk = nil }
            return chunk
        }
    }

    package func makeAsyncIterator() -> AsyncIterator { AsyncIterator(chunk: chunk) }
}
