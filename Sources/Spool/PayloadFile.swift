import BlockingWork
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A payload being written: created in `tmp/` under an exclusive lock, then fsynced and renamed into `data/`.
///
/// The lock tells `removeCrashLeftovers` that a live writer owns the file. Every blocking call runs on the blocking
/// I/O queue, never on Swift's cooperative pool.
final class PayloadFile: @unchecked Sendable {
    // @unchecked: one writer task owns a PayloadFile and awaits each operation before starting the next, so the
    // mutable fields are never touched from two threads at once.
    private var descriptor: Int32
    private(set) var path: String
    private let layout: SpoolLayout
    private(set) var bytesWritten: Int64 = 0
    private var bytesHandedToWriteback: Int64 = 0
    /// How much of the buffer a failed `write` had written: a retry with the same buffer goes on from there.
    private var resumeOffset = 0
    private(set) var isPublished = false

    /// Start writeback every this many bytes so the final fsync overlaps with hashing instead of following it.
    static let writebackIntervalBytes: Int64 = 8 << 20

    private init(descriptor: Int32, path: String, layout: SpoolLayout) {
        self.descriptor = descriptor
        self.path = path
        self.layout = layout
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Creates a new locked file in `tmp/`.
    static func create(in layout: SpoolLayout, namePrefix: String) async throws -> PayloadFile {
        try await BlockingIO.run {
            let (descriptor, path) = try createLockedFile(
                in: layout.temporaryDirectory, namePrefix: namePrefix, flags: O_WRONLY, what: "the payload file")
            return PayloadFile(descriptor: descriptor, path: path, layout: layout)
        }
    }

    /// Appends the bytes, all of them (short writes and EINTR are retried). After a failure (a full disk), calling it
    /// again with the same buffer appends the rest.
    func write(_ buffer: WriteBuffer) async throws {
        try await BlockingIO.run { [self] in
            var offset = resumeOffset
            while offset < buffer.count {
                let written = writeBytes(descriptor, buffer.base + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    resumeOffset = offset
                    throw SpoolError.io("write the payload file", path: path, call: "write")
                }
                offset += written
            }
            resumeOffset = 0
            bytesWritten += Int64(buffer.count)
            #if os(Linux)
            if bytesWritten - bytesHandedToWriteback >= Self.writebackIntervalBytes {
                // Asynchronous: asks the kernel to start writing back now, does not wait for the disk.
                _ = startWriteback(
                    descriptor, bytesHandedToWriteback, bytesWritten - bytesHandedToWriteback, syncFileRangeWrite)
                bytesHandedToWriteback = bytesWritten
            }
            #endif
        }
    }

    /// Makes the bytes durable and moves the file into `data/` under its final name.
    ///
    /// The directory entry is made durable by the commit, which fsyncs `data/` once per group of resources.
    /// - Returns: the payload's path relative to the spool directory.
    func publish() async throws -> String {
        try await BlockingIO.run { [self] in
            guard fsync(descriptor) == 0 else {
                throw SpoolError.io("fsync the payload file", path: path, call: "fsync")
            }
            let relativePath = "data/" + String(path.split(separator: "/").last!)
            let destination = layout.root + "/" + relativePath
            guard rename(path, destination) == 0 else {
                throw SpoolError.io("move the payload file into", path: destination, call: "rename")
            }
            path = destination
            isPublished = true
            close(descriptor)
            descriptor = -1
            return relativePath
        }
    }

    /// Removes the file wherever it is now (tmp/ or data/). Used when a write fails or its commit does.
    func discard() async {
        await BlockingIO.value { [self] in
            unlink(path)
            if descriptor >= 0 {
                close(descriptor)
                descriptor = -1
            }
        }
    }
}

#if os(Linux)
// Glibc's module map hides sync_file_range (it needs _GNU_SOURCE); declare the symbol directly. It only starts
// writeback, so a failure costs speed, never durability: the fsync at publish is what counts.
@_silgen_name("sync_file_range")
private func startWriteback(_ descriptor: Int32, _ offset: Int64, _ count: Int64, _ flags: UInt32) -> Int32
private let syncFileRangeWrite: UInt32 = 2  // SYNC_FILE_RANGE_WRITE
#endif

/// Makes a directory's entries durable: after a rename, fsync of the directory is what makes the new name survive a
/// crash.
func synchronizeDirectory(_ path: String) throws {
    let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard descriptor >= 0 else { throw SpoolError.io("open the directory", path: path, call: "open") }
    defer { close(descriptor) }
    guard fsync(descriptor) == 0 else { throw SpoolError.io("fsync the directory", path: path, call: "fsync") }
}

/// Random lowercase hex from the system's random source.
func randomHex(bytes count: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    let digits = Array("0123456789abcdef".utf8)
    var text = [UInt8]()
    text.reserveCapacity(count * 2)
    for _ in 0..<count {
        let byte = UInt8.random(in: 0...255, using: &generator)
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0xF)])
    }
    return String(decoding: text, as: UTF8.self)
}

