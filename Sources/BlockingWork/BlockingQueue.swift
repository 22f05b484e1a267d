import Dispatch

/// Where calls that block a thread run: file I/O with fsync, libcurl's easy interface, waiting for a child program.
///
/// Never on the pool Swift's tasks run on. On Linux that pool is libdispatch's global root queue, as wide as the
/// machine has cores, and a queue made with `.concurrent` feeds the same width-limited pool (measured on the
/// development VM: eight one-second sleeps on `DispatchQueue.global()` took 3 s, on a private concurrent queue 2 s).
/// Two blocked calls on a two-core machine would then hold up every task in the process — lease renewals, time
/// limits, other transfers — and cap concurrent transfers at the core count. A serial queue feeds libdispatch's
/// overcommitting pool instead, which starts a thread whenever none is idle (the same eight sleeps: 1 s), so every
/// call gets a serial queue of its own. Idle threads are kept for reuse; libdispatch bounds the pool (255 threads).
package struct BlockingQueue: Sendable {
    /// The label each call's queue carries (seen in debuggers and crash reports).
    package let label: String

    /// Calls labelled `label`.
    package init(label: String) {
        self.label = label
    }

    /// Starts `body` on a thread of its own and returns at once.
    package func async(execute body: @escaping @Sendable () -> Void) {
        DispatchQueue(label: label).async(execute: body)
    }

    /// Runs `body` on a thread of its own and returns (or throws) what it did.
    package func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Runs `body` on a thread of its own and returns its result.
    package func value<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            async { continuation.resume(returning: body()) }
        }
    }
}
