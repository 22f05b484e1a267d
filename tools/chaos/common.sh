# tools/chaos/common.sh — shared by the chaos scripts (sourced, not run).
#
# The scripts run the same Swift test suites the test suite runs in their short form, with their parameters in the
# environment, and print the figure lines those suites print. So the figures in docs/RELIABILITY.md and the tests
# come from one piece of code.

chaos_tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chaos_repo=$(dirname "$chaos_tools_dir")
cd "$chaos_repo"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

chaos_say() { printf '%s: %s\n' "$chaos_name" "$*"; }

# Builds the tests and the tools (debug), once; with release=1 also the tools in release, which the tests then run.
chaos_build() {
    "$chaos_tools_dir/setup"
    swift build --build-tests >/dev/null
    PIPELINE_BIN_DIR=$(swift build --show-bin-path)
    if [[ "${release:-0}" == 1 ]]; then
        swift build -c release >/dev/null
        PIPELINE_BIN_DIR=$(swift build -c release --show-bin-path)
    fi
    export PIPELINE_BIN_DIR
}

# Runs the test suites matching $1 and prints the lines matching $2 (the figures); returns swift test's status.
chaos_run() {
    local filter=$1 figures=$2 log
    log=$(mktemp)
    local status=0
    swift test --skip-build --filter "$filter" >"$log" 2>&1 || status=$?
    grep -E "$figures" "$log" || true
    if ((status != 0)); then
        grep -E '✘' "$log" | head -20 >&2
        chaos_say "FAILED (swift test exit $status); full output: $log"
    else
        rm -f "$log"
    fi
    return "$status"
}
