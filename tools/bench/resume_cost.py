#!/usr/bin/env python3
"""resume_cost.py — what a SIGKILL in the middle of a large multipart upload costs: the bytes sent again.

    .venv/bin/python tools/bench/resume_cost.py [--size 536870912] [--kill-at 0.5] [--bin DIR] [--json OUT]

A file of --size bytes is spooled for a bucket on a local moto_server, reached through tools/faultproxy.py (no faults:
it only counts the request body bytes it forwards). spool-drain starts; when the proxy has forwarded --kill-at of
the file, the drainer is killed with SIGKILL; a new drainer then finishes the upload. Reported: bytes forwarded
before and after the kill, the bytes sent beyond the object's size (partial parts in flight at the kill, plus
a few KiB of XML and _bundle.json), the parts S3 had acknowledged before the kill that were uploaded again (should
be 0: they are recorded as acknowledged and reused), and the object's SHA-256 checked against the file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drain_compare import REPO, TOOLS, log, s3_client, start_moto  # noqa: E402


def proxy_stats(endpoint: str) -> dict:
    with urllib.request.urlopen(endpoint + "/__faultproxy/stats?records=100000", timeout=10) as response:
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512 << 20)
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument("--bin", help="directory of spool-put and spool-drain (default: a release build)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    if args.bin:
        binaries = Path(args.bin)
    else:
        for product in ("spool-drain", "spool-put"):
            subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL)
        binaries = Path(subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO,
                                       check=True, stdout=subprocess.PIPE, text=True).stdout.strip())
    work = Path(tempfile.mkdtemp(prefix="resume-cost-"))
    server = start_moto(work)
    proxy = None
    try:
        port_file = work / "proxy.port"
        proxy = subprocess.Popen(
            [str(REPO / ".venv/bin/python"), str(TOOLS / "faultproxy.py"), "--upstream", server["AWS_ENDPOINT_URL"],
             "--port-file", str(port_file), "--parent-pid", str(os.getpid()), "--records", "100000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy_endpoint = f"http://127.0.0.1:{port_file.read_text().strip()}"
        client = s3_client(server)
        bucket = "resume-cost"
        client.create_bucket(Bucket=bucket)

        data = work / "large.bin"
        digest = hashlib.sha256()
        with open(data, "wb") as handle:
            left, counter = args.size, 0
            while left:
                piece = hashlib.sha512(counter.to_bytes(8, "big")).digest() * 16384  # 1 MiB, incompressible enough
                piece = piece[:min(left, len(piece))]
                handle.write(piece)
                digest.update(piece)
                left -= len(piece)
                counter += 1
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update({key: server[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")})
        spool = work / "spool"
        subprocess.run(
            [str(binaries / "spool-put"), "--spool", str(spool), "--bundle", "resume", "--url",
             "https://example.com/large.bin", "--bucket", bucket, "--endpoint", proxy_endpoint, "--region",
             server["AWS_REGION"], "--seal", str(data)], check=True, env=env, stdout=subprocess.DEVNULL)

        drain = [str(binaries / "spool-drain"), "--spool", str(spool), "--until-done", "--no-progress",
                 "--log-level", "warning"]
        first = subprocess.Popen(drain, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = int(args.size * args.kill_at)
        while proxy_stats(proxy_endpoint)["request_body_bytes"] < target:
            if first.poll() is not None:
                raise RuntimeError("the drainer finished before the kill point; use a larger --size")
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        # What the killed process had in its socket buffers still reaches the proxy: count it before the reset.
        before = proxy_stats(proxy_endpoint)
        while True:
            time.sleep(0.5)
            settled = proxy_stats(proxy_endpoint)
            if settled["request_body_bytes"] == before["request_body_bytes"]:
                break
            before = settled
        acknowledged = {
            int(match.group(1)) for record in before["records"]
            if record["method"] == "PUT" and record["status"] == 200
            and (match := re.search(r"[?&]partNumber=(\d+)", record["path"]))
        }
        urllib.request.urlopen(urllib.request.Request(proxy_endpoint + "/__faultproxy/reset", method="POST"))
        second = subprocess.run(drain, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if second.returncode != 0:
            raise RuntimeError(f"the second drainer failed: {second.stderr[-2000:]}")
        after = proxy_stats(proxy_endpoint)
        uploaded_again = sorted(
            int(match.group(1)) for record in after["records"]
            if record["method"] == "PUT" and (match := re.search(r"[?&]partNumber=(\d+)", record["path"]))
            and int(match.group(1)) in acknowledged)
        keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        key = next(key for key in keys if key.endswith("large.bin"))
        stored = hashlib.sha256()
        for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
            stored.update(chunk)
        result = {
            "object_bytes": args.size,
            "part_bytes": 8 << 20,
            "sent_before_kill": before["request_body_bytes"],
            "sent_after_restart": after["request_body_bytes"],
            "sent_beyond_object": before["request_body_bytes"] + after["request_body_bytes"] - args.size,
            "parts_acknowledged_before_kill": len(acknowledged),
            "acknowledged_parts_uploaded_again": uploaded_again,
            "sha256_matches": stored.hexdigest() == digest.hexdigest(),
            "multipart_uploads_left": len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])),
        }
        result["sent_beyond_object_in_parts"] = result["sent_beyond_object"] / result["part_bytes"]
        text = json.dumps(result, indent=2)
        if args.json:
            Path(args.json).write_text(text + "\n")
        print(text)
        return 0 if result["sha256_matches"] and not uploaded_again else 1
    finally:
        if proxy:
            proxy.kill()
        subprocess.run([str(TOOLS / "moto"), "stop", "--dir", str(work / "moto")], stdout=subprocess.DEVNULL)
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
