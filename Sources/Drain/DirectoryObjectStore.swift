import BlockingWork
import Dispatch
import Foundation
import Hashing

/// Delivery into a local directory (the `file://` target) with the same object layout as S3: each object is written
/// to a temporary file, fsynced, and then hard-linked to its key — `link(2)` fails when the name exists, which makes
/// "create only if absent" atomic — and the directory is fsynced.
///
/// Multipart is not needed locally: every object is one write. Keys with `.` or `..` segments, or a leading `/`, are
/// refused: an object never lands outside the directory.
public struct DirectoryObjectStore: ObjectStore {
    /// The target directory.
    public let root: String
    private static let queue = BlockingQueue(label: "pipeline-storage.directory-store")
    /// Where objects are written before they are linked into place (inside the root: same filesystem).
    static let temporaryDirectoryName = ".pipeline-tmp"

    /// A store writing under `root` (created when missing).
    public init(root: String) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
    }

    /// `file:///path`.
    public var displayName: String { "file://\(root)" }

    /// Objects are written in one piece.
    public var supportsMultipart: Bool { false }

    /// Writes the object only if its key is free.
    public func put(_ object: ObjectWrite) async throws -> StoredObject {
        let target = try path(for: object.key)
        let root = self.root
        return try await Self.blocking {
            let temporaryDirectory = root + "/" + Self.temporaryDirectoryName
            try Self.makeDirectories(temporaryDirectory)
            let temporary = temporaryDirectory + "/" + UUID().uuidString
            let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else { throw Self.ioError("create", temporary) }
            defer { unlink(temporary) }
            do {
                defer { close(descriptor) }
                try Self.copy(object.body, to: descriptor, path: temporary)
                guard fsync(descriptor) == 0 else { throw Self.ioError("fsync", temporary) }
            }
            let parent = String(target[..<target.lastIndex(of: "/")!])
            try Self.makeDirectories(parent)
            guard link(temporary, target) == 0 else {
                if errno == EEXIST {
                    throw ObjectStoreError(.alreadyExists, code: "PreconditionFailed", message: "\(target) exists")
                }
                throw Self.ioError("link", target)
            }
            try Self.synchronizeDirectory(parent)
            return StoredObject(etag: object.sha256, versionID: nil)
        }
    }

    /// The file at the key, with its SHA-256 computed.
    public func head(key: String) async throws -> ExistingObject? {
        let target = try path(for: key)
        return try await Self.blocking {
            var info = stat()
            guard stat(target, &info) == 0 else {
                if errno == ENOENT || errno == ENOTDIR { return nil }
                throw Self.ioError("stat", target)
            }
            let digest = try Self.sha256(of: target)
            return ExistingObject(size: Int64(info.st_size), sha256: digest, etag: digest, versionID: nil)
        }
    }

    /// Not used locally.
    public func createUpload(for object: ObjectWrite) async throws -> String {
        throw ObjectStoreError(
            .permanent, code: "NotSupported", message: "a directory target takes no multipart uploads")
    }

    /// Not used locally.
    public func uploadPart(
        key: String, uploadID: String, number: Int, body: PayloadBody, crc32c: UInt32, sha256: String
    ) async throws -> StoredPart {
        throw ObjectStoreError(.noSuchUpload, code: "NoSuchUpload", message: "a directory target has no uploads")
    }

    /// Not used locally.
    public func listParts(key: String, uploadID: String) async throws -> [StoredPart] {
        throw ObjectStoreError(.noSuchUpload, code: "NoSuchUpload", message: "a directory target has no uploads")
    }

    /// Not used locally.
    public func completeUpload(key: String, uploadID: String, parts: [StoredPart]) async throws -> StoredObject {
        throw ObjectStoreError(.noSuchUpload, code: "NoSuchUpload", message: "a directory target has no uploads")
    }

    /// Nothing to abort locally.
    public func abortUpload(key: String, uploadID: String) async throws {}

    /// There are no uploads locally.
    public func listUploads(key: String) async throws -> [String] { [] }

    /// The path of a key, refusing keys that would leave the directory.
    func path(for key: String) throws -> String {
        let segments = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, !key.hasPrefix("/"), !key.contains("\0"),
            !segments.contains(where: { $0 == "." || $0 == ".." || $0.isEmpty }),
            !key.hasPrefix(Self.temporaryDirectoryName)
        else {
            throw ObjectStoreError(
                .permanent, code: "InvalidKey",
                message: "key '\(key)' would not stay inside \(root) (empty, '.' or '..' segments, or absolute)")
        }
        return root + "/" + key
    }

    private static func copy(_ body: PayloadBody, to descriptor: Int32, path: String) throws {
        switch body {
        case .bytes(let bytes):
            try bytes.withUnsafeBytes { try writeAll(descriptor, $0, path: path) }
        case .file(let source, let offset, let length):
            let input = open(source, O_RDONLY | O_CLOEXEC)
            guard input >= 0 else {
                throw ObjectStoreError(.permanent, code: "LocalIOError", message: "cannot read \(source)")
            }
            defer { close(input) }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            var position = offset
            while position < offset + length {
                let wanted = Int(min(Int64(buffer.count), offset + length - position))
                let got = buffer.withUnsafeMutableBytes { pread(input, $0.baseAddress, wanted, off_t(position)) }
                if got < 0 && errno == EINTR { continue }
                guard got > 0 else {
                    throw ObjectStoreError(.permanent, code: "LocalIOError", message: "\(source) ended early")
                }
                try buffer.withUnsafeBytes {
                    try writeAll(descriptor, UnsafeRawBufferPointer(rebasing: $0.prefix(got)), path: path)
                }
                position += Int64(got)
            }
        }
    }

    private static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw ioError("write", path) }
            offset += written
        }
    }

    private static func sha256(of path: String) throws -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ioError("open", path) }
        defer { close(descriptor) }
        var hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let got = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else { throw ioError("read", path) }
            if got == 0 { return hasher.finalize().hexString }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0.prefix(got))) }
        }
    }

    static func makeDirectories(_ path: String) throws {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) == 0 {
                // The new entry must survive a crash too.
                let parent = String(current[..<current.lastIndex(of: "/")!])
                try synchronizeDirectory(parent.isEmpty ? "/" : parent)
                continue
            }
            if errno != EEXIST { throw ioError("mkdir", current) }
        }
    }

    private static func synchronizeDirectory(_ path: String) throws {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ioError("open", path) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw ioError("fsync", path) }
    }

    private static func ioError(_ call: String, _ path: String) -> ObjectStoreError {
        let code = errno
        let kind: ObjectStoreError.Kind = code == EACCES || code == EPERM || code == EROFS ? .configuration : .transient
        return ObjectStoreError(
            kind, code: code == ENOSPC ? "DiskFull" : "LocalIOError",
            message: "\(call) \(path): \(String(cString: strerror(code)))")
    }

    private static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await queue.run(body)
    }
}
