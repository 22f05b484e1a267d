import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A private temporary file in a spool's `tmp/`, for work that needs a whole file before it can become resources: a
/// zip archive (its central directory is at the end), a `bundle.zip` being assembled, the original bytes of a gzip
/// stream kept in case it turns out corrupt.
///
/// Created 0600 and locked while it lives, so `removeCrashLeftovers` (in this process or another) leaves it alone;
/// after a crash it is garbage that the next open of the spool removes. `remove()` deletes it, and so does `deinit`,
/// so an error thrown anywhere never leaks one. Writes are buffered; blocking calls run on `BlockingIO`'s threads,
/// except the `…Blocking` methods, which are for code already off the cooperative pool.
package final class ScratchFile: @unchecked Sendable {
    // @unchecked: one task (or one serial queue) owns a ScratchFile and awaits each operation before the next.
    /// Absolute path of the file.
    package let path: String
    private var descriptor: Int32
    private let buffer = WriteBuffer(capacity: ScratchFile.bufferBytes)
    private var written: Int64 = 0
    private var removed = false

    /// Appended bytes reach the file in writes of this size.
    static let bufferBytes = 1 << 20

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        if !removed { unlink(path) }
        if descriptor >= 0 { close(descriptor) }
    }

    /// Creates an empty scratch file in `directory` (a spool's `tmp/`).
    ///
    /// - Parameter namePrefix: The start of the file's name, saying what it is for (seen by operators in `tmp/`).
    /// - Throws: `SpoolError.io` naming the path.
    package static func create(in directory: String, namePrefix: String) async throws -> ScratchFile {
        try await BlockingIO.run {
            let (descriptor, path) = try createLockedFile(
                in: directory, namePrefix: namePrefix, flags: O_RDWR, what: "a scratch file")
            return ScratchFile(descriptor: descriptor, path: path)
        }
    }

    /// Runs `body` with a new scratch file and removes the file afterwards, whether `body` returns or throws.
    package static func with<T>(
        in directory: String, namePrefix: String, _ body: (ScratchFile) async throws -> T
    ) async throws -> T {
        let file = try await create(in: directory, namePrefix: namePrefix)
        do {
            let result = try await body(file)
            await file.remove()
            return result
        } catch {
            await file.remove()
            throw error
        }
    }

    /// Bytes appended so far (buffered ones included).
    package var size: Int64 { written + Int64(buffer.count) }

    /// Appends a chunk (buffered: call `flush()` before the file is read).
    ///
    /// - Throws: `SpoolError.io` when a full buffer cannot be written.
    package func append(_ chunk: some ContiguousBytes) async throws {
        let total = chunk.withUnsafeBytes { $0.count }
        var offset = 0
        while offset < total {
            offset += chunk.withUnsafeBytes { bytes in
                let part = UnsafeRawBufferPointer(rebasing: bytes[offset...].prefix(buffer.remainingCapacity))
                buffer.append(part)
                return part.count
            }
            if buffer.isFull { try await flush() }
        }
    }

    /// Appends bytes from code already off the cooperative pool (a serial queue).
    ///
    /// - Throws: `SpoolError.io`.
    package func appendBlocking(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let part = UnsafeRawBufferPointer(rebasing: bytes[offset...].prefix(buffer.remainingCapacity))
            buffer.append(part)
            offset += part.count
            if buffer.isFull { try flushBlocking() }
        }
    }

    /// Writes the buffered bytes to the file.
    ///
    /// - Throws: `SpoolError.io`.
    package func flush() async throws {
        guard buffer.count > 0 else { return }
        try await BlockingIO.run { [self] in try flushBlocking() }
    }

    /// `flush()` for code already off the cooperative pool.
    package func flushBlocking() throws {
        try buffer.write(to: descriptor, path: path, what: "the scratch file")
        written += Int64(buffer.count)
        buffer.removeAll()
    }

    /// Reads up to `count` bytes at `offset` (fewer only at the end of the file).
    ///
    /// - Throws: `SpoolError.io`.
    package func read(at offset: Int64, count: Int) async throws -> [UInt8] {
        try await BlockingIO.run { [self] in try readBlocking(at: offset, count: count) }
    }

    /// `read(at:count:)` for code already off the cooperative pool.
    package func readBlocking(at offset: Int64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let got = bytes.withUnsafeMutableBytes {
                pread(descriptor, $0.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled))
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw SpoolError.io("read the scratch file", path: path, call: "pread")
            }
            if got == 0 { break }
            filled += got
        }
        if filled < count { bytes.removeSubrange(filled...) }
        return bytes
    }

    /// The file's size on disk (what `flush()` and other writers of the path put there).
    ///
    /// - Throws: `SpoolError.io`.
    package func sizeOnDisk() throws -> Int64 {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw SpoolError.io("inspect the scratch file", path: path, call: "fstat")
        }
        return Int64(info.st_size)
    }

    /// Deletes the file and closes it. Removing twice does nothing.
    package func remove() async {
        await BlockingIO.value { [self] in
            guard !removed else { return }
            removed = true
            unlink(path)
            close(descriptor)
            descriptor = -1
        }
    }
}
