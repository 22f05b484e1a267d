import CommandLineSupport
import Foundation
@testable import LocalS3Support
import S3
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The soak (tools/chaos/soak runs it long): producers write while two drainers are SIGKILLed on a seeded schedule and
/// restarted, through a fault proxy whose rules change at run time, against moto with SigV4 and versioning on. At the
/// end, everything acknowledged must be in the bucket once, intact, with no upload left and a clean verify.
///
/// Parameters (environment): PIPELINE_SOAK_SECONDS (15), PIPELINE_SOAK_PRODUCERS (3), PIPELINE_SOAK_SEED (1),
/// PIPELINE_SOAK_LARGE (2: multipart-sized resources spooled first), PIPELINE_SOAK_MAX_SIZE (256KiB: the largest of
/// the producers' resources). It prints one `SOAK RESULT` line. moto holds every object in memory: keep the volume
/// (producers × seconds × size) modest.
@Suite("Soak: producers, killed drainers and a hostile network together")
struct SoakTests {
    struct Parameters {
        var seconds: Int
        var producers: Int
        var seed: UInt64
        var large: Int
        var maxSize: String

        static func fromEnvironment() -> Parameters {
            let environment = ProcessInfo.processInfo.environment
            func number(_ name: String, _ fallback: Int) -> Int { environment[name].flatMap { Int($0) } ?? fallback }
            return Parameters(
                seconds: number("PIPELINE_SOAK_SECONDS", 15), producers: number("PIPELINE_SOAK_PRODUCERS", 3),
                seed: UInt64(number("PIPELINE_SOAK_SEED", 1)), large: number("PIPELINE_SOAK_LARGE", 2),
                maxSize: environment["PIPELINE_SOAK_MAX_SIZE"] ?? "256KiB")
        }
    }

    /// The proxy's rules in a phase of the run: `scale` multiplies every probability.
    static func faults(scale: Double) -> [FaultProxy.Rule] {
        [
            FaultProxy.Rule(fault: "reset", probability: 0.03 * scale),
            FaultProxy.Rule(fault: "drop_response", probability: 0.03 * scale),
            FaultProxy.Rule(fault: "error500", probability: 0.03 * scale),
            FaultProxy.Rule(fault: "slowdown", probability: 0.03 * scale),
            // Closed after 2 s: the client sees a lost connection and retries.
            FaultProxy.Rule(fault: "stall", probability: 0.01 * scale, seconds: 2),
        ]
    }

