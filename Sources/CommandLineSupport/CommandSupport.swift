import ArgumentParser
import Foundation
import Spool

/// `--spool DIR`, shared by every tool.
public struct SpoolDirectoryOptions: ParsableArguments {
    /// The spool directory.
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The spool directory.",
            discussion:
                "Default: $PIPELINE_SPOOL_DIR, else $XDG_STATE_HOME/pipeline-storage/spool, else "
                + "~/.local/state/pipeline-storage/spool.",
            valueName: "dir"))
    public var spool: String?

    /// Creates the options (for argument-parser).
    public init() {}

    /// The directory to use.
    public var directory: String {
        spool ?? SpoolOptions.defaultDirectory(environment: ProcessInfo.processInfo.environment)
    }
}

/// Exit codes of the command-line tools (from sysexits.h, so scripts can tell failures apart).
public enum ExitStatus {
    /// Success.
    public static let success: Int32 = 0
    /// The operation failed; the reason is on standard error.
    public static let failure: Int32 = 1
    /// Something asked for does not exist (a spool, a resource, a bundle).
    public static let notFound: Int32 = 2
    /// Bad command-line usage (argument-parser's own code).
    public static let usage: Int32 = 64
    /// Bad input data: an invalid id, URL, metadata, content type, status code or option value, an archive refused
    /// by `--unzip` (zip-slip, zip bomb), or an operation that does not apply to the subject's state (retrying a
    /// resource that is not failed).
    public static let invalidInput: Int32 = 65
    /// The spool cannot be created or written, or was made by a newer version.
    public static let cannotCreate: Int32 = 73
    /// Try again later: the spool is full, the index stayed locked, or a live drainer or writer holds the subject.
    public static let temporaryFailure: Int32 = 75
    /// The spool is damaged.
    public static let corrupt: Int32 = 76

    /// The exit status for an error.
    public static func forError(_ error: any Error) -> Int32 {
        // An option found wrong once the command runs (a malformed key=value, say) is still a usage error.
        if error is ValidationError { return usage }
        guard let error = error as? SpoolError else { return failure }
        switch error.code {
        case .invalidBundleID, .invalidResourceName, .invalidURL, .invalidMetadata, .invalidContentType,
            .invalidStatusCode, .invalidConfiguration, .invalidState, .unsafeArchiveMember, .archiveLimitExceeded,
            .bundleConflict, .bundleNotOpen:
            return invalidInput
        case .spoolUnwritable, .schemaTooNew: return cannotCreate
        case .spoolFull, .databaseBusy, .inUse: return temporaryFailure
        case .corrupt: return corrupt
        case .bundleNotFound, .resourceNotFound, .spoolNotFound: return notFound
        default: return failure
        }
    }
}

/// Runs a command body; on error prints one line (`tool: message`) to standard error and exits with the matching
/// status.
public func runReportingErrors(tool: String, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as CleanExit {
        throw error
    } catch let error as SpoolError {
        printError("\(tool): \(error.message)")
        throw ExitCode(ExitStatus.forError(error))
    } catch {
        printError("\(tool): \(error)")
        throw ExitCode(ExitStatus.forError(error))
    }
}

/// Writes a line to standard error.
public func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Stable JSON for `--json`: snake_case keys, sorted, times as Unix milliseconds.
public enum JSONOutput {
    /// Encodes a value the way every tool's `--json` does.
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting =
            pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Prints a value as JSON on standard output.
    public static func print<T: Encodable>(_ value: T, pretty: Bool = true) throws {
        Swift.print(try encode(value, pretty: pretty))
    }
}

/// Parses `key=value` pairs from repeated options into metadata.
///
/// - Throws: `ValidationError` naming the malformed pair or the repeated key.
public func parseKeyValuePairs(_ pairs: [String], option: String) throws -> [String: String] {
    var result: [String: String] = [:]
    for pair in pairs {
        guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
            throw ValidationError("\(option) '\(pair)' is not key=value")
        }
        let key = String(pair[..<equals])
        guard result[key] == nil else { throw ValidationError("\(option) gives the key '\(key)' twice") }
        result[key] = String(pair[pair.index(after: equals)...])
    }
    return result
}
