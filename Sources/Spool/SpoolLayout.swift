#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The spool directory on disk: `spool.db` (the index), `data/` (payload files), `tmp/` (writes in progress).
///
/// The directory and everything in it are private to their owner (0700 directories, 0600 files).
public struct SpoolLayout: Sendable {
    /// The spool directory, absolute.
    public let root: String

    /// The index database.
    public var databasePath: String { root + "/spool.db" }
    /// Where payload files live once durable.
    public var dataDirectory: String { root + "/data" }
    /// Where payload files are written before they are durable; leftovers here are garbage from a crash.
    public var temporaryDirectory: String { root + "/tmp" }

    static let directoryMode: mode_t = 0o700
    static let fileMode: mode_t = 0o600

    /// Creates the directories that are missing and checks that the spool can be written.
    ///
    /// - Throws: `SpoolError.spoolUnwritable` naming the path and the reason.
    static func prepare(_ path: String) throws -> SpoolLayout {
        guard !path.isEmpty else {
            throw SpoolError(
                .spoolUnwritable, "the spool directory path is empty; pass --spool DIR or set PIPELINE_SPOOL_DIR")
        }
        let layout = SpoolLayout(root: absolutePath(path))
        try makeDirectories(layout.root)
        for directory in [layout.dataDirectory, layout.temporaryDirectory] {
            try makeDirectories(directory)
        }
        guard access(layout.root, W_OK | X_OK) == 0, access(layout.dataDirectory, W_OK | X_OK) == 0,
            access(layout.temporaryDirectory, W_OK | X_OK) == 0
        else {
            throw SpoolError(
                .spoolUnwritable,
                "the spool directory '\(layout.root)' is not writable by this user; fix its owner or permissions, or "
                    + "choose another with --spool or PIPELINE_SPOOL_DIR",
                underlying: SystemCallError(call: "access", errno: errno))
        }
        // SQLite creates its files with 0644; creating the index first with 0600 makes SQLite give the -wal and -shm
        // files the same private mode.
        let descriptor = open(layout.databasePath, O_RDWR | O_CREAT | O_CLOEXEC, fileMode)
        guard descriptor >= 0 else {
            let code = errno
            var info = stat()
            let exists = stat(layout.databasePath, &info) == 0
            throw SpoolError(
                .spoolUnwritable,
                exists
                    ? "the spool index '\(layout.databasePath)' cannot be opened for reading and writing by this user "
                        + "(\(String(cString: strerror(code)))); fix its owner or mode (0600, owned by the user running "
                        + "the writers and drainers)"
                    : "could not create the spool index '\(layout.databasePath)'; check the directory's owner and "
                        + "permissions", underlying: SystemCallError(call: "open", errno: code))
        }
        close(descriptor)
        return layout
    }

    /// Throws `spoolNotFound` unless `path` holds a spool index.
    static func checkExists(_ path: String) throws {
        var info = stat()
        guard stat(path + "/spool.db", &info) == 0 else {
            throw SpoolError(
                .spoolNotFound,
                "there is no spool at '\(absolutePath(path))'; check --spool or PIPELINE_SPOOL_DIR (a producer or "
                    + "spool-put creates the spool)")
        }
    }

    /// `mkdir -p` with private permissions; an existing directory is left as it is.
    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, directoryMode) == 0 { continue }
            let code = errno
            var info = stat()
            if code == EEXIST, stat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { continue }
            if code == EEXIST {
                throw SpoolError(
                    .spoolUnwritable,
                    "'\(current)' exists and is not a directory; the spool needs a directory at '\(path)'")
            }
            throw SpoolError(
                .spoolUnwritable,
                "could not create the spool directory '\(current)'; check permissions or choose another spool "
                    + "directory", underlying: SystemCallError(call: "mkdir", errno: code))
        }
    }

    static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + path
    }

    /// Removes what crashed writers left in `tmp/`. A file still locked by a live writer (here or in another process)
    /// is left alone; a crashed process's locks are gone with it.
    ///
    /// - Returns: the number of files removed.
    @discardableResult
    func removeCrashLeftovers() throws -> Int {
        guard let directory = opendir(temporaryDirectory) else {
            throw SpoolError.io("list", path: temporaryDirectory, call: "opendir")
        }
        defer { closedir(directory) }
        var removed = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let path = temporaryDirectory + "/" + name
            let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
            if descriptor < 0 {
                // Not a regular file we can open (a symlink, say): nothing of ours; remove it all the same.
                if unlink(path) == 0 { removed += 1 }
                continue
            }
            defer { close(descriptor) }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { continue }  // a live writer holds it
            if unlink(path) == 0 { removed += 1 }
        }
        return removed
    }
}
