import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A pid no process has: beyond the kernel's pid_max, so none can be given it while a test runs (a fixed number
/// such as 999 999 may belong to a live process on a machine with a large pid_max). Nil if one is alive even there.
public func unusedPID() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8),
        let max = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    else { return 999_999_999 }
    let pid = max + 12_345
    // Signal 0 probes without signalling: ESRCH means no such process (EPERM would mean one we may not signal).
    return kill(pid_t(pid), 0) != 0 && errno == ESRCH ? pid : nil
}
