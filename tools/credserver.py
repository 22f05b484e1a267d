#!/usr/bin/env python3
"""credserver.py — a local EC2 instance metadata service (IMDS) and container credentials endpoint for the
credential chain's tests. Standard library only; listens on 127.0.0.1 only.

    python3 tools/credserver.py [--port 0] [--port-file PATH] [--parent-pid PID]

Prints `LISTENING <port>` on stdout once listening (--port-file: also writes the port there, atomically). With
--parent-pid it exits within a second of that process ending (tools/processwatch.py).

Endpoints, as AWS serves them:
  PUT  /latest/api/token                          IMDSv2 session token; needs X-aws-ec2-metadata-token-ttl-seconds
                                                  (1..21600, else 400); "imds": "v1" answers 403 instead
  GET  /latest/meta-data/iam/security-credentials/        the role name
  GET  /latest/meta-data/iam/security-credentials/<role>  {"Code": "Success", AccessKeyId, SecretAccessKey, Token,
                                                           Expiration, ...}
       "imds": "v2" (default): both GETs need X-aws-ec2-metadata-token with a token this server issued, else 401;
       "v1": no token needed (and none issued); "optional": either.
  GET  <container_path> (default /creds)          {AccessKeyId, SecretAccessKey, Token, Expiration, RoleArn};
                                                  with "auth_token" set, Authorization must equal it, else 401
Control (JSON):
  POST /__credserver/config   replaces the settings given: credentials (a list of {AccessKeyId, SecretAccessKey,
                              Token (an empty one is left out)}; each credentials answer hands out the next, round
                              robin), expires_in (seconds
                              from now for Expiration, default 3600), imds, role, container_path, auth_token,
                              fail_next (answer fail_status, default 500, to that many credentials requests first)
  GET  /__credserver/stats    counters: token_requests, role_requests, credential_requests (IMDS),
                              container_requests, unauthorized, failures_injected, handed_out (access key ids in
                              order), authorizations (the Authorization values the container endpoint received)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from processwatch import announce_port, restore_default_signals, watch_parent  # noqa: E402

CREDENTIALS_PREFIX = "/latest/meta-data/iam/security-credentials/"


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: dict = {
            "credentials": [{"AccessKeyId": "AKIDLOCAL", "SecretAccessKey": "local-secret", "Token": "local-token"}],
            "expires_in": 3600,
            "imds": "v2",
            "role": "test-role",
            "container_path": "/creds",
            "auth_token": None,
            "fail_next": 0,
            "fail_status": 500,
        }
        self.issued_tokens: set[str] = set()
        self.next_credentials = 0
        self.stats = {
            "token_requests": 0,
            "role_requests": 0,
            "credential_requests": 0,
            "container_requests": 0,
            "unauthorized": 0,
            "failures_injected": 0,
            "handed_out": [],
            "authorizations": [],
        }

    def hand_out(self) -> dict | None:
        """The next credentials document, or None when a failure is to be injected."""
        with self.lock:
            if self.config["fail_next"] > 0:
                self.config["fail_next"] -= 1
                self.stats["failures_injected"] += 1
                return None
            pool = self.config["credentials"]
            chosen = {k: v for k, v in pool[self.next_credentials % len(pool)].items() if v}  # no empty Token
            self.next_credentials += 1
            self.stats["handed_out"].append(chosen["AccessKeyId"])
            expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                seconds=float(self.config["expires_in"]))
            chosen["Expiration"] = expires.strftime("%Y-%m-%dT%H:%M:%S.") + f"{expires.microsecond // 1000:03d}Z"
            return chosen


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        print(f"credserver: {self.command} {self.path} {format % args}", file=sys.stderr, flush=True)

    def reply(self, status: int, body: str | bytes, content_type: str = "text/plain") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def count(self, name: str) -> None:
        with STATE.lock:
            STATE.stats[name] += 1

    # IMDS -----------------------------------------------------------------------------------------------------

    def imds_allowed(self) -> bool:
        mode = STATE.config["imds"]
        token = self.headers.get("X-aws-ec2-metadata-token")
        if mode == "v1":
            return True
        if token is None:
            return mode == "optional"
        with STATE.lock:
            return token in STATE.issued_tokens

    def do_PUT(self) -> None:
        self.read_body()
        if self.path != "/latest/api/token":
            return self.reply(404, "not found")
        self.count("token_requests")
        if STATE.config["imds"] == "v1":
            return self.reply(403, "Forbidden")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.reply(400, "Bad Request")
        with STATE.lock:
            token = f"imds-token-{len(STATE.issued_tokens) + 1}"
            STATE.issued_tokens.add(token)
        self.reply(200, token)

    def do_GET(self) -> None:
        if self.path == "/__credserver/stats":
            with STATE.lock:
                return self.reply(200, json.dumps(STATE.stats), "application/json")
        if self.path.startswith(CREDENTIALS_PREFIX):
            return self.imds_get(self.path[len(CREDENTIALS_PREFIX):])
        if self.path == STATE.config["container_path"]:
            return self.container_get()
        self.reply(404, "not found")

    def imds_get(self, role: str) -> None:
        self.count("credential_requests" if role else "role_requests")
        if not self.imds_allowed():
            self.count("unauthorized")
            return self.reply(401, "Unauthorized")
        if not role:
            return self.reply(200, STATE.config["role"])
        if role != STATE.config["role"]:
            return self.reply(404, "not found")
        document = STATE.hand_out()
        if document is None:
            return self.reply(STATE.config["fail_status"], "injected failure")
        document.update({"Code": "Success", "LastUpdated": "2026-01-01T00:00:00Z", "Type": "AWS-HMAC"})
        self.reply(200, json.dumps(document), "application/json")

    # Container credentials ------------------------------------------------------------------------------------

    def container_get(self) -> None:
        self.count("container_requests")
        authorization = self.headers.get("Authorization")
        with STATE.lock:
            STATE.stats["authorizations"].append(authorization)
        expected = STATE.config["auth_token"]
        if expected is not None and authorization != expected:
            self.count("unauthorized")
            return self.reply(401, json.dumps({"code": "Unauthorized"}), "application/json")
        document = STATE.hand_out()
        if document is None:
            return self.reply(STATE.config["fail_status"], "injected failure")
        document["RoleArn"] = "arn:aws:iam::123456789012:role/container-role"
        self.reply(200, json.dumps(document), "application/json")

    # Control --------------------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        body = self.read_body()
        if self.path != "/__credserver/config":
            return self.reply(404, "not found")
        try:
            update = json.loads(body or b"{}")
            unknown = set(update) - set(STATE.config)
            if unknown:
                raise ValueError(f"unknown settings {sorted(unknown)}")
            if "credentials" in update and not update["credentials"]:
                raise ValueError("credentials must not be empty")
        except ValueError as e:
            return self.reply(400, str(e))
        with STATE.lock:
            STATE.config.update(update)
        self.reply(200, json.dumps({"status": "ok"}), "application/json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args()
    restore_default_signals()
    if args.parent_pid is not None:
        watch_parent(args.parent_pid, "credserver")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    announce_port(port, args.port_file)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
