"""moto_ctl.py — start, stop and self-test a local moto S3 server with SigV4 authentication on.

Run it with the venv's python (tools/moto does that; tools/setup creates the venv):

    .venv/bin/python tools/moto_ctl.py start [--port P] [--dir D] [--parent-pid PID]
    .venv/bin/python tools/moto_ctl.py stop (--dir D | --pid PID)
    .venv/bin/python tools/moto_ctl.py selftest

`start` runs moto's server (`tools/moto_server.py -H 127.0.0.1 -p P`: moto_server plus a fix that
answers unsigned requests with 403 instead of 500) in the background (port 0 or none: a free
port), waits until it answers HTTP, creates an IAM user with an allow-everything policy and an access
key, then turns authentication on so that from then on every request must be SigV4-signed with that
key. It prints shell `export` lines (credentials, endpoint, pid, port) on stdout and writes them to
<dir>/env; the server's output goes to <dir>/moto.log. Without --dir a new temporary directory is used
(printed as MOTO_DIR). Nothing binds to anything but 127.0.0.1. With --parent-pid the server exits
within a second of that process ending (e.g. the test process that started it, killed or not).

How moto's authentication is switched (moto 5.2.5, moto/core/authorization.py and
moto/moto_api/_internal/responses.py): every AWS action first calls
_authenticate_and_authorize_action, which checks signature and IAM policy only once
ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT and otherwise just
counts the request. That count defaults to infinity (auth off). `POST /moto-api/reset-auth` sets it
to float(<request body>) — the body is a bare number such as `4`, NOT JSON — and resets the counter
to 0. Requests to /moto-api/ itself are never counted or checked.

Environment: MOTO_SERVER_BIN runs that moto_server binary instead, without the fix, e.g. to run
`selftest` against another moto version.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
REGION = "us-east-1"
USER_NAME = "pipeline-tests"
POLICY_NAME = "pipeline-tests-admin"
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# The IAM calls made while authentication is still off: CreateUser, CreatePolicy,
# AttachUserPolicy, CreateAccessKey. The unauthenticated window is exactly this long.
SETUP_CALLS = 4
READY_TIMEOUT = 60.0


def log(msg: str) -> None:
    print(f"moto: {msg}", file=sys.stderr, flush=True)


def server_command() -> list[str]:
    """moto's server, via tools/moto_server.py (unsigned requests: 403 rather than moto's 500)."""
    override = os.environ.get("MOTO_SERVER_BIN")
    if override:
        return [override]
    return [sys.executable, str(Path(__file__).resolve().with_name("moto_server.py"))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
        try:
            s.bind((HOST, port))
        except OSError:
            return True
        return False


def http_status_body(method: str, url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a plain (unsigned) request."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def reset_auth(endpoint: str, count: int) -> dict:
    """POST /moto-api/reset-auth: auth is checked once `count` more AWS requests have been made."""
    body = str(count).encode()
    # Not form-encoded (urllib's default Content-Type): werkzeug would parse the body as a form
    # and moto's request.data would be empty (float('') -> HTTP 500).
    req = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    if answer.get("status") != "ok":
        raise RuntimeError(f"reset-auth answered {answer!r}")
    return answer


def is_moto_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"moto_server" in cmdline


def wait_ready(endpoint: str, proc: subprocess.Popen, log_path: Path, log_offset: int) -> None:
    """Wait until OUR process says it listens (werkzeug's "Running on <endpoint>" in its part of the
    log) and the port answers HTTP (any answer will do). Without the first check another server
    already on a fixed port could answer for a process that failed to bind."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"moto_server exited with status {proc.returncode} before answering; "
                f"last lines of {log_path}:\n{tail(log_path)}"
            )
        with open(log_path, "rb") as f:
            f.seek(log_offset)
            listening = f"Running on {endpoint}".encode() in f.read()
        if listening:
            try:
                http_status_body("GET", f"{endpoint}/moto-api/", timeout=2)
                return
            except (OSError, http.client.HTTPException):
                pass
        time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {endpoint} within {READY_TIMEOUT:.0f}s")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def spawn(port: int, run_dir: Path, parent_pid: int | None = None) -> subprocess.Popen:
    log_path = run_dir / "moto.log"
    extra = []
    if parent_pid is not None:
        if os.environ.get("MOTO_SERVER_BIN"):
            log("--parent-pid is ignored with MOTO_SERVER_BIN (only tools/moto_server.py knows it)")
        else:
            extra = ["--parent-pid", str(parent_pid)]
    env = dict(os.environ)
    # The launcher decides when auth starts; a stray setting in the environment must not.
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    with open(log_path, "ab") as logf:
        return subprocess.Popen(
            [*server_command(), "-H", HOST, "-p", str(port), *extra],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives the launcher and the caller's terminal job
        )


