import Foundation

/// Removes `path` and everything in it.
///
/// A spool's SQLite connection can close a moment after the test let go of the spool: the dispatch block that ran its
/// last query holds the final reference until it finishes. Closing checkpoints the WAL and deletes the -wal and -shm
/// files, which can make a removal walking the directory at that moment fail. So: try again until it is gone.
public func removeDirectory(_ path: String) async {
    for _ in 0..<250 {
        try? FileManager.default.removeItem(atPath: path)
        if !FileManager.default.fileExists(atPath: path) { return }
        try? await Task.sleep(for: .milliseconds(20))
    }
}