    @Test(
        "Producers write while two drainers are killed and restarted through the fault proxy: nothing lost or doubled")
    func soak() async throws {
        let parameters = Parameters.fromEnvironment()
        try await withTemporaryDirectory(prefix: "soak") { directory in
            var scenario = try await DrainScenario.make(directory: directory)
            let proxy = try await LocalS3.shared.newFaultProxy()
            var random = SplitMix64(seed: parameters.seed)
            let started = ContinuousClock.now

            // Multipart-sized resources first, so that kills land in multipart uploads too.
            if parameters.large > 0 {
                try await scenario.load(
                    endpoint: proxy.endpoint, bundles: 1, resources: parameters.large, minSize: "17MiB",
                    maxSize: "24MiB", seed: parameters.seed &* 7_919)
            }
            try await proxy.configure(Self.faults(scale: 1), seed: parameters.seed)

            let producers = try (0..<parameters.producers).map { index in
                try ChildProcess(
                    tool: "spool-load",
                    arguments: [
                        "--spool", scenario.spoolDirectory, "--bucket", scenario.bucket, "--endpoint", proxy.endpoint,
                        "--region", scenario.server.region, "--prefix", scenario.prefix, "--seconds",
                        String(parameters.seconds), "--bundle-pause-ms", "300", "--resources", "8", "--min-size", "0",
                        "--max-size", parameters.maxSize, "--writers", "2", "--durability",
                        index % 2 == 0 ? "batched" : "fsync",
                        "--seed", String(parameters.seed &* 1_000 &+ UInt64(index)),
                    ], environment: scenario.drainerEnvironment, logPath: directory + "/producer-\(index).log",
                    outputPath: directory + "/producer-\(index).out")
            }

            // Two drainer slots: each drainer runs until a seeded moment, is killed, and another takes its place.
            let chaosEnds = started + .seconds(parameters.seconds)
            var drainers: [ChildProcess?] = [nil, nil]
            var killAt: [ContinuousClock.Instant] = [started, started]
            var kills = 0
            var launched = 0
            var phase = 0
            while ContinuousClock.now < chaosEnds {
                for slot in 0..<2 {
                    if let drainer = drainers[slot], ContinuousClock.now >= killAt[slot] {
                        if drainer.send(SIGKILL) { kills += 1 }
                        _ = await drainer.waitForExit(timeout: .seconds(30))
                        drainers[slot] = nil
                    }
                    if drainers[slot] == nil {
                        launched += 1
                        drainers[slot] = try scenario.startDrainer(
                            ["--concurrency", "4", "--lease-seconds", "5"],
                            logPath: directory + "/drain-\(launched).log")
                        killAt[slot] = ContinuousClock.now + .milliseconds(Int64(300 + random.next() % 2_200))
                    }
                }
                // Runtime control: a storm in the middle third of the run, calmer either side.
                let third = (ContinuousClock.now - started) / .seconds(max(1, parameters.seconds)) * 3
                let wanted = third >= 1 && third < 2 ? 1 : 0
                if wanted != phase {
                    phase = wanted
                    try await proxy.configure(Self.faults(scale: phase == 1 ? 2.5 : 1))
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            for drainer in drainers.compactMap({ $0 }) where drainer.send(SIGKILL) {
                kills += 1
                _ = await drainer.waitForExit(timeout: .seconds(30))
            }
            for producer in producers {
                let finished = await producer.waitForExit(timeout: .seconds(120))
                if !finished { await producer.killAndWait() }
                #expect(finished && producer.exitStatus == 0, "producer: \(producer.log.suffix(2000))")
                let output = parseLoadOutput(producer.output)
                scenario.writes += output.writes
                scenario.sealed.formUnion(output.sealed)
            }
            let stats = try await proxy.stats(records: 0)

            // The faults stop; two drainers finish the work.
            try await proxy.configure([])
            let finals = try (1...2).map {
                try scenario.startDrainer(
                    ["--until-done", "--concurrency", "4", "--lease-seconds", "5"],
                    logPath: directory + "/drain-final-\($0).log")
            }
            for drainer in finals {
                let finished = await drainer.waitForExit(timeout: .seconds(180))
                if !finished { await drainer.killAndWait() }
                #expect(finished && drainer.exitStatus == 0, "final drainer: \(drainer.log.suffix(2000))")
            }

            let report = try await deliveryReport(scenario)
            let verify = try await runTool("spool-inspect", ["verify", "--spool", scenario.spoolDirectory, "--json"])
            let problems = (try? jsonObject(verify.stdout)["problems"] as? [[String: Any]])?.count ?? -1
            let audit = try await AuditSummary(try SpoolStore.open(scenario.spoolDirectory))
            let doubled = audit.deliveries.filter { $0.value != 1 }.count
            let bytes = scenario.writes.reduce(Int64(0)) { $0 + $1.size }
            print(
                "SOAK RESULT: \(parameters.seconds) s, \(parameters.producers) producers, seed \(parameters.seed): "
                    + "\(scenario.writes.count) resources (\(bytes) bytes) in \(scenario.sealed.count) bundles; "
                    + "\(kills) drainer SIGKILLs; proxy \(stats.requests) requests, faults "
                    + "\(stats.faults.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")); "
                    + "\(audit.reclaims) leases reclaimed, \(audit.alreadyInPlace) settled by HEAD; "
                    + "total \(ContinuousClock.now - started) | lost \(report.lost) duplicate-versions "
                    + "\(report.duplicates) corrupt \(report.corruptObjects.count) uploads-left "
                    + "\(report.uploadsLeft.count) verify \(verify.status == 0 ? "clean" : "exit \(verify.status), \(problems) problems") "
                    + "double-recorded \(doubled)")
            #expect(report.lost == 0, "lost: \(report.missingKeys.prefix(5)) \(report.spoolProblems.prefix(5))")
            #expect(report.duplicates == 0, "duplicates: \(report.duplicatedKeys) \(report.deleteMarkers)")
            #expect(report.corruptObjects.isEmpty, "corrupt: \(report.corruptObjects.prefix(5))")
            #expect(report.uploadsLeft.isEmpty, "uploads left: \(report.uploadsLeft)")
            #expect(
                report.unexpectedKeys.isEmpty && report.manifestProblems.isEmpty && report.spoolProblems.isEmpty,
                "\(report.unexpectedKeys.prefix(5)) \(report.manifestProblems.prefix(5)) \(report.spoolProblems.prefix(5))"
            )
            #expect(verify.status == 0, "spool-inspect verify: \(verify.stdout.prefix(2000)) \(verify.stderr)")
            #expect(doubled == 0, "resources with other than one resource.delivered event")
            #expect(kills >= 2, "the schedule killed no drainer")
            for fault in ["reset", "drop_response", "error500", "slowdown"] {
                #expect(stats.count(fault) > 0, "the proxy injected no \(fault)")
            }
            try? await proxy.stop()
        }
    }
}
