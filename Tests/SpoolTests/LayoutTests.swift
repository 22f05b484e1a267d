import Foundation
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LayoutTests {
    @Test func aPathUnderARegularFileIsUnwritable() async throws {
        try await withTemporaryDirectory { base in
            let file = base + "/x-file"
            #expect(FileManager.default.createFile(atPath: file, contents: Data("not a directory".utf8)))
            let root = file + "/spool"

            await expectSpoolError(.spoolUnwritable, mentioning: [file, root]) {
                _ = try SpoolStore.open(root)
            }
            let contents = try String(contentsOfFile: file, encoding: .utf8)
            #expect(contents == "not a directory")
        }
    }

    @Test func anEmptyPathIsUnwritable() async throws {
        await expectSpoolError(.spoolUnwritable, mentioning: ["empty"]) {
            _ = try SpoolStore.open("")
        }
    }

    // Root bypasses permission bits (CAP_DAC_OVERRIDE): a 0500 directory is still writable for it, so the check
    // cannot fail the way it does for an ordinary user. When the tests run as root (as in this project's containers)
    // this test is reported as skipped; it runs for any other user.
    @Test(.enabled(if: geteuid() != 0, "running as root: permission bits do not restrict root"))
    func aReadOnlyDirectoryIsUnwritable() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            _ = try SpoolStore.open(root)
            #expect(chmod(root, 0o500) == 0)
            defer { _ = chmod(root, 0o700) }

            await expectSpoolError(.spoolUnwritable, mentioning: [root]) {
                _ = try SpoolStore.open(root)
            }
        }
    }

    @Test func anUnlockedLeftoverInTmpIsRemovedAtOpen() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            _ = try SpoolStore.open(root)
            let leftover = root + "/tmp/bundle-1-0123456789abcdef01234567"
            #expect(FileManager.default.createFile(atPath: leftover, contents: Data(repeating: 1, count: 4096)))

            let store = try SpoolStore.open(root)

            #expect(store.crashLeftoversRemoved == 1)
            #expect(!fileExists(leftover))
            #expect(directoryEntries(root + "/tmp").isEmpty)
        }
    }

    @Test func aLeftoverLockedByALiveWriterIsKept() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            _ = try SpoolStore.open(root)
            let inProgress = root + "/tmp/bundle-1-live"
            let descriptor = open(inProgress, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            try #require(descriptor >= 0)
            #expect(flock(descriptor, LOCK_EX) == 0)

            let store = try SpoolStore.open(root)

            #expect(store.crashLeftoversRemoved == 0)
            #expect(fileExists(inProgress))

            // Once the writer is gone (its descriptor, and with it the lock), the file is garbage.
            close(descriptor)
            let later = try SpoolStore.open(root)
            #expect(later.crashLeftoversRemoved == 1)
            #expect(!fileExists(inProgress))
        }
    }

    @Test func aSymlinkInTmpIsRemovedWithoutTouchingItsTarget() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            _ = try SpoolStore.open(root)
            let target = base + "/precious"
            #expect(FileManager.default.createFile(atPath: target, contents: Data("keep me".utf8)))
            #expect(symlink(target, root + "/tmp/link") == 0)

            let store = try SpoolStore.open(root)

            #expect(store.crashLeftoversRemoved == 1)
            #expect(!fileExists(root + "/tmp/link"))
            let contents = try String(contentsOfFile: target, encoding: .utf8)
            #expect(contents == "keep me")
        }
    }
}
