import Foundation
import SpoolTestSupport
import Testing

/// Where `swift build` put the executables: `$PIPELINE_BIN_DIR` (set by tools/test), else next to the test bundle.
let binDirectory: String = {
    if let explicit = ProcessInfo.processInfo.environment["PIPELINE_BIN_DIR"], !explicit.isEmpty { return explicit }
    var path = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    // Inside an .xctest bundle on some platforms: walk up until the tools are found.
    for _ in 0..<4 where !FileManager.default.fileExists(atPath: path.appendingPathComponent("spool-put").path) {
        path.deleteLastPathComponent()
    }
    return path.path
}()

struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a built tool (or, given an absolute path, any program) to completion with optional standard input.
func runTool(
    _ name: String, _ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:]
) async throws -> ToolResult {
    try await runProgram(
        name.hasPrefix("/") ? name : binDirectory + "/" + name, arguments, stdin: stdin, environment: environment)
}

/// Runs any program to completion with optional standard input.
func runProgram(_ path: String, _ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:])
    async throws -> ToolResult
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let directory = try makeTemporaryDirectory(prefix: "tool-io")
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let outPath = directory + "/stdout"
    let errPath = directory + "/stderr"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    if let stdin {
        let inPath = directory + "/stdin"
        _ = FileManager.default.createFile(atPath: inPath, contents: stdin)
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
    } else {
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    }
    try await process.runToExit()
    return ToolResult(
        status: process.terminationStatus,
        stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
}

/// A fresh directory under the system's temporary directory.
func makeTemporaryDirectory(prefix: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Runs `body` with a fresh temporary directory, removed afterwards.
func withTemporaryDirectory<T>(prefix: String = "cli", _ body: (String) async throws -> T) async throws -> T {
    let path = try makeTemporaryDirectory(prefix: prefix)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Parses JSON text into a dictionary.
func jsonObject(_ text: String) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

/// One `written` line of spool-load: a resource acknowledged as durable.
struct AcknowledgedWrite: Hashable {
    var id: Int64
    var bundle: String
    var seq: Int
    var size: Int64
    var sha256: String
    var key: String
}

/// Parses spool-load's output; a torn last line (the process was killed) is ignored.
func parseLoadOutput(_ text: String) -> (writes: [AcknowledgedWrite], sealed: Set<String>, finished: Bool) {
    var writes: [AcknowledgedWrite] = []
    var sealed: Set<String> = []
    var finished = false
    for line in text.split(separator: "\n") {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let event = object["event"] as? String
        else { continue }
        switch event {
        case "written":
            writes.append(
                AcknowledgedWrite(
                    id: (object["id"] as! NSNumber).int64Value, bundle: object["bundle"] as! String,
                    seq: (object["seq"] as! NSNumber).intValue, size: (object["size"] as! NSNumber).int64Value,
                    sha256: object["sha256"] as! String, key: object["key"] as! String))
        case "sealed": sealed.insert(object["bundle"] as! String)
        case "finished": finished = true
        default: continue
        }
    }
    return (writes, sealed, finished)
}
