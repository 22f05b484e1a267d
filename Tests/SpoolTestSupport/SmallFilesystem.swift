import BlockingWork
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A small filesystem mounted for a disk-full test: an ext4 image on a loop device (real blocks, real ENOSPC, fsync
/// that reaches the image), else a size-limited tmpfs. Mounting needs root and a sandbox that allows it; when neither
/// kind can be mounted, `mount` returns nil with the reasons, and the test falls back to the spool's own limits.
public struct SmallFilesystem: Sendable {
    /// How it was made: `ext4 loop image` or `tmpfs`.
    public let kind: String
    /// Where it is mounted.
    public let path: String

    /// Mounts a filesystem of `megabytes` at a new directory under the system's temporary directory, runs `body` with
    /// it, and unmounts it (also when `body` throws). `PIPELINE_TEST_SMALL_FS` chooses: `ext4`, `tmpfs`, or `none`
    /// (the fallback); unset tries ext4, then tmpfs. `body` gets nil and the reasons when none could be mounted.
    ///
    /// mkfs, mount, filling and unmounting block for up to seconds; they run off the pool Swift's tasks run on.
    public static func withMounted<T>(
        megabytes: Int, _ body: (SmallFilesystem?, [String]) async throws -> T
    ) async throws -> T {
        let (filesystem, reasons) = await blocking { mount(megabytes: megabytes) }
        do {
            let result = try await body(filesystem, reasons)
            if let filesystem { await blocking { filesystem.unmount() } }
            return result
        } catch {
            if let filesystem { await blocking { filesystem.unmount() } }
            throw error
        }
    }

    /// Fills it with a file at `path/name` until `leaving` bytes (or less) are free; returns the file's path.
    public func fill(leaving bytes: Int64, name: String = "filler") async -> String {
        await Self.blocking { fillBlocking(leaving: bytes, name: name) }
    }

    private static func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await BlockingQueue(label: "small-filesystem").value(body)
    }

    private static func mount(megabytes: Int) -> (filesystem: SmallFilesystem?, reasons: [String]) {
        var reasons: [String] = []
        let choice = ProcessInfo.processInfo.environment["PIPELINE_TEST_SMALL_FS"] ?? ""
        guard choice != "none" else { return (nil, ["PIPELINE_TEST_SMALL_FS=none"]) }
        guard geteuid() == 0 else { return (nil, ["not root (uid \(geteuid()))"]) }
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("smallfs-\(UUID().uuidString)").path
        let mountPoint = base + "/mnt"
        let image = base + "/disk.img"
        do {
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        } catch {
            return (nil, ["cannot create \(mountPoint): \(error)"])
        }
        // ext4 with no blocks reserved for root (the tests run as root, which could otherwise use them).
        if choice != "tmpfs", FileManager.default.createFile(atPath: image, contents: nil),
            truncate(image, off_t(megabytes) << 20) == 0
        {
            let made = run("/sbin/mkfs.ext4", ["-q", "-F", "-m", "0", image])
            if made.status == 0 {
                let mounted = run("/bin/mount", ["-o", "loop", image, mountPoint])
                if mounted.status == 0 {
                    return (SmallFilesystem(kind: "ext4 loop image", path: mountPoint), [])
                }
                reasons.append("mount -o loop: \(mounted.output)")
            } else {
                reasons.append("mkfs.ext4: \(made.output)")
            }
        }
        let tmpfs = run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", mountPoint])
        if tmpfs.status == 0 {
            try? FileManager.default.removeItem(atPath: image)
            return (SmallFilesystem(kind: "tmpfs", path: mountPoint), reasons)
        }
        reasons.append("mount -t tmpfs: \(tmpfs.output)")
        try? FileManager.default.removeItem(atPath: base)
        return (nil, reasons)
    }

    /// Free bytes on it.
    public var freeBytes: Int64 {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return 0 }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    private func fillBlocking(leaving bytes: Int64, name: String) -> String {
        let filler = path + "/" + name
        let descriptor = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        defer { close(descriptor) }
        let block = [UInt8](repeating: 0xAB, count: 64 << 10)
        while freeBytes > bytes {
            let size = Int(min(Int64(block.count), max(4096, freeBytes - bytes)))
            let written = block.withUnsafeBytes { write(descriptor, $0.baseAddress, size) }
            if written <= 0 { break }
        }
        fsync(descriptor)
        return filler
    }

    /// Unmounts it and removes the image.
    private func unmount() {
        // The spool's SQLite connection may close a moment late: try a few times, then lazily.
        for _ in 0..<50 {
            if Self.run("/bin/umount", [path]).status == 0 { break }
            usleep(100_000)
        }
        if Self.run("/bin/mountpoint", ["-q", path]).status == 0 { _ = Self.run("/bin/umount", ["-l", path]) }
        let base = (path as NSString).deletingLastPathComponent
        try? FileManager.default.removeItem(atPath: base)
    }

    /// Runs a system tool (looked up in the sbin and bin directories: the test's PATH may lack sbin).
    private static func run(_ tool: String, _ arguments: [String]) -> (status: Int32, output: String) {
        let name = (tool as NSString).lastPathComponent
        guard
            let path = ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map({ $0 + name }).first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else { return (-1, "\(name) not found") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            return (-1, "\(error)")
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus,
            String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        )
    }
}
