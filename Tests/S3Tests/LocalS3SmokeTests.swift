import Foundation
@testable import LocalS3Support
import Testing

@Suite("LocalS3: the local moto_server and the fault proxy in front of it")
struct LocalS3SmokeTests {
    @Test("The server starts once; a proxy forwards, injects the configured fault on the nth request and counts")
    func serverAndProxy() async throws {
        let server = try await LocalS3.shared.server()
        #expect(server.endpoint.hasPrefix("http://127.0.0.1:"))
        #expect(server.accessKeyID.hasPrefix("AKIA"))
        #expect(!server.secretAccessKey.isEmpty)
        #expect(server.region == "us-east-1")
        #expect(try await LocalS3.shared.server() == server)

        let shared = try await LocalS3.shared.faultProxy()
        #expect(shared.endpoint.hasPrefix("http://127.0.0.1:"))
        #expect(try await LocalS3.shared.faultProxy().endpoint == shared.endpoint)

        // The shared proxy's rules belong to the fault suites (which may be running right now): configure one of
        // this test's own.
        let proxy = try await LocalS3.shared.newFaultProxy()
        #expect(proxy.endpoint != shared.endpoint)
        do {
            try await checkProxy(proxy, server: server)
        } catch {
            try? await proxy.stop()
            throw error
        }
        try await proxy.stop()
    }

    private func checkProxy(_ proxy: FaultProxy, server: LocalS3.Server) async throws {
        try await proxy.configure(
            [FaultProxy.Rule(fault: "slowdown", nth: [2], method: "GET", pathRegex: "^/$")], seed: 7)

        // Unsigned requests: moto refuses them with 403, which is forwarded and counted all the same.
        var statuses: [Int] = []
        var bodies: [String] = []
        for _ in 0..<3 {
            let answer = try await LocalS3.httpRequest("GET", proxy.endpoint + "/")
            statuses.append(answer.status)
            bodies.append(answer.text)
        }
        #expect(statuses == [403, 503, 403])
        #expect(bodies[0].contains("<Code>AccessDenied</Code>"))
        #expect(bodies[1].contains("<Code>SlowDown</Code>"))
        // Straight to the server: not through the proxy, not counted.
        #expect(try await LocalS3.httpRequest("GET", server.endpoint + "/").status == 403)

        let stats = try await proxy.stats()
        #expect(stats.requests == 3)
        #expect(stats.forwarded == 2)
        #expect(stats.count("slowdown") == 1)
        #expect(stats.faults.values.reduce(0, +) == 1)
        #expect(stats.seed == 7)
        #expect(stats.rules.count == 1)
        #expect(
            stats.rules.first?.rule == FaultProxy.Rule(fault: "slowdown", nth: [2], method: "GET", pathRegex: "^/$"))
        #expect(stats.rules.first?.matched == 3)
        #expect(stats.rules.first?.fired == 1)
        #expect(
            stats.records == [
                FaultProxy.Record(n: 1, method: "GET", path: "/", fault: nil, rule: nil, status: 403),
                FaultProxy.Record(n: 2, method: "GET", path: "/", fault: "slowdown", rule: 0, status: 503),
                FaultProxy.Record(n: 3, method: "GET", path: "/", fault: nil, rule: nil, status: 403),
            ])
        #expect(try await proxy.stats(records: 1).records.map(\.n) == [3])

        try await proxy.reset()
        let cleared = try await proxy.stats()
        #expect(cleared.requests == 0 && cleared.forwarded == 0 && cleared.records.isEmpty)
        #expect(cleared.rules.first?.matched == 0)

        // A rule the proxy does not know is refused, and the rules stay as they were.
        await #expect(throws: LocalS3Error.self) {
            try await proxy.configure([FaultProxy.Rule(fault: "explode")])
        }
        #expect(try await proxy.stats().rules.count == 1)
    }

    @Test("uniquePrefix: the test's name, sanitized, and a random part; a valid bucket name")
    func prefixes() {
        let first = uniquePrefix()
        let second = uniquePrefix()
        #expect(first != second)
        #expect(first.hasPrefix("prefixes-"))
        let long = uniquePrefix("A Very_Long test name (with: punctuation) that goes on and on()")
        #expect(long.count <= 39)
        for prefix in [first, long] {
            #expect(prefix.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") })
            #expect(prefix.first != "-" && prefix.last != "-")
        }
    }

    @Test("parseExports reads what shlex.quote wrote")
    func exports() throws {
        let env = try LocalS3.parseExports(
            "export A=plain\nexport B='has space'\nexport C='it'\"'\"'s'\nexport D=x/y+z=\nnot an export\n")
        #expect(env == ["A": "plain", "B": "has space", "C": "it's", "D": "x/y+z="])
    }
}
