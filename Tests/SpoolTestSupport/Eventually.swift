/// Polls `condition` every 50 ms until it holds; false when `timeout` passed first.
///
/// Tests wait for what they are about to check instead of sleeping a fixed time: on a loaded machine a fixed sleep
/// is sometimes too short.
public func eventually(
    timeout: Duration = .seconds(30), _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}
