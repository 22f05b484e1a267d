import Foundation
import Hashing
import PipelineStorage
@_exported import SpoolTestSupport  // expectSpoolError, removeDirectory, for every file of this target
import Testing

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

/// Runs `tools` of `archives.py` (python3's zipfile and gzip modules) and returns what it printed.
@discardableResult
func archiveTool(_ arguments: [String], in sandbox: Sandbox) throws -> String {
    try run("/usr/bin/env", ["python3", try archiveScript(in: sandbox)] + arguments)
}

/// Runs a program to completion; throws with its standard error when it fails.
@discardableResult
func run(_ executable: String, _ arguments: [String], workingDirectory: String? = nil) throws -> String {
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
    try process.run()
    process.waitUntilExit()
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

/// Writes archives.py into the sandbox once and returns its path.
private func archiveScript(in sandbox: Sandbox) throws -> String {
    let path = sandbox.path("archives.py")
    if !FileManager.default.fileExists(atPath: path) {
        try archivesPython.write(toFile: path, atomically: true, encoding: .utf8)
    }
    return path
}

/// Archives and checks made with python3's own modules, so the decorators are tested against what real tools write
/// and read, not only against bytes made by our own code.
private let archivesPython = #"""
    import base64, gzip, hashlib, io, json, sys, zipfile

    def pattern_block(seed):
        # 1 MiB: each 4 KiB page is 256 pseudo-random bytes then zeros (deflates about 14 times).
        state = seed
        block = bytearray()
        for _ in range(256):
            page = bytearray()
            for _ in range(32):
                state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
                page += state.to_bytes(8, "little")
            block += page + bytes(4096 - len(page))
        return bytes(block)

    def main():
        command = sys.argv[1]
        if command == "gzip":
            # gzip IN OUT: one member, as gzip(1) would write it
            with open(sys.argv[2], "rb") as source, gzip.open(sys.argv[3], "wb") as target:
                target.write(source.read())
        elif command == "pattern-gzip":
            # pattern-gzip OUT MIB: a gzip stream of MIB MiB, streamed; prints the plain bytes' size and sha256
            digest = hashlib.sha256()
            block = pattern_block(7)
            with gzip.open(sys.argv[2], "wb", compresslevel=1) as target:
                for _ in range(int(sys.argv[3])):
                    target.write(block)
                    digest.update(block)
            print(json.dumps({"size": len(block) * int(sys.argv[3]), "sha256": digest.hexdigest()}))
        elif command == "zeros-gzip":
            # zeros-gzip OUT MIB
            with gzip.open(sys.argv[2], "wb") as target:
                for _ in range(int(sys.argv[3])):
                    target.write(bytes(1 << 20))
        elif command == "zip":
            # zip OUT SPEC: SPEC is a JSON file [{"name", "data" (base64), "method": "deflate"|"store", "mode"}]
            with open(sys.argv[3]) as f:
                spec = json.load(f)
            with zipfile.ZipFile(sys.argv[2], "w") as archive:
                for member in spec:
                    info = zipfile.ZipInfo(member["name"], date_time=(2024, 5, 1, 12, 0, 0))
                    info.compress_type = zipfile.ZIP_STORED if member.get("method") == "store" else zipfile.ZIP_DEFLATED
                    if "mode" in member:
                        info.create_system = 3
                        info.external_attr = int(member["mode"], 8) << 16
                    archive.writestr(info, base64.b64decode(member["data"]))
            if len(sys.argv) > 4:
                # replace OLD NEW (hex): patch bytes afterwards, e.g. to put a NUL in a name
                with open(sys.argv[2], "rb") as f:
                    data = f.read()
                data = data.replace(bytes.fromhex(sys.argv[4]), bytes.fromhex(sys.argv[5]))
                with open(sys.argv[2], "wb") as f:
                    f.write(data)
        elif command == "overlapping-zip":
            # overlapping-zip OUT: two directory entries pointing at the same member's bytes
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr("a.txt", b"x" * 100000, compress_type=zipfile.ZIP_DEFLATED)
            data = buffer.getvalue()
            end = data.rfind(b"PK\x05\x06")
            directory_start = int.from_bytes(data[end + 16:end + 20], "little")
            entry = data[directory_start:end]
            twin = entry.replace(b"a.txt", b"b.txt")
            count = 2
            record = bytearray(data[end:])
            record[8:10] = count.to_bytes(2, "little")
            record[10:12] = count.to_bytes(2, "little")
            record[12:16] = (2 * len(entry)).to_bytes(4, "little")
            with open(sys.argv[2], "wb") as f:
                f.write(data[:directory_start] + entry + twin + bytes(record))
        elif command == "read-zip":
            # read-zip ZIP: every member's size and sha256, testzip's verdict, and manifest.json parsed
            result = {"members": {}, "order": []}
            with zipfile.ZipFile(sys.argv[2]) as archive:
                result["testzip"] = archive.testzip()
                for info in archive.infolist():
                    data = archive.read(info)
                    result["order"].append(info.filename)
                    result["members"][info.filename] = {
                        "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "compress_type": info.compress_type}
                    if info.filename == "manifest.json":
                        result["manifest"] = json.loads(data)
            print(json.dumps(result))
        else:
            sys.exit("unknown command " + command)

    main()
    """#

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

/// Deterministic pseudo-random bytes (SplitMix64), so a failing case reproduces.
func testBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    var bytes = [UInt8]()
    bytes.reserveCapacity(count + 8)
    while bytes.count < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        withUnsafeBytes(of: z) { bytes.append(contentsOf: $0) }
    }
    bytes.removeSubrange(count...)
    return bytes
}

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
) throws {
    let spec = path + ".json"
    try JSONEncoder().encode(members).write(to: URL(fileURLWithPath: spec))
    defer { try? FileManager.default.removeItem(atPath: spec) }
    var arguments = ["zip", path, spec]
    if let replace { arguments += [replace.0, replace.1] }
    try archiveTool(arguments, in: sandbox)
}

/// Reads a zip with python's zipfile: members' sizes and digests, `testzip()`, the parsed manifest.
func readZip(_ path: String, in sandbox: Sandbox) throws -> [String: Any] {
    let output = try archiveTool(["read-zip", path], in: sandbox)
    return try #require(JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
}

/// Hex of a string's UTF-8 bytes (for `makeZip`'s byte patches).
func hex(_ text: String) -> String { text.utf8.map { String(format: "%02x", $0) }.joined() }

/// The bytes of a file.
func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
