#!/usr/bin/env python3
"""drain_compare.py — spool-drain beside `aws s3 cp --recursive` and `rclone copy`, in one run, against the same
local moto_server (SigV4 on) with the same files, plus the server's own ceiling.

    .venv/bin/python tools/bench/drain_compare.py [--small-count 2000] [--small-size 4096]
        [--large-count 20] [--large-size 67108864] [--datasets small,large] [--tools spool-drain,aws,rclone]
        [--bin DIR] [--work DIR] [--json OUT]

For each dataset (a: many 4 KiB files, b: a few 64 MiB files) and each tool: a fresh bucket, the tool run under GNU
time (wall seconds, user+sys CPU seconds, peak RSS), then the bucket listed to check that every object arrived with
its size (and a sample of objects downloaded and compared byte for byte). spool-drain's spool is filled before the
clock starts (a producer's work, not the drainer's): `spool-bench fill` puts the files into sealed bundles of 100, so
spool-drain also writes one `_bundle.json` per bundle — counted in its objects/s. The server ceiling is
`spool-bench s3-put`: PutObject from memory with 32 requests in flight (4 for large objects: more only makes moto
thrash), the least client work per object there is.
Each tool runs with its defaults (spool-drain --concurrency 8, AWS CLI max_concurrent_requests 10 and 8 MiB parts,
rclone --transfers 4 and 5 MiB parts), as a user would run it. Run tools/bench/setup first. Loopback only.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
BENCH_VENV = REPO / ".venv-bench"


def log(message: str) -> None:
    print(f"drain-compare: {message}", file=sys.stderr, flush=True)


def start_moto(work: Path) -> dict[str, str]:
    directory = work / "moto"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(TOOLS / "moto"), "start", "--dir", str(directory), "--parent-pid", str(os.getpid())],
        check=True, stdout=subprocess.DEVNULL)
    env = {}
    for line in (directory / "env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return env


def s3_client(server: dict[str, str]):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=server["AWS_ENDPOINT_URL"], region_name=server["AWS_REGION"],
        aws_access_key_id=server["AWS_ACCESS_KEY_ID"], aws_secret_access_key=server["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}))


def make_dataset(directory: Path, count: int, size: int, seed: int) -> None:
    if directory.exists() and len(list(directory.iterdir())) == count:
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    rng = random.Random(seed)
    for index in range(count):
        with open(directory / f"object-{index:05d}.bin", "wb") as handle:
            left = size
            while left:
                piece = min(left, 1 << 20)
                handle.write(rng.randbytes(piece))
                left -= piece


def timed(command: list[str], env: dict[str, str], work: Path) -> dict:
    """Runs `command` under GNU time; returns wall, user, sys seconds and peak RSS bytes."""
    time_file = work / "time.out"
    started = time.monotonic()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(time_file)] + command, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {result.returncode}: {result.stderr[-2000:]}")
    fields = time_file.read_text().split()[-4:]
    return {
        "wall_seconds": wall, "user_seconds": float(fields[1]), "sys_seconds": float(fields[2]),
        "peak_rss_bytes": int(fields[3]) * 1024,
    }


def verify(client, bucket: str, prefix: str, dataset: Path, expected_extra: int) -> int:
    """Every file arrived with its size (and a sample byte for byte); returns the number of objects listed."""
    sizes = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            sizes[item["Key"]] = item["Size"]
    by_name = {}
    for key, size in sizes.items():
        name = key.rsplit("/", 1)[-1]
        if name.endswith("_bundle.json"):
            continue
        # spool-drain keys are <bundle>/<seq>-<name>.
        name = name.split("-", 1)[1] if not name.startswith("object-") else name
        by_name[name] = (key, size)
    files = sorted(dataset.iterdir())
    missing = [path.name for path in files if by_name.get(path.name, (None, -1))[1] != path.stat().st_size]
    if missing:
        raise RuntimeError(f"{bucket}: {len(missing)} objects missing or of the wrong size, e.g. {missing[:3]}")
    for path in random.Random(7).sample(files, min(5, len(files))):
        body = client.get_object(Bucket=bucket, Key=by_name[path.name][0])["Body"].read()
        if body != path.read_bytes():
            raise RuntimeError(f"{bucket}: {by_name[path.name][0]} differs from {path}")
    if len(sizes) != len(files) + expected_extra:
        raise RuntimeError(f"{bucket}: {len(sizes)} objects, expected {len(files) + expected_extra}")
    return len(sizes)


def empty_bucket(client, bucket: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


def run_tool(tool: str, dataset: Path, bucket: str, server: dict[str, str], binaries: Path, work: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    env.update({key: server[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")})
    endpoint = server["AWS_ENDPOINT_URL"]
    prefix = "bench/"
    if tool == "spool-drain":
        spool = work / f"spool-{bucket}"
        shutil.rmtree(spool, ignore_errors=True)
        subprocess.run(
            [str(binaries / "spool-bench"), "fill", "--spool", str(spool), "--from", str(dataset), "--bucket", bucket,
             "--endpoint", endpoint, "--region", server["AWS_REGION"], "--prefix", prefix],
            check=True, env=env, stdout=subprocess.DEVNULL)
        command = [str(binaries / "spool-drain"), "--spool", str(spool), "--until-done", "--no-progress",
                   "--log-level", "warning"]
    elif tool == "aws":
        env["AWS_ENDPOINT_URL"] = endpoint
        command = [str(BENCH_VENV / "bin" / "aws"), "s3", "cp", "--recursive", "--only-show-errors", str(dataset),
                   f"s3://{bucket}/{prefix}"]
    elif tool == "rclone":
        env.update({
            "RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
            "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": server["AWS_ACCESS_KEY_ID"],
            "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": server["AWS_SECRET_ACCESS_KEY"],
            "RCLONE_CONFIG_MOTO_ENDPOINT": endpoint, "RCLONE_CONFIG_MOTO_REGION": server["AWS_REGION"],
            "RCLONE_CONFIG": str(work / "rclone.conf"),
        })
        command = ["rclone", "copy", str(dataset), f"moto:{bucket}/{prefix}"]
    else:
        raise ValueError(tool)
    measured = timed(command, env, work)
    if tool == "spool-drain":
        shutil.rmtree(work / f"spool-{bucket}", ignore_errors=True)
    return measured


def ceiling(dataset_name: str, count: int, size: int, bucket: str, server: dict[str, str], binaries: Path) -> dict:
    env = dict(os.environ)
    env.update({key: server[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                                             "AWS_ENDPOINT_URL")})
    output = subprocess.run(
        [str(binaries / "spool-bench"), "s3-put", "--bucket", bucket, "--count", str(count), "--size", str(size),
         "--concurrency", str(32 if size < (1 << 20) else 4), "--json"], check=True, env=env, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-count", type=int, default=2000)
    parser.add_argument("--small-size", type=int, default=4096)
    parser.add_argument("--large-count", type=int, default=20)
    parser.add_argument("--large-size", type=int, default=64 << 20)
    parser.add_argument("--datasets", default="small,large")
    parser.add_argument("--tools", default="spool-drain,aws,rclone")
    parser.add_argument("--bin", help="directory of release builds of spool-drain and spool-bench (default: build)")
    parser.add_argument("--work", help="scratch directory (default: a new one under $TMPDIR, removed)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    if args.bin:
        binaries = Path(args.bin)
    else:
        log("building release binaries")
        for product in ("spool-drain", "spool-bench"):
            subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL)
        binaries = Path(subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO,
                                       check=True, stdout=subprocess.PIPE, text=True).stdout.strip())
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="drain-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    server = start_moto(work)
    client = s3_client(server)
    datasets = {
        "small": (args.small_count, args.small_size), "large": (args.large_count, args.large_size),
    }
    results = {"server": "moto_server (tools/moto, SigV4 on)", "datasets": {}}
    try:
        for name in args.datasets.split(","):
            count, size = datasets[name]
            directory = work / f"data-{name}"
            log(f"dataset {name}: {count} × {size} bytes")
            make_dataset(directory, count, size, seed=count * 31 + size)
            entry = {"count": count, "size": size, "tools": {}}
            bucket = f"ceiling-{name}"
            client.create_bucket(Bucket=bucket)
            entry["server_ceiling"] = ceiling(name, count, size, bucket, server, binaries)
            empty_bucket(client, bucket)
            log(f"  server ceiling: {entry['server_ceiling']['objects_per_second']:.1f} objects/s")
            for tool in args.tools.split(","):
                bucket = f"{tool.replace('-', '')}-{name}"
                client.create_bucket(Bucket=bucket)
                measured = run_tool(tool, directory, bucket, server, binaries, work)
                extra = -(-count // 100) if tool == "spool-drain" else 0
                objects = verify(client, bucket, "bench/", directory, extra)
                cpu = measured["user_seconds"] + measured["sys_seconds"]
                gib = count * size / (1 << 30)
                measured.update({
                    "objects": objects, "objects_per_second": objects / measured["wall_seconds"],
                    "mib_per_second": count * size / (1 << 20) / measured["wall_seconds"],
                    "cpu_seconds_per_gib": cpu / gib,
                })
                entry["tools"][tool] = measured
                log(f"  {tool}: {measured['wall_seconds']:.2f} s, {measured['objects_per_second']:.1f} objects/s, "
                    f"{measured['mib_per_second']:.1f} MiB/s, {measured['cpu_seconds_per_gib']:.2f} CPU s/GiB, "
                    f"peak RSS {measured['peak_rss_bytes'] / (1 << 20):.1f} MiB")
                empty_bucket(client, bucket)
            results["datasets"][name] = entry
    finally:
        subprocess.run([str(TOOLS / "moto"), "stop", "--dir", str(work / "moto")], stdout=subprocess.DEVNULL)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
