import Foundation
import Hashing
import PipelineStorage
@_exported import SpoolTestSupport  // expectSpoolError, removeDirectory, for every file of this target
import Testing

@testable import LocalS3Support

// MARK: Sandboxes

/// One test's directory: a spool, a file:// target, and room for archives made by python.
struct Sandbox {
    let base: String
    var spoolPath: String { base + "/spool" }
    var targetPath: String { base + "/target" }
    /// The spool's `tmp/`, where the decorators keep their scratch files.
    var scratchPath: String { spoolPath + "/tmp" }

    init() throws {
        base =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("decorator-tests-\(UUID().uuidString)", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    }

    /// A path in the sandbox.
    func path(_ name: String) -> String { base + "/" + name }

    /// Storage delivering to the sandbox's file:// target.
    func storage() throws -> PipelineStorage {
        try PipelineStorage(directory: targetPath, prefix: "data/", spool: .directory(spoolPath))
    }

    /// Files left in the spool's `tmp/` (scratch files must never outlive a write).
    var scratchFiles: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: scratchPath)) ?? []).sorted()
    }
}

/// Runs `body` with a new sandbox, removed afterwards whether `body` returns or throws.
func withSandbox<T>(_ body: (Sandbox) async throws -> T) async throws -> T {
    let sandbox = try Sandbox()
    do {
        let result = try await body(sandbox)
        await removeDirectory(sandbox.base)
        return result
    } catch {
        await removeDirectory(sandbox.base)
        throw error
    }
}

// MARK: Archives made by real tools

/// Runs tools/testarchives.py (python3's own zipfile and gzip modules) and returns what it printed.
@discardableResult
func archiveTool(_ arguments: [String], in sandbox: Sandbox) async throws -> String {
    let root = try #require(LocalS3.repositoryRoot, "no Package.swift above the tests")
    return try await run("/usr/bin/env", ["python3", root + "/tools/testarchives.py"] + arguments)
}

/// Runs a program to completion; throws with its standard error when it fails.
@discardableResult
func run(_ executable: String, _ arguments: [String], workingDirectory: String? = nil) async throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
    // Files, not pipes: a child that writes a lot never blocks on a full pipe nobody reads yet.
    let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("out-\(UUID().uuidString)").path
    let errorPath = outputPath + ".err"
    _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: outputPath)
        try? FileManager.default.removeItem(atPath: errorPath)
    }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
    process.standardInput = FileHandle.nullDevice
    try await process.runToExit()
    let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    guard process.terminationStatus == 0 else {
        let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        throw ToolFailure(description: "\(executable) \(arguments.joined(separator: " ")) failed: \(errors)")
    }
    return output
}

struct ToolFailure: Error, CustomStringConvertible {
    var description: String
}

// MARK: Reading back

/// The resources of a bundle in the spool, oldest first.
func spooledResources(_ storage: PipelineStorage, bundle: String) async throws -> [ResourceRecord] {
    try await storage.spool.listResources(ResourceFilter(bundleID: bundle, limit: 100_000))
}

/// A resource's bytes, read back from the spool.
func payload(_ storage: PipelineStorage, _ record: ResourceRecord) async throws -> [UInt8] {
    try await storage.spool.payloadBytes(of: record.id)
}

/// Lowercase hex SHA-256.
func sha256Hex(_ bytes: [UInt8]) -> String { SHA256Hasher.hexDigest(bytes) }

/// `bytes` as an async stream of chunks of `size` bytes.
func chunked(_ bytes: [UInt8], size: Int = 100_003) -> AsyncStream<[UInt8]> {
    AsyncStream { continuation in
        var start = 0
        while start < bytes.count {
            continuation.yield(Array(bytes[start..<min(bytes.count, start + size)]))
            start += size
        }
        continuation.finish()
    }
}

/// One zip member for `archiveTool(["zip", …])`.
struct ZipMemberSpec: Encodable {
    var name: String
    var data: String
    var method: String
    var mode: String?

    init(_ name: String, _ bytes: [UInt8], method: String = "deflate", mode: String? = nil) {
        self.name = name
        self.data = Data(bytes).base64EncodedString()
        self.method = method
        self.mode = mode
    }
}

/// Makes a zip with python's zipfile; optionally patches bytes afterwards (hex `replace` → `with`).
func makeZip(
    _ path: String, _ members: [ZipMemberSpec], in sandbox: Sandbox, replace: (String, String)? = nil
) async throws {
    let spec = path + ".json"
    try JSONEncoder().encode(members).write(to: URL(fileURLWithPath: spec))
    defer { try? FileManager.default.removeItem(atPath: spec) }
    var arguments = ["zip", path, spec]
    if let replace { arguments += [replace.0, replace.1] }
    try await archiveTool(arguments, in: sandbox)
}

/// Reads a zip with python's zipfile: members' sizes and digests, `testzip()`, the parsed manifest.
func readZip(_ path: String, in sandbox: Sandbox) async throws -> [String: Any] {
    let output = try await archiveTool(["read-zip", path], in: sandbox)
    return try #require(JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
}

/// Hex of a string's UTF-8 bytes (for `makeZip`'s byte patches).
func hex(_ text: String) -> String { text.utf8.map { String(format: "%02x", $0) }.joined() }

/// The bytes of a file.
func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
