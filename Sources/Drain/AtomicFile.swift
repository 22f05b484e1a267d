import Foundation

/// Replaces a file's content atomically: readers (a Prometheus textfile collector, `cat`) see the old content or the
/// new, never a torn one, and a crash leaves one of the two.
enum AtomicFile {
    /// Writes `text` to a temporary file in the same directory, fsyncs it, renames it over `path` and fsyncs the
    /// directory.
    ///
    /// - Throws: `AtomicFileError` naming the call and the path; the temporary file is removed.
    static func replace(_ path: String, with text: String) throws {
        do {
            try replaceOrThrowStep(path, with: text)
        } catch var error as AtomicFileError {
            error.target = path
            throw error
        }
    }

    private static func replaceOrThrowStep(_ path: String, with text: String) throws {
        let directory =
            (path as NSString).deletingLastPathComponent.isEmpty
            ? "." : (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temporary = directory + "/." + name + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw AtomicFileError(call: "create", path: temporary) }
        var renamed = false
        defer { if !renamed { unlink(temporary) } }
        do {
            defer { close(descriptor) }
            try writeAll(text, to: descriptor, path: temporary)
            guard fsync(descriptor) == 0 else { throw AtomicFileError(call: "fsync", path: temporary) }
        }
        guard rename(temporary, path) == 0 else { throw AtomicFileError(call: "rename", path: path) }
        renamed = true
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryDescriptor >= 0 else { throw AtomicFileError(call: "open", path: directory) }
        defer { close(directoryDescriptor) }
        guard fsync(directoryDescriptor) == 0 else { throw AtomicFileError(call: "fsync", path: directory) }
    }

    /// Writes all of `text` to an open descriptor (short writes and EINTR retried).
    static func writeAll(_ text: String, to descriptor: Int32, path: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw AtomicFileError(call: "write", path: path) }
            offset += written
        }
    }
}

/// A failed step of an atomic file write.
struct AtomicFileError: Error, CustomStringConvertible {
    var call: String
    var path: String
    var reason: String
    /// The file that was to be replaced.
    var target: String?

    init(call: String, path: String) {
        self.call = call
        self.path = path
        self.reason = String(cString: strerror(errno))
    }

    var description: String {
        (target.map { "cannot write \($0): " } ?? "") + "\(call) \(path): \(reason)"
    }
}
