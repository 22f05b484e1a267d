import ArgumentParser
import CommandLineSupport
import Foundation
import PipelineStorage

/// Spools every file of a directory the way a producer would, so that a drain can be compared with other upload
/// tools on exactly the same files (tools/bench/drain-compare).
struct FillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fill",
        abstract: "Spool every regular file of a directory (sorted by name) into sealed bundles for an S3 bucket.",
        discussion: """
            Each file becomes one resource named after the file, so its key is \
            <prefix><bundle>/<seq>-<file name>; bundles hold --bundle-size files each and are sealed. Writes use \
            batched durability from --writers tasks. Prints the number of files and bytes spooled.
            """)

    @Option(help: "The spool directory to fill.")
    var spool: String

    @Option(help: "The directory whose files are spooled.")
    var from: String

    @Option(help: "The destination bucket.")
    var bucket: String

    @Option(help: "The S3-compatible endpoint recorded for the destination.")
    var endpoint: String?

    @Option(help: "The bucket's region.")
    var region: String?

    @Option(help: "Key prefix.")
    var prefix = ""

    @Option(help: "Files per bundle.")
    var bundleSize = 100

    @Option(help: "Concurrent writer tasks.")
    var writers = 8

    func run() async throws {
        try await runReportingErrors(tool: "spool-bench") {
            guard bundleSize > 0, writers > 0 else {
                throw ValidationError("--bundle-size and --writers must be positive")
            }
            let names = try FileManager.default.contentsOfDirectory(atPath: from).sorted().filter { name in
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: from + "/" + name, isDirectory: &isDirectory)
                    && !isDirectory.boolValue
            }
            var spoolOptions = SpoolOptions()
            spoolOptions.durability = .batched
            let storage = try PipelineStorage(
                bucket: bucket, prefix: prefix, region: region, endpoint: endpoint, spool: .directory(spool),
                spoolOptions: spoolOptions)
            var bytes: Int64 = 0
            for (bundleIndex, start) in stride(from: 0, to: names.count, by: bundleSize).enumerated() {
                let group = Array(names[start..<min(start + bundleSize, names.count)])
                let bundleID = String(format: "fill-%05d", bundleIndex)
                bytes += try await storage.withBundle(bundleID) { bundle in
                    try await withThrowingTaskGroup(of: Int64.self) { tasks in
                        for writer in 0..<writers {
                            tasks.addTask {
                                var written: Int64 = 0
                                for name in group.enumerated().filter({ $0.offset % writers == writer }).map(\.element)
                                {
                                    let url = URL(fileURLWithPath: from + "/" + name)
                                    written += try await bundle.writeResource(
                                        url: "file://bench/" + name, contentType: "application/octet-stream",
                                        statusCode: 200, name: name, contentsOf: url
                                    ).size
                                }
                                return written
                            }
                        }
                        var total: Int64 = 0
                        for try await written in tasks { total += written }
                        return total
                    }
                }
            }
            print("spooled \(names.count) files, \(bytes) bytes")
        }
    }
}
