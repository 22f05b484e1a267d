import Foundation

// Two ways to run the same targets (FuzzTargets.swift):
//
// - built normally: `pipeline-fuzz TARGET --runs N --seed S`, the deterministic mutation fuzzer (MutationFuzzer.swift);
//   prints one summary line and exits 0, or dies on the input that crashed it (rerun with --show-input to see it).
// - built with `-Xswiftc -sanitize=fuzzer -Xswiftc -DLIBFUZZER` (tools/chaos/fuzz does it, in its own build
//   directory): a libFuzzer binary; the target comes from PIPELINE_FUZZ_TARGET, the arguments are libFuzzer's
//   (`-runs=N -seed=S CORPUS_DIR`).

#if LIBFUZZER

/// libFuzzer's entry point for one input.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    _ = LibFuzzerRun.target.run(bytes, scratchFile: LibFuzzerRun.scratchFile)
    return 0
}

/// libFuzzer's driver, started from the `main` SwiftPM links into an executable (`pipeline_fuzz_main`).
@_silgen_name("LLVMFuzzerRunDriver")
func runLibFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("pipeline_fuzz_main")
func pipelineFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    _ = LibFuzzerRun.target
    var count = argc
    var vector = argv
    return runLibFuzzerDriver(&count, &vector) { fuzzOneInput($0, $1) }
}

/// The target and scratch file of a libFuzzer run.
enum LibFuzzerRun {
    static let target: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["PIPELINE_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(
                Data("pipeline-fuzz: set PIPELINE_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue))\n".utf8))
            exit(64)
        }
        return target
    }()
    static let scratchFile = scratchPath()
}

#else

import ArgumentParser

/// Runs the deterministic mutation fuzzer over one target.
@main
struct PipelineFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline-fuzz",
        abstract: "Fuzz a parser that reads outside bytes: S3's XML answers, the storage configuration, AWS profiles.",
        discussion: """
            Targets: xml (XMLNode.parse and its accessors), config-file (ApplicationStorageConfiguration.load of a \
            JSON file), config-env (the same from PIPELINE_STORAGE_* variables), profile (the AWS shared \
            config/credentials parser and credential_process splitting). Deterministic: the same --seed and \
            --runs make the same inputs. Prints one line: target, runs, outcomes by kind, largest input, seconds. \
            A crash kills the process; --show-input N prints input N (base64) to reproduce it.

            Exit status: 0 no crash; 64 usage. A crash ends with the signal's status.
            """)

    @Argument(help: "xml, config-file or config-env.")
    var target: String

    @Option(help: "Inputs to run.")
    var runs = 10_000

    @Option(help: "Seed of the mutations.")
    var seed: UInt64 = 1

    @Option(help: "Print input N (base64) instead of running it, to reproduce a crash.")
    var showInput: Int?

    @Option(help: "Write the target's seed inputs into this directory (a corpus for libFuzzer) and exit.")
    var writeCorpus: String?

    @Option(help: "Write the target's mutation tokens to this file (a libFuzzer -dict) and exit.")
    var writeDictionary: String?

    func validate() throws {
        guard FuzzTarget(rawValue: target) != nil else {
            throw ValidationError("target '\(target)' is not one of \(FuzzTarget.allCases.map(\.rawValue))")
        }
        guard runs >= 0 else { throw ValidationError("--runs must not be negative") }
    }

    func run() throws {
        let target = FuzzTarget(rawValue: target)!
        if writeCorpus != nil || writeDictionary != nil {
            try writeLibFuzzerInputs(target)
            return
        }
        var fuzzer = MutationFuzzer(target: target, seed: seed)
        if let showInput {
            for _ in 0..<showInput { _ = fuzzer.next() }
            print(Data(fuzzer.next()).base64EncodedString())
            return
        }
        let scratch = scratchPath()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let started = ContinuousClock.now
        let summary = fuzzer.run(count: runs, scratchFile: scratch)
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let outcomes = summary.outcomes.sorted { $0.value > $1.value }.map { "\($0.key)=\($0.value)" }
        print(
            "pipeline-fuzz \(target.rawValue): \(summary.runs) runs, seed \(seed), no crash; outcomes: "
                + outcomes.joined(separator: ", ") + "; largest input \(summary.largestInput) bytes; "
                + "pool \(summary.poolSize); \(String(format: "%.1f", seconds)) s")
    }

    /// The seeds as files `seed-N`, the tokens as a libFuzzer dictionary (`"…"` lines, bytes as `\xNN`).
    private func writeLibFuzzerInputs(_ target: FuzzTarget) throws {
        if let writeCorpus {
            try FileManager.default.createDirectory(atPath: writeCorpus, withIntermediateDirectories: true)
            for (index, seed) in target.seeds.enumerated() {
                try Data(seed).write(to: URL(fileURLWithPath: writeCorpus + "/seed-\(index)"))
            }
        }
        if let writeDictionary {
            let lines = target.dictionary.map { token in
                "\""
                    + token.map { byte in
                        (0x20..<0x7F).contains(byte) && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\")
                            ? String(UnicodeScalar(byte)) : "\\x" + String(format: "%02X", byte)
                    }.joined() + "\""
            }
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: writeDictionary))
        }
    }
}

#endif

/// A file for the config-file target, in shared memory when there is some (a write per input).
func scratchPath() -> String {
    let directory = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    return directory + "/pipeline-fuzz-\(getpid()).json"
}