/// A fixed-capacity byte buffer that writers fill and payload files drain, reused without copy-on-write surprises.
final class WriteBuffer: @unchecked Sendable {
    // @unchecked: owned by one writer task, which hands it to the I/O queue and awaits the write before touching it.
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    var remainingCapacity: Int { capacity - count }
    var isFull: Bool { count == capacity }

    func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= remainingCapacity, "WriteBuffer overflow")
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        (base + count).update(from: source.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        count += bytes.count
    }

    func removeAll() { count = 0 }

    /// Writes the buffered bytes to `descriptor`, all of them (short writes and EINTR are retried). Blocking.
    ///
    /// - Throws: `SpoolError.io` naming `what` and `path`.
    func write(to descriptor: Int32, path: String, what: String) throws {
        var offset = 0
        while offset < count {
            let written = writeBytes(descriptor, base + offset, count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw SpoolError.io("write \(what)", path: path, call: "write")
            }
            offset += written
        }
    }

    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }
}

/// Write buffers kept for reuse: writers borrow one per resource instead of allocating (and faulting in) a new one.
final class WriteBufferPool: Sendable {
    private let buffers = Mutex<[WriteBuffer]>([])
    let bufferBytes: Int
    private let keep: Int

    init(bufferBytes: Int, keep: Int) {
        self.bufferBytes = bufferBytes
        self.keep = keep
    }

    func take() -> WriteBuffer {
        buffers.withLock { $0.popLast() } ?? WriteBuffer(capacity: bufferBytes)
    }

    func give(_ buffer: WriteBuffer) {
        buffer.removeAll()
        buffers.withLock { buffers in
            if buffers.count < keep { buffers.append(buffer) }
        }
    }
}

/// Creates a new file with a random name in `directory` (private mode, never following a link) and takes an exclusive
/// lock on it, which tells `removeCrashLeftovers` that a live process owns it. Blocking.
///
/// - Returns: the open descriptor (`flags` plus create, exclusive, close-on-exec) and the file's path.
/// - Throws: `SpoolError.io` naming the path.
func createLockedFile(in directory: String, namePrefix: String, flags: Int32, what: String) throws -> (Int32, String) {
    while true {
        let path = directory + "/" + namePrefix + "-" + randomHex(bytes: 12)
        let descriptor = open(path, flags | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, SpoolLayout.fileMode)
        if descriptor < 0 {
            if errno == EEXIST { continue }
            throw SpoolError.io("create \(what)", path: path, call: "open")
        }
        guard flock(descriptor, LOCK_EX) == 0 else {
            let error = SpoolError.io("lock \(what)", path: path, call: "flock")
            close(descriptor)
            unlink(path)
            throw error
        }
        // A cleaner in another process may have locked and unlinked the file between open and flock: make sure the
        // path still names our file, or start over with a new name.
        var opened = stat()
        var named = stat()
        if fstat(descriptor, &opened) == 0, stat(path, &named) == 0, opened.st_ino == named.st_ino,
            opened.st_dev == named.st_dev
        {
            return (descriptor, path)
        }
        close(descriptor)
    }
}

/// Runs blocking system calls off Swift's task pool (see `BlockingQueue`) and awaits the result.
package enum BlockingIO {
    private static let queue = BlockingQueue(label: "pipeline-storage.blocking-io")

    /// Runs `body` on a thread of its own and returns (or throws) what it did.
    package static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await queue.run(body)
    }

    /// Runs `body`, which cannot fail, on a thread of its own and returns its result (or just waits for it).
    @discardableResult
    package static func value<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await queue.value(body)
    }
}

/// `write(2)`, under a name the methods called `write` do not shadow.
func writeBytes(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}

/// Reads a whole file; for small files and checks only.
func readWholeFile(_ path: String) throws -> [UInt8] {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw SpoolError.io("open the payload file", path: path, call: "open") }
    defer { close(descriptor) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw SpoolError.io("read the payload file", path: path, call: "read")
        }
        if count == 0 { return result }
        result.append(contentsOf: chunk[0..<count])
    }
}
