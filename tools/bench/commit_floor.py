#!/usr/bin/env python3
"""commit_floor.py — what SQLite alone can do with the spool's schema, beside what the library does, in one run.

    python3 tools/bench/commit_floor.py [--bench PATH] [--count 20000] [--batch 8] [--rounds 2]
        [--without-audit] [--drop-index NAME ...]

The 4 KiB × 8 writers `batched` target asks for 4× the fsync rate. This measures the floor under any writer path:
a bare single-threaded loop that runs exactly the statements one group commit runs (the bundle's sequence update,
then per resource the `resources`, `payloads` and `audit_events` inserts), 8 resources per transaction, on a copy of
a real spool index (made by `spool-bench`, so it has the current schema), with `synchronous = FULL` in WAL mode. No
validation, no hashing, no threads. Then `spool-bench write --size 4KiB --writers 8 --durability batched` on the same
filesystem. Each is set beside the fsync'd-4-KiB-append rate measured right before and after it.

`--without-audit` and `--drop-index` show what the schema costs (an experiment: the drainer needs those indexes and the
audit trail needs its rows). The spool and scratch files live in a new directory under $TMPDIR, removed afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fsync_rate(directory: Path, count: int = 2000) -> float:
    """fsync'd 4 KiB appends per second, as spool-bench's probe measures them."""
    path = directory / "fsync-probe"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = os.urandom(4096)
    started = time.perf_counter()
    for _ in range(count):
        os.write(descriptor, block)
        os.fsync(descriptor)
    elapsed = time.perf_counter() - started
    os.close(descriptor)
    path.unlink()
    return count / elapsed


def bare_loop(index: Path, count: int, batch: int, without_audit: bool, drop: list[str]) -> float:
    """Resources per second committed by the bare loop."""
    connection = sqlite3.connect(index, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    for name in drop:
        connection.execute(f'DROP INDEX "{name}"')
    bundle = connection.execute("SELECT id FROM bundles").fetchone()[0]
    connection.execute("UPDATE bundles SET state = 'open'")
    payload = os.urandom(4096)
    now = int(time.time() * 1000)
    done = 0
    started = time.perf_counter()
    while done < count:
        connection.execute("BEGIN IMMEDIATE")
        last, prefix, destination = connection.execute(
            "UPDATE bundles SET last_seq = last_seq + ?, updated_at = ? WHERE id = ? AND state = 'open' "
            "RETURNING last_seq, key_prefix, destination_id", (batch, now, bundle)).fetchone()
        for seq in range(last - batch + 1, last + 1):
            cursor = connection.execute(
                "INSERT INTO resources (bundle_id, seq, kind, destination_id, object_key, name, url, content_type, "
                "status_code, metadata, size, sha256, crc32c, payload_storage, payload_path, state, next_attempt_at, "
                "spooled_at, updated_at) VALUES (?, ?, 'resource', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, "
                "?, ?)",
                (bundle, seq, destination, f"{prefix}{bundle}/{seq:08d}-r", "r", f"https://example.com/r/{seq}",
                 "application/octet-stream", 200, "{}", len(payload), "ab" * 32, 12345, "inline", None, now, now,
                 now))
            resource = cursor.lastrowid
            connection.execute("INSERT INTO payloads (resource_id, bytes) VALUES (?, ?)", (resource, payload))
            if not without_audit:
                connection.execute(
                    "INSERT INTO audit_events (at, actor_user, actor_host, actor_pid, action, bundle_id, resource_id, "
                    "detail) VALUES (?, ?, ?, ?, 'resource.spooled', ?, ?, ?)",
                    (now, "bench", "localhost", os.getpid(), bundle, resource, '{"size":"4096","to":"pending"}'))
        connection.execute("COMMIT")
        done += batch
    elapsed = time.perf_counter() - started
    connection.close()
    return done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", help="a release build of spool-bench (default: build one)")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="bare loop and spool-bench alternated this many times")
    parser.add_argument("--without-audit", action="store_true")
    parser.add_argument("--drop-index", action="append", default=[])
    parser.add_argument("--json", help="write the results here")
    arguments = parser.parse_args()

    bench = arguments.bench
    if not bench:
        subprocess.run(["swift", "build", "-c", "release", "--product", "spool-bench"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        binaries = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO, check=True,
                                  capture_output=True, text=True).stdout.strip()
        bench = str(Path(binaries) / "spool-bench")

    results = []
    with tempfile.TemporaryDirectory(prefix="commit-floor-") as scratch:
        work = Path(scratch)
        template = work / "template"
        # A spool with the current schema, one bundle and a destination; its index is copied for every bare run.
        subprocess.run([bench, "write", "--count", "1", "--keep", "--no-raw", "--spool", str(template)], check=True,
                       stdout=subprocess.DEVNULL)
        index = next(template.rglob("spool.db"))
        checkpoint = sqlite3.connect(index)
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        for round_number in range(1, arguments.rounds + 1):
            run = work / f"bare-{round_number}"
            run.mkdir()
            shutil.copy(index, run / "spool.db")
            before = fsync_rate(work)
            rate = bare_loop(run / "spool.db", arguments.count, arguments.batch, arguments.without_audit,
                             arguments.drop_index)
            after = fsync_rate(work)
            shutil.rmtree(run)
            results.append({"what": "bare SQLite loop", "resources_per_second": rate,
                            "fsync_per_second": (before + after) / 2})
            before = fsync_rate(work)
            output = subprocess.run(
                [bench, "write", "--size", "4KiB", "--count", str(arguments.count), "--writers", "8",
                 "--durability", "batched", "--no-raw", "--json", "--spool", str(work / f"library-{round_number}")],
                check=True, capture_output=True, text=True).stdout
            after = fsync_rate(work)
            results.append({"what": "spool-bench, 8 writers batched",
                            "resources_per_second": json.loads(output)["resources_per_second"],
                            "fsync_per_second": (before + after) / 2})
            bare, library = results[-2], results[-1]
            for result in (bare, library):
                ratio = result["resources_per_second"] / result["fsync_per_second"]
                print(f"round {round_number}  {result['what']:32} {result['resources_per_second']:8.0f}/s  "
                      f"fsync {result['fsync_per_second']:6.0f}/s -> {ratio:.2f}x", flush=True)
            print(f"round {round_number}  library / bare loop: "
                  f"{library['resources_per_second'] / bare['resources_per_second']:.2f}", flush=True)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"batch": arguments.batch, "without_audit": arguments.without_audit,
                                                    "dropped_indexes": arguments.drop_index, "runs": results},
                                                   indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