def create_test_credentials(endpoint: str) -> tuple[str, str]:
    """Create the IAM user, its admin policy and an access key; auth must still be off."""
    import boto3  # moto depends on boto3, so the venv has it

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName=USER_NAME)
    arn = iam.create_policy(PolicyName=POLICY_NAME, PolicyDocument=json.dumps(ADMIN_POLICY))[
        "Policy"
    ]["Arn"]
    iam.attach_user_policy(UserName=USER_NAME, PolicyArn=arn)
    key = iam.create_access_key(UserName=USER_NAME)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def start(port: int, run_dir: Path | None, parent_pid: int | None = None) -> dict[str, str]:
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="moto."))
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = run_dir.resolve()
    log_path = run_dir / "moto.log"

    if port and port_in_use(port):
        raise RuntimeError(f"port {port} on {HOST} is already in use")
    attempts = 3 if port == 0 else 1  # a picked port can be taken before moto binds it
    for attempt in range(1, attempts + 1):
        chosen = port or free_port()
        endpoint = f"http://{HOST}:{chosen}"
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        proc = spawn(chosen, run_dir, parent_pid)
        try:
            wait_ready(endpoint, proc, log_path, log_offset)
            break
        except RuntimeError as e:
            stop_pid(proc.pid, quiet=True)
            if attempt == attempts:
                raise
            log(f"retrying on another port: {e}")

    try:
        # 1. Allow exactly the IAM calls that set up the key to go unauthenticated ...
        reset_auth(endpoint, SETUP_CALLS)
        access_key, secret_key = create_test_credentials(endpoint)
        # 2. ... then, whatever was counted, check every request from here on.
        reset_auth(endpoint, 0)
    except BaseException:
        stop_pid(proc.pid, quiet=True)
        raise

    env = {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "MOTO_PID": str(proc.pid),
        "MOTO_PORT": str(chosen),
        "MOTO_DIR": str(run_dir),
        "MOTO_LOG": str(log_path),
    }
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    (run_dir / "env").write_text(text)
    (run_dir / "pid").write_text(f"{proc.pid}\n")
    return env


def stop_pid(pid: int, quiet: bool = False) -> bool:
    """SIGTERM the moto_server with this pid, SIGKILL after 5 s. False if it was not running."""
    if not is_moto_process(pid):
        if not quiet:
            log(f"no moto_server with pid {pid} is running")
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    # Reap it if it is our child; otherwise see whether it still exists (and is not a zombie).
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def read_pid(run_dir: Path) -> int:
    pid_file = run_dir / "pid"
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError) as e:
        raise SystemExit(f"moto: cannot read a pid from {pid_file}: {e}")


# --- selftest -----------------------------------------------------------------------------------


