import Foundation
import Testing

/// The short version of tools/chaos/fuzz: the deterministic mutation fuzzer over the parsers of outside bytes, a fixed
/// number of inputs each (tools/chaos/fuzz runs libFuzzer, coverage-guided, for the figures in docs/RELIABILITY.md).
@Suite("Fuzzing the XML and configuration parsers (deterministic, short)")
struct FuzzTests {
    @Test(
        "No crash over a fixed number of mutated inputs",
        arguments: [("xml", 20_000), ("config-file", 5_000), ("config-env", 2_000), ("profile", 5_000)])
    func noCrash(target: String, runs: Int) async throws {
        let result = try await runTool("pipeline-fuzz", [target, "--runs", String(runs), "--seed", "20261124"])
        #expect(
            result.status == 0,
            "pipeline-fuzz \(target) crashed (status \(result.status)): \(result.stderr.suffix(2000))")
        #expect(result.stdout.contains("\(runs) runs"), "\(result.stdout)")
        print("FuzzTests: " + result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("The same seed makes the same inputs (a crash can be reproduced)")
    func deterministic() async throws {
        let first = try await runTool("pipeline-fuzz", ["xml", "--seed", "7", "--show-input", "123"])
        let second = try await runTool("pipeline-fuzz", ["xml", "--seed", "7", "--show-input", "123"])
        #expect(first.status == 0 && !first.stdout.isEmpty)
        #expect(first.stdout == second.stdout)
    }
}
