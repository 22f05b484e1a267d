#!/usr/bin/env python3
"""faultproxy_selftest.py — check tools/faultproxy.py against a real moto_server, with boto3 and curl.

    .venv/bin/python tools/faultproxy_selftest.py [--keep] [--big-mib N]
    tools/faultproxy selftest                      (the same, via the launcher)

Starts moto (`tools/moto start`, SigV4 auth on) and the proxy in front of it (both exit with this
process: --parent-pid), then checks the passthrough (PUT/GET/HEAD/DELETE of a 20 MiB object, an
HTTP-chunked upload, a multipart upload, keep-alive, a --big-mib (100) MiB upload streamed through
without the proxy's memory growing) and each fault, with boto3 (path-style, retries off) and, when
/usr/bin/curl exists, with curl (libcurl, as the Swift client uses: Expect: 100-continue, chunked).
Prints one `ok`/`FAIL` line per check; exit 0 only when all pass. Needs the venv (tools/setup).
Everything talks to 127.0.0.1 only; proxy variables in the environment are removed.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(_name, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

import boto3  # noqa: E402
import botocore.exceptions  # noqa: E402
from botocore.auth import S3SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

TOOLS = Path(__file__).resolve().parent
MiB = 1024 * 1024
failures = 0


def check(name: str, ok: bool, detail: str = "") -> bool:
    global failures
    print(f"{'ok  ' if ok else 'FAIL'} {name}{' — ' + detail if detail else ''}", flush=True)
    if not ok:
        failures += 1
    return ok


def payload(size: int, seed: int) -> bytes:
    """Deterministic bytes that are not one repeated block (so misplaced pieces are caught)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    out = bytearray()
    i = 0
    while len(out) < size:
        out += block[i % 64 :] + block[: i % 64]
        i += 1
    return bytes(out[:size])


def outcome(call) -> tuple[str, object]:
    """("ok", result) | ("client-error", (status, code)) | ("connection-error", name) | ("timeout", name)
    | ("other", repr)."""
    try:
        return "ok", call()
    except botocore.exceptions.ClientError as e:
        return "client-error", (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
    except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError) as e:
        return "timeout", type(e).__name__
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as e:
        return "connection-error", type(e).__name__
    except Exception as e:  # noqa: BLE001
        return "other", f"{type(e).__name__}: {e}"