def selftest() -> int:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    failures = 0

    def check(name: str, ok: bool, detail: str = "") -> None:
        nonlocal failures
        print(f"{'ok  ' if ok else 'FAIL'} {name}{' — ' + detail if detail else ''}", flush=True)
        if not ok:
            failures += 1

    def s3(access_key: str, secret_key: str):
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def error_status(call) -> str:
        try:
            call()
            return "succeeded"
        except ClientError as e:
            return f"{e.response['ResponseMetadata']['HTTPStatusCode']} {e.response['Error']['Code']}"

    run_dir = Path(tempfile.mkdtemp(prefix="moto-selftest."))
    try:
        env = start(0, run_dir)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL start — {e}\nmoto selftest: FAILED; kept {run_dir}")
        return 1
    endpoint = env["AWS_ENDPOINT_URL"]
    pid = int(env["MOTO_PID"])
    print(f"started moto_server pid {pid} on {endpoint} ({' '.join(server_command())}), log {env['MOTO_LOG']}")
    try:
        env_file = (run_dir / "env").read_text()
        check("env file has the key and endpoint",
              f"export AWS_ACCESS_KEY_ID={env['AWS_ACCESS_KEY_ID']}" in env_file
              and f"export AWS_ENDPOINT_URL={endpoint}" in env_file)

        status, text = http_status_body("PUT", f"{endpoint}/some-bucket")
        check("unsigned PUT /some-bucket is refused with 403 AccessDenied",
              status == 403 and "<Code>AccessDenied</Code>" in text, f"HTTP {status}")
        status, _ = http_status_body("GET", f"{endpoint}/")
        check("unsigned GET / (ListBuckets) is refused", status == 403, f"HTTP {status}")

        good = s3(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
        bucket, key, body = "selftest-bucket", "a b/ü+%.txt", "hello, signed world\n".encode()

        def signed(name: str, call, expect=lambda result: True) -> None:
            try:
                result = call()
            except ClientError as e:
                check(name, False, str(e))
                return
            ok = bool(expect(result))
            check(name, ok, "" if ok else f"got {result!r}")

        signed("signed CreateBucket succeeds", lambda: good.create_bucket(Bucket=bucket))
        signed(f"signed PutObject of key {key!r} succeeds",
               lambda: good.put_object(Bucket=bucket, Key=key, Body=body))
        signed(f"signed GetObject of key {key!r} returns the body",
               lambda: good.get_object(Bucket=bucket, Key=key)["Body"].read(),
               lambda got: got == body)
        # The prefix is a query value that needs percent-encoding (space, ü, +).
        signed("signed ListObjectsV2 with prefix 'a b/ü+' lists exactly that key",
               lambda: [o["Key"] for o in good.list_objects_v2(Bucket=bucket, Prefix="a b/ü+").get("Contents", [])],
               lambda keys: keys == [key])
        signed("the unsigned PUT created no bucket",
               lambda: [b["Name"] for b in good.list_buckets()["Buckets"]],
               lambda names: names == [bucket])

        bad_secret = s3(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"][:-1] + "x")
        status = error_status(lambda: bad_secret.create_bucket(Bucket="other-bucket"))
        check("CreateBucket signed with a wrong secret is refused", status.startswith("403"), status)
        status = error_status(lambda: bad_secret.list_objects_v2(Bucket=bucket))
        check("ListObjectsV2 signed with a wrong secret is refused", status.startswith("403"), status)
        unknown = s3("AKIAUNKNOWNKEY000000", "nope")
        status = error_status(lambda: unknown.list_objects_v2(Bucket=bucket))
        check("ListObjectsV2 signed with an unknown key id is refused", status.startswith("403"), status)
    finally:
        stopped = stop_pid(pid)
        check("stop ends the server", stopped and not _alive(pid))
        if failures:
            print(f"--- last lines of {env['MOTO_LOG']}:\n{tail(Path(env['MOTO_LOG']))}")

    if failures:
        print(f"moto selftest: FAILED ({failures} checks); kept {run_dir}")
        return 1
    shutil.rmtree(run_dir, ignore_errors=True)
    print("moto selftest: PASSED")
    return 0


def ignore_proxy_settings() -> None:
    """Everything here talks to 127.0.0.1: never through an HTTP proxy from the environment (urllib
    and boto3 would otherwise send even 127.0.0.1 requests to it, and moto_server inherits this)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def main() -> int:
    ignore_proxy_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start a server; prints export lines")
    p_start.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    p_start.add_argument("--dir", type=Path, help="where to put env, pid and moto.log")
    p_start.add_argument("--parent-pid", type=int, help="the server exits when this process ends")
    p_stop = sub.add_parser("stop", help="stop a server started by start")
    who = p_stop.add_mutually_exclusive_group(required=True)
    who.add_argument("--dir", type=Path, help="the --dir it was started with")
    who.add_argument("--pid", type=int, help="its MOTO_PID")
    sub.add_parser("selftest", help="start a server, check auth is really on, stop it")
    args = parser.parse_args()

    if args.command == "start":
        try:
            env = start(args.port, args.dir, args.parent_pid)
        except Exception as e:  # noqa: BLE001 — one clear line for the calling script
            log(f"start failed: {e}")
            return 1
        for k, v in env.items():
            print(f"export {k}={shlex.quote(v)}")
        return 0
    if args.command == "stop":
        pid = args.pid if args.pid is not None else read_pid(args.dir)
        stop_pid(pid)  # a server that is already gone is not an error: stop is idempotent
        return 0
    return selftest()


if __name__ == "__main__":
    sys.exit(main())