class Control:
    """The proxy's control endpoint, over http.client (never through any configured HTTP proxy)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, f"/__faultproxy/{path}", body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def configure(self, rules: list[dict], seed: int | None = 1) -> None:
        status, answer = self.call("POST", "config", {"rules": rules, **({"seed": seed} if seed is not None else {})})
        if status != 200:
            raise RuntimeError(f"configure: {status} {answer}")

    def stats(self) -> dict:
        return self.call("GET", "stats")[1]

    def reset(self) -> None:
        self.call("POST", "reset")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument("--big-mib", type=int, default=100, help="size of the streaming check's upload (100)")
    args = parser.parse_args()

    run_dir = Path(tempfile.mkdtemp(prefix="faultproxy-selftest."))
    started = subprocess.run(
        [str(TOOLS / "moto"), "start", "--dir", str(run_dir), "--parent-pid", str(os.getpid())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if started.returncode != 0:
        print(f"FAIL moto start — {started.stderr.strip()}")
        return 1
    env = {}
    for line in (run_dir / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    proxy_log = open(run_dir / "faultproxy.log", "w")
    proxy = subprocess.Popen(
        [sys.executable, str(TOOLS / "faultproxy.py"), "--upstream", env["AWS_ENDPOINT_URL"],
         "--parent-pid", str(os.getpid()), "--verbose"],
        stdout=subprocess.PIPE,
        stderr=proxy_log,
        text=True,
    )
    try:
        first = proxy.stdout.readline().split()
        if len(first) != 2 or first[0] != "LISTENING":
            print(f"FAIL faultproxy start — first line {first!r}")
            return 1
        port = int(first[1])
        print(f"moto on {env['AWS_ENDPOINT_URL']} (pid {env['MOTO_PID']}), faultproxy on 127.0.0.1:{port} "
              f"(pid {proxy.pid}); logs in {run_dir}", flush=True)
        run_checks(port, env, Control(port), proxy.pid, args.big_mib)
    finally:
        proxy.terminate()
        proxy.wait(5)
        subprocess.run([str(TOOLS / "moto"), "stop", "--pid", env["MOTO_PID"]], check=False)
        proxy_log.close()
    if failures:
        print(f"faultproxy selftest: FAILED ({failures} checks); logs kept in {run_dir}")
        return 1
    if args.keep:
        print(f"faultproxy selftest: PASSED; logs kept in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        print("faultproxy selftest: PASSED")
    return 0


def run_checks(port: int, env: dict, ctl: Control, proxy_pid: int, big_mib: int) -> None:
    endpoint = f"http://127.0.0.1:{port}"
    key_id, secret, region = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_REGION"]

    def client(read_timeout: float = 30):
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 1},
                connect_timeout=5,
                read_timeout=read_timeout,
                tcp_keepalive=False,
            ),
        )

    s3 = client()
    bucket = "faultproxy-selftest"

    def exists(key: str) -> bool:
        kind, result = outcome(lambda: s3.head_object(Bucket=bucket, Key=key))
        if kind == "client-error" and result[0] == 404:
            return False
        if kind != "ok":
            raise RuntimeError(f"head_object {key}: {kind} {result}")
        return True

    def last_record() -> dict:
        return ctl.stats()["records"][-1]

    # --- control endpoint ---
    status, answer = ctl.call("POST", "config", {"rules": [{"fault": "explode"}]})
    check("control: an unknown fault is refused with 400", status == 400 and "fault" in answer.get("error", ""),
          f"{status} {answer}")
    status, answer = ctl.call("POST", "config", {"rules": [{"fault": "reset", "probabilty": 1}]})
    check("control: a misspelt rule key is refused with 400", status == 400, f"{status} {answer}")
    ctl.configure([{"fault": "slowdown", "nth": [2, 5], "method": "GET"}], seed=7)
    status, answer = ctl.call("GET", "config")
    check("control: GET config returns the rules and seed",
          answer == {"rules": [{"fault": "slowdown", "nth": [2, 5], "method": "GET"}], "seed": 7}, str(answer))
    stats = ctl.stats()
    check("control: control requests are not counted", stats["requests"] == 0 and stats["forwarded"] == 0,
          f"requests {stats['requests']}, forwarded {stats['forwarded']}")
    ctl.configure([])

    # --- passthrough ---
    kind, result = outcome(lambda: s3.create_bucket(Bucket=bucket))
    check("passthrough: CreateBucket through the proxy", kind == "ok", "" if kind == "ok" else f"{kind} {result}")

    body = payload(20 * MiB, 1)
    kind, result = outcome(lambda: s3.put_object(Bucket=bucket, Key="big", Body=body))
    check("passthrough: PutObject of 20 MiB", kind == "ok", "" if kind == "ok" else f"{kind} {result}")
    kind, result = outcome(lambda: s3.get_object(Bucket=bucket, Key="big")["Body"].read())
    check("passthrough: GetObject returns the 20 MiB byte-exact", kind == "ok" and result == body,
          f"{kind}, {len(result) if isinstance(result, bytes) else result}")
    kind, result = outcome(lambda: s3.head_object(Bucket=bucket, Key="big")["ContentLength"])
    check("passthrough: HeadObject says 20 MiB (and no body is relayed)", kind == "ok" and result == 20 * MiB,
          f"{kind} {result}")
    kind, result = outcome(lambda: s3.get_object(Bucket=bucket, Key="big", Range="bytes=100-199")["Body"].read())
    check("passthrough: a ranged GET on the same keep-alive connection after the HEAD",
          kind == "ok" and result == body[100:200], f"{kind}")

    chunked = payload(20 * MiB, 2)
    status, _ = raw_put(port, "/" + bucket + "/chunked", chunk_stream(chunked, 1 * MiB + 7), key_id, secret, region,
                        chunked=True)
    kind, result = outcome(lambda: s3.get_object(Bucket=bucket, Key="chunked")["Body"].read())
    check("passthrough: a Transfer-Encoding: chunked PUT of 20 MiB round-trips byte-exact",
          status == 200 and kind == "ok" and result == chunked,
          f"PUT {status}, GET {kind} {len(result) if isinstance(result, bytes) else result}")

    kind, result = outcome(lambda: s3.delete_object(Bucket=bucket, Key="chunked"))
    check("passthrough: DeleteObject", kind == "ok" and not exists("chunked"), f"{kind}")

    before = ctl.stats()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = []
    for _ in range(3):
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
    conn.close()
    after = ctl.stats()
    check("passthrough: keep-alive — 3 unsigned GET / on one connection each get 403",
          statuses == [403, 403, 403] and after["connections"] - before["connections"] == 1
          and after["forwarded"] - before["forwarded"] == 3,
          f"{statuses}, {after['connections'] - before['connections']} connection(s)")

    def multipart() -> bytes:
        parts_data = [payload(5 * MiB, 10), payload(5 * MiB, 11), payload(1 * MiB + 3, 12)]
        upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
        parts = []
        for number, data in enumerate(parts_data, 1):
            etag = s3.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=number, Body=data)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=upload, MultipartUpload={"Parts": parts})
        return b"".join(parts_data)

    kind, expected = outcome(multipart)
    got = s3.get_object(Bucket=bucket, Key="multi")["Body"].read() if kind == "ok" else None
    check("passthrough: multipart upload (5 MiB + 5 MiB + 1 MiB) and GET byte-exact",
          kind == "ok" and got == expected, f"{kind} {expected if kind != 'ok' else ''}")

    # --- faults (boto3) ---
    small = payload(256 * 1024, 3)
    ctl.reset()
    ctl.configure([{"fault": "reset", "nth": 1, "method": "PUT"}])
    kind, result = outcome(lambda: s3.put_object(Bucket=bucket, Key="reset-put", Body=small))
    record = last_record()
    stats = ctl.stats()
    check("reset: PutObject gets a connection error", kind == "connection-error", f"{kind} {result}")
    check("reset: the request did not reach the server (not forwarded, object absent)",
          record["fault"] == "reset" and stats["forwarded"] == 0 and not exists("reset-put"),
          f"record {record}, forwarded {stats['forwarded']}")

    ctl.configure([{"fault": "reset", "nth": 1}])
    kind, result = outcome(lambda: s3.get_object(Bucket=bucket, Key="big"))
    check("reset: GetObject (no request body) gets a connection error", kind == "connection-error", f"{kind} {result}")

    ctl.configure([{"fault": "drop_response", "nth": 1, "method": "PUT"}])
    kind, result = outcome(lambda: s3.put_object(Bucket=bucket, Key="dropped", Body=small))
    check("drop_response: PutObject gets a connection error", kind == "connection-error", f"{kind} {result}")
    kind, got = outcome(lambda: s3.get_object(Bucket=bucket, Key="dropped")["Body"].read())
    check("drop_response: ... but the object exists on the server, complete", kind == "ok" and got == small,
          f"{kind}")

    ctl.configure([{"fault": "error500", "nth": 1, "method": "PUT"}])
    kind, result = outcome(lambda: s3.put_object(Bucket=bucket, Key="e500", Body=small))
    check("error500: PutObject gets 500 InternalError", kind == "client-error" and result == (500, "InternalError"),
          f"{kind} {result}")
    check("error500: the object was not created", not exists("e500"))
    kind, result = outcome(lambda: s3.put_object(Bucket=bucket, Key="e500", Body=small))
    check("error500: the next PutObject succeeds", kind == "ok", "" if kind == "ok" else f"{kind} {result}")

    # Without Expect: 100-continue the proxy reads the body away and keeps the connection.
    ctl.configure([{"fault": "error500", "nth": 1}])
    before = ctl.stats()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("PUT", f"/{bucket}/no-expect", body=payload(3 * MiB, 6))  # unsigned: moto would say 403
    resp = conn.getresponse()
    first = (resp.status, resp.getheader("Connection"), b"<Code>InternalError</Code>" in resp.read())
    conn.request("GET", "/")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    after = ctl.stats()
    check("error500 without Expect: 500 after reading the 3 MiB body; the connection takes the next request",
          first == (500, None, True) and resp.status == 403 and after["connections"] - before["connections"] == 1,
          f"{first}, then {resp.status}, {after['connections'] - before['connections']} connection(s)")
    ctl.configure([{"fault": "error500", "nth": 1, "method": "HEAD"}])
    kind, result = outcome(lambda: s3.head_object(Bucket=bucket, Key="e500"))
    kind2, _ = outcome(lambda: s3.head_object(Bucket=bucket, Key="e500"))
    check("error500: HeadObject gets 500 (no body), the next HEAD succeeds",
          kind == "client-error" and result[0] == 500 and kind2 == "ok", f"{kind} {result}, then {kind2}")

    ctl.configure([{"fault": "slowdown", "nth": 1}])
    kind, result = outcome(lambda: s3.get_object(Bucket=bucket, Key="big"))
    check("slowdown: GetObject gets 503 SlowDown", kind == "client-error" and result == (503, "SlowDown"),
          f"{kind} {result}")
    ctl.configure([{"fault": "slowdown", "nth": 1}])
    kind, result = outcome(lambda: s3.put_object(Bucket=bucket, Key="slow", Body=payload(3 * MiB, 4)))
    check("slowdown: a 3 MiB PutObject gets 503 SlowDown", kind == "client-error" and result == (503, "SlowDown"),
          f"{kind} {result}")

    impatient = client(read_timeout=1)
    ctl.configure([{"fault": "stall", "seconds": 2, "nth": 1}])
    t0 = time.monotonic()
    kind, result = outcome(lambda: impatient.get_object(Bucket=bucket, Key="big"))
    elapsed = time.monotonic() - t0
    check("stall 2 s: GetObject with read_timeout=1 times out", kind == "timeout" and elapsed < 1.9,
          f"{kind} {result} after {elapsed:.1f}s")
    # A PUT: botocore waits 1 s for a 100 Continue (none comes), sends the body, then waits for the
    # response for read_timeout = 1 s: at 2 s that races with the stall's end, so stall 3 s here.
    ctl.configure([{"fault": "stall", "seconds": 3, "nth": 1, "method": "PUT"}])
    kind, result = outcome(lambda: impatient.put_object(Bucket=bucket, Key="stalled", Body=small))
    check("stall 3 s: PutObject with read_timeout=1 times out, object not created",
          kind == "timeout" and not exists("stalled"), f"{kind} {result}")

    ctl.configure([{"fault": "stall_mid_response", "seconds": 2, "nth": 1}])

    def read_stalled():
        resp = impatient.get_object(Bucket=bucket, Key="big")
        return resp["Body"].read()

    kind, result = outcome(read_stalled)
    check("stall_mid_response: GetObject's body read times out", kind in ("timeout", "connection-error"),
          f"{kind} {result}")

    ctl.configure([{"fault": "stall_mid_request", "seconds": 2, "nth": 1}])
    kind, result = outcome(lambda: impatient.put_object(Bucket=bucket, Key="midreq", Body=payload(8 * MiB, 5)))
    check("stall_mid_request: an 8 MiB PutObject fails, object not created",
          kind in ("timeout", "connection-error") and not exists("midreq"), f"{kind} {result}")

    ctl.configure([{"fault": "delay", "seconds": 0.5, "nth": 1}])
    t0 = time.monotonic()
    kind, _ = outcome(lambda: s3.head_object(Bucket=bucket, Key="big"))
    elapsed = time.monotonic() - t0
    check("delay 0.5 s: HeadObject succeeds after >= 0.5 s", kind == "ok" and elapsed >= 0.5, f"{elapsed:.2f}s")

    ctl.configure([{"fault": "delay_response", "seconds": 3, "nth": 1, "method": "PUT"}])
    kind, result = outcome(lambda: impatient.put_object(Bucket=bucket, Key="late", Body=small))
    check("delay_response 3 s: PutObject with read_timeout=1 times out, yet the object was created",
          kind == "timeout" and exists("late"), f"{kind} {result}")
    ctl.configure([{"fault": "delay_response", "seconds": 0.5, "nth": 1}])
    t0 = time.monotonic()
    kind, _ = outcome(lambda: s3.head_object(Bucket=bucket, Key="big"))
    elapsed = time.monotonic() - t0
    check("delay_response 0.5 s: HeadObject succeeds after >= 0.5 s", kind == "ok" and elapsed >= 0.5,
          f"{elapsed:.2f}s")

    # --- rule selection ---
    ctl.reset()
    ctl.configure([{"fault": "slowdown", "nth": [2, 4], "method": "GET", "path_regex": "/big$"}])
    results = []
    for _ in range(5):
        s3.head_object(Bucket=bucket, Key="big")  # not matched by the filter
        kind, result = outcome(lambda: s3.get_object(Bucket=bucket, Key="big", Range="bytes=0-9")["Body"].read())
        results.append(result[0] if kind == "client-error" else 200 if kind == "ok" else kind)
    check("nth [2,4] with a method and path filter: GETs get 200 503 200 503 200", results == [200, 503, 200, 503, 200],
          str(results))
    stats = ctl.stats()
    check("stats: 10 requests, 8 forwarded, 2 slowdowns, rule matched 5 fired 2",
          stats["requests"] == 10 and stats["forwarded"] == 8 and stats["faults"]["slowdown"] == 2
          and stats["rules"][0]["matched"] == 5 and stats["rules"][0]["fired"] == 2
          and [r["n"] for r in stats["records"]] == list(range(1, 11)),
          f"requests {stats['requests']}, forwarded {stats['forwarded']}, faults {stats['faults']['slowdown']}, "
          f"rule {stats['rules'][0]}")

    def sequence(seed: int) -> list[bool]:
        ctl.configure([{"fault": "error500", "probability": 0.5, "method": "HEAD"}], seed=seed)
        return [outcome(lambda: s3.head_object(Bucket=bucket, Key="big"))[0] != "ok" for _ in range(20)]

    first, second = sequence(42), sequence(42)
    check("probability 0.5 with seed 42: some but not all of 20 HEADs fail, the same ones again",
          0 < sum(first) < 20 and first == second, "".join("x" if f else "." for f in first))

    ctl.configure([{"fault": "error500", "method": "HEAD", "times": 2}])
    results = [outcome(lambda: s3.head_object(Bucket=bucket, Key="big"))[0] for _ in range(4)]
    check("times 2 (no probability, no nth): the first 2 HEADs fail, then none",
          results == ["client-error", "client-error", "ok", "ok"], str(results))

    ctl.configure([{"fault": "error500", "nth": 1}, {"fault": "slowdown", "nth": [1, 2]}])
    results = [outcome(lambda: s3.head_object(Bucket=bucket, Key="big"))[1] for _ in range(3)]
    results = [r[0] if isinstance(r, tuple) else "ok" for r in results]
    check("several rules: the first that fires wins, all count", results == [500, 503, "ok"], str(results))
    ctl.configure([])

    # --- curl (libcurl, as the Swift client) ---
    if shutil.which("curl"):
        curl_checks(port, bucket, key_id, secret, region, ctl, exists)
    else:
        print("skip curl checks: no curl on PATH")

    # --- streaming: a big upload does not grow the proxy ---
    big = big_mib * MiB
    digest = hashlib.md5()
    t0 = time.monotonic()
    status, _ = raw_put(port, f"/{bucket}/huge", counted_stream(big, digest), key_id, secret, region,
                        content_length=big)
    elapsed = time.monotonic() - t0
    head = outcome(lambda: s3.head_object(Bucket=bucket, Key="huge"))
    etag_ok = head[0] == "ok" and head[1]["ETag"].strip('"') == digest.hexdigest()
    hwm = peak_rss_mib(proxy_pid)
    check(f"streaming: a {big_mib} MiB PUT goes through (ETag = MD5) with the proxy's peak RSS < 64 MiB",
          status == 200 and etag_ok and hwm is not None and hwm < 64,
          f"PUT {status} in {elapsed:.1f}s, peak RSS {hwm} MiB")
    s3.delete_object(Bucket=bucket, Key="huge")


def curl_checks(port, bucket, key_id, secret, region, ctl, exists) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="faultproxy-curl."))
    try:
        src = tmp / "src"
        data = payload(4 * MiB, 20)
        src.write_bytes(data)
        base = ["curl", "--noproxy", "*", "-sS", "-o", str(tmp / "out"), "-w", "%{http_code}",
                "--aws-sigv4", f"aws:amz:{region}:s3", "--user", f"{key_id}:{secret}",
                "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "--max-time", "20"]

        def curl(*extra, stdin: bytes | None = None) -> tuple[int, str, float]:
            t0 = time.monotonic()
            done = subprocess.run([*base, *extra], input=stdin, capture_output=True)
            return done.returncode, done.stdout.decode().strip(), time.monotonic() - t0

        url = f"http://127.0.0.1:{port}/{bucket}"
        code, http_status, _ = curl("-T", str(src), f"{url}/curl-put")
        got = (tmp / "out").read_bytes() if code == 0 else b""
        code2, status2, _ = curl(f"{url}/curl-put")
        check("curl: PUT of 4 MiB (Expect: 100-continue) and GET round-trip",
              (code, http_status, code2, status2) == (0, "200", 0, "200") and (tmp / "out").read_bytes() == data,
              f"PUT exit {code} HTTP {http_status}, GET exit {code2} HTTP {status2}")
        code, http_status, _ = curl("-T", "-", f"{url}/curl-chunked", stdin=data)
        kind_ok = exists("curl-chunked")
        code2, status2, _ = curl(f"{url}/curl-chunked")
        check("curl: PUT from stdin (Transfer-Encoding: chunked) round-trips",
              (code, http_status, code2, status2) == (0, "200", 0, "200") and kind_ok
              and (tmp / "out").read_bytes() == data, f"PUT exit {code} HTTP {http_status}")

        for fault, want_code, want_status in (("reset", {52, 55, 56}, None), ("error500", {0}, "500"),
                                              ("slowdown", {0}, "503"), ("drop_response", {52, 55, 56}, None)):
            ctl.configure([{"fault": fault, "nth": 1, "method": "PUT"}])
            key = f"curl-{fault}"
            code, http_status, elapsed = curl("-T", str(src), f"{url}/{key}")
            created = exists(key)
            status_ok = want_status is None or http_status == want_status
            check(f"curl: {fault} on a 4 MiB PUT ends at once (exit {sorted(want_code)}"
                  f"{', HTTP ' + want_status if want_status else ''}), object "
                  f"{'created' if fault == 'drop_response' else 'not created'}",
                  code in want_code and status_ok and elapsed < 5 and created == (fault == "drop_response"),
                  f"exit {code}, HTTP {http_status}, {elapsed:.1f}s, created {created}")
        ctl.configure([{"fault": "stall", "seconds": 3, "nth": 1}])
        code, http_status, elapsed = curl("--speed-limit", "1", "--speed-time", "1", f"{url}/curl-put")
        check("curl: stall 3 s is caught by --speed-limit 1 --speed-time 1 (exit 28)", code == 28 and elapsed < 2.9,
              f"exit {code}, {elapsed:.1f}s")
        ctl.configure([])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- raw signed requests (chunked bodies, streamed bodies) --------------------------------------------


def raw_put(port, path, body_iter, key_id, secret, region, chunked=False, content_length=None) -> tuple[int, bytes]:
    """A SigV4-signed (UNSIGNED-PAYLOAD) PUT over http.client, with a streamed body."""
    url = f"http://127.0.0.1:{port}{path}"
    headers = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    if content_length is not None:
        headers["Content-Length"] = str(content_length)
    request = AWSRequest(method="PUT", url=url, headers=headers)
    S3SigV4Auth(Credentials(key_id, secret), "s3", region).add_auth(request)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("PUT", path, skip_accept_encoding=True, skip_host=True)
        if "host" not in {name.lower() for name in request.headers.keys()}:
            conn.putheader("Host", f"127.0.0.1:{port}")  # what S3SigV4Auth signed (from the URL)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for piece in body_iter:
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def chunk_stream(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def counted_stream(total: int, digest):
    block = payload(MiB, 99)
    sent = 0
    while sent < total:
        piece = block[: total - sent]
        digest.update(piece)
        sent += len(piece)
        yield piece


def peak_rss_mib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


if __name__ == "__main__":
    sys.exit(main())
