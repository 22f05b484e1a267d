#!/usr/bin/env python3
"""faultproxy.py — a fault-injecting HTTP/1.1 reverse proxy for the S3 integration tests.

Sits between an S3 client and a local moto_server and, per configured rules, breaks requests the ways
a real network and a real S3 do: connection resets, lost responses, 500s, 503 SlowDown, stalls.
Standard library only (asyncio): runs with the venv's python or the system python3.

    python3 tools/faultproxy.py --upstream http://127.0.0.1:5000 [--port 0] [--rule RULE]...
                                [--config FILE] [--seed N] [--parent-pid PID] [--port-file PATH]
                                [--records N] [--verbose]

It listens on 127.0.0.1 only (--port 0 or none: a free port) and prints `LISTENING <port>` as the
first line on stdout (flushed); --port-file also writes the port to a file (atomically). The upstream
must be on the loopback interface. Nothing else is ever written to stdout; --verbose logs one line
per request (and errors) to stderr. With --parent-pid the proxy exits within a second of that
process ending (for test processes that die without cleaning up).

HTTP handling. Each client connection is served in sequence (keep-alive); each forwarded request gets
its own upstream connection, closed after the response. Request heads are relayed byte for byte (Host
and every signed header unchanged); response heads too, except for the hop-by-hop Connection and
Keep-Alive headers (moto's werkzeug says `Connection: close` on every response — about the proxy's
upstream connection, not the client's). Bodies are streamed (Content-Length and
`Transfer-Encoding: chunked`, in both directions; never held whole); HEAD/204/304/1xx responses have
no body. `Expect: 100-continue` is forwarded, and the server's interim `100 Continue` relayed. The
client connection stays open after a response unless the client asked otherwise (`Connection:
close`, HTTP/1.0), the response body is delimited by EOF, or the server answered before it had the
whole request body; the proxy then sends `Connection: close` with the response.

Rules. A rule is a JSON object:
    {"fault": KIND,                       required, one of FAULTS below
     "probability": 0.3,                  fire on a matching request with this probability
     "nth": [2, 5]  (or 2),               fire on the 2nd and 5th matching request (1-based)
     "method": "PUT" (or ["PUT","POST"]), filter: request method, case-insensitive
     "path_regex": "^/bucket/key",        filter: re.search over the request target (path?query)
     "seconds": 2.5,                      stall/delay duration (default 30; delay: 1)
     "times": 1}                          fire at most this many times
A rule with neither probability nor nth fires on every matching request. Each rule counts the
requests matching its filter (whether or not an earlier rule fired on them); the rules are tried in
order and the first that fires decides the request's fate. Probabilities are drawn from one
random.Random(seed): the same seed and request sequence give the same faults.

FAULTS:
  reset               read the head and part of the body (up to half of it, at most 64 KiB; with
                      `Expect: 100-continue` a 100 is sent first so that the client starts sending),
                      then close the client connection with RST (SO_LINGER 0). Not forwarded.
  drop_response       forward the whole request, read the server's whole response (so the server
                      has applied the request), then RST the client without sending any of it.
  error500            answer 500 InternalError (S3 XML body), not forwarded.
  slowdown            answer 503 SlowDown (S3 XML body), not forwarded.
                      For both: without `Expect: 100-continue` the request body is read and thrown
                      away first and the connection stays open (keep-alive); with it, the error is
                      the answer to the Expect (no 100 is sent, as S3 does), with `Connection: close`,
                      and the connection is closed after a lingering read of whatever body arrives.
  stall               read the head, send nothing for `seconds`, then close. Not forwarded. The
                      request body is read and discarded meanwhile (no 100 is sent), so the client
                      finishes its upload and waits for a response that never comes.
  stall_mid_request   like reset, but after reading part of the body stop reading (the client's
                      send window fills up) for `seconds`, then RST. Not forwarded.
  stall_mid_response  forward; relay the response head and part of the body (half of it, at most
                      1 MiB; a chunked body: its first piece), then send nothing for `seconds`, then
                      close (the client sees a truncated body).
  delay               wait `seconds`, then forward normally.
  delay_response      forward; once the server's response head has arrived (the server has applied the
                      request), wait `seconds`, then relay the response normally.

Control endpoint (answered by the proxy itself; never forwarded, never counted):
  GET  /__faultproxy/stats[?records=N]  {"requests", "forwarded", "request_body_bytes" (of forwarded
                                         requests, framing included), "faults": {KIND: count},
                                         "connections" (client connections that carried a proxied
                                         request), "upstream_errors", "seed", "rules": [rule +
                                         "matched", "fired"], "records": [{"n", "method", "path",
                                         "fault", "rule", "status"}]} — the last --records (1000)
                                         requests, oldest first; status is what the client got
                                         (null: no response)
  GET  /__faultproxy/config             {"rules": [...], "seed": N}
  POST /__faultproxy/config             body {"rules": [...], "seed": N}: replaces all rules (their
                                        counts start at 0); without "seed" the random generator is
                                        left as it is. 400 {"error": ...} for an invalid rule
  POST /__faultproxy/reset              clears the statistics, the records and the rules' counts
                                        (keeps the rules; re-seeds the generator with the seed)
  POST /__faultproxy/shutdown           answers, then exits

Rules on the command line: --rule takes the JSON object above, or the short form
`KIND key=value ...` (shell-style words; nth and method take comma-separated lists), e.g.
    --rule 'reset probability=0.3' --rule 'slowdown nth=2,5' --rule 'stall seconds=30 method=PUT'
--config FILE reads a JSON file like the POST /__faultproxy/config body.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import shlex
import socket
import struct
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from processwatch import announce_port, restore_default_signals, watch_parent  # noqa: E402

HOST = "127.0.0.1"
CONTROL_PREFIX = "/__faultproxy/"
FAULTS = (
    "reset",
    "drop_response",
    "error500",
    "slowdown",
    "stall",
    "stall_mid_request",
    "stall_mid_response",
    "delay",
    "delay_response",
)
DEFAULT_SECONDS = {"delay": 1.0, "delay_response": 1.0}
DEFAULT_STALL_SECONDS = 30.0
RULE_KEYS = {"fault", "probability", "nth", "method", "path_regex", "seconds", "times"}

BUFFER = 256 * 1024  # body pieces are read and relayed in at most this much
HEAD_LIMIT = 256 * 1024  # longest request or response head
CONTROL_BODY_LIMIT = 1024 * 1024
RESET_READ_LIMIT = 64 * 1024  # reset / stall_mid_request: read at most this much of the body first
RESET_READ_WAIT = 2.0  # ... and wait at most this long for it
STALL_MID_RESPONSE_LIMIT = 1024 * 1024
LINGER_SECONDS = 2.0  # lingering close: read and discard at most this long after the last answer
EARLY_RESPONSE_GRACE = 0.2  # a response arriving while the body pump is finishing is not "early"

ERROR_BODIES = {
    "error500": (500, "Internal Server Error", "InternalError", "injected"),
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}

VERBOSE = False


def log(message: str) -> None:
    if VERBOSE:
        print(f"faultproxy: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"faultproxy: {message}", file=sys.stderr, flush=True)


# --- HTTP parsing ----------------------------------------------------------------------------------


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.1 as this proxy understands it."""


class Head:
    """A request or response head: the raw bytes (relayed unchanged) and the parsed fields."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        lines = raw.decode("latin-1").split("\r\n")
        self.start_line = lines[0]
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            if line[0] in " \t":
                raise ProtocolError("obsolete header line folding")
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolError(f"bad header line {line!r}")
            self.headers.append((name, value.strip()))

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def tokens(self, name: str) -> list[str]:
        return [t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()]

    def for_next_hop(self, close: bool) -> bytes:
        """The raw head without its hop-by-hop connection headers (Connection, Keep-Alive,
        Proxy-Connection and those Connection names), plus `Connection: close` when `close`."""
        hop = {"connection", "keep-alive", "proxy-connection"} | set(self.tokens("connection"))
        lines = self.raw.decode("latin-1").split("\r\n")
        kept = [lines[0]] + [
            line for line in lines[1:] if line and line.partition(":")[0].strip().lower() not in hop
        ]
        if close:
            kept.append("Connection: close")
        return ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1")


class Request(Head):
    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        parts = self.start_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ProtocolError(f"bad request line {self.start_line!r}")
        self.method, self.target, self.version = parts
        self.framing = body_framing(self, is_request=True)
        self.expects_continue = "100-continue" in self.tokens("expect")
        self.wants_close = "close" in self.tokens("connection") or self.version == "HTTP/1.0"

    @property
    def has_body(self) -> bool:
        return self.framing != ("length", 0)


class Response(Head):
    def __init__(self, raw: bytes, request: Request) -> None:
        super().__init__(raw)
        parts = self.start_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {self.start_line!r}")
        self.version = parts[0]
        self.status = int(parts[1])
        if request.method == "HEAD" or 100 <= self.status < 200 or self.status in (204, 304):
            self.framing: tuple[str, int] = ("length", 0)
        else:
            self.framing = body_framing(self, is_request=False)
        # The upstream's own Connection header is about the proxy's upstream connection (moto's
        # werkzeug always says close); only a body delimited by EOF forces the client's closed too.
        self.ends_with_eof = self.framing[0] == "eof"


def body_framing(head: Head, is_request: bool) -> tuple[str, int]:
    """("length", n), ("chunked", 0) or ("eof", 0) — the last only for responses."""
    codings = head.tokens("transfer-encoding")
    if codings:
        if codings[-1] != "chunked":
            if is_request:
                raise ProtocolError(f"unsupported Transfer-Encoding {codings}")
            return ("eof", 0)
        return ("chunked", 0)
    lengths = {v.strip() for v in head.get_all("content-length")}
    if not lengths:
        return ("length", 0) if is_request else ("eof", 0)
    if len(lengths) != 1 or not next(iter(lengths)).isdigit():
        raise ProtocolError(f"bad Content-Length {sorted(lengths)}")
    return ("length", int(next(iter(lengths))))


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The next head, through its blank line; None on a clean EOF before any byte of it."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip(b"\r\n"):
            return None
        raise ProtocolError("connection closed in the middle of a head") from e
    except asyncio.LimitOverrunError as e:
        raise ProtocolError("head too long") from e
    # Empty lines before a request line are to be ignored (RFC 9112 section 2.2).
    return raw.lstrip(b"\r\n") or None


async def body_pieces(reader: asyncio.StreamReader, framing: tuple[str, int]):
    """The body's bytes as they are on the wire (chunk framing included), a piece at a time."""
    kind, length = framing
    if kind == "length":
        remaining = length
        while remaining:
            data = await reader.read(min(BUFFER, remaining))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            yield data
    elif kind == "chunked":
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as e:
                raise ProtocolError("chunk size line too long") from e
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as e:
                raise ProtocolError(f"bad chunk size line {line[:80]!r}") from e
            yield line
            if size == 0:
                break
            remaining = size + 2  # the chunk and its CRLF
            while remaining:
                data = await reader.read(min(BUFFER, remaining))
                if not data:
                    raise asyncio.IncompleteReadError(b"", remaining)
                remaining -= len(data)
                yield data
        while True:  # trailer fields, then the final empty line
            line = await reader.readuntil(b"\r\n")
            yield line
            if line == b"\r\n":
                break
    else:  # eof
        while data := await reader.read(BUFFER):
            yield data


async def drain_body(reader: asyncio.StreamReader, framing: tuple[str, int]) -> None:
    async for _ in body_pieces(reader, framing):
        pass


def abort_with_rst(writer: asyncio.StreamWriter) -> None:
    """Close the connection at once with a TCP RST, discarding anything not yet sent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def lingering_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send FIN, then read and discard what the client still sends for a while, then close: closing
    with unread data would send an RST, which can destroy the answer before the client reads it."""
    try:
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        deadline = time.monotonic() + LINGER_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(BUFFER), left):
                break
    except (OSError, asyncio.TimeoutError, ConnectionError):
        pass
    writer.close()


def simple_response(status: int, reason: str, body: bytes, content_type: str, close: bool, head_only: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Server: faultproxy",
        "x-amz-request-id: faultproxy",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
    ]
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def s3_error_xml(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
    ).encode()


# --- rules -------------------------------------------------------------------------------------------


class RuleError(ValueError):
    pass


class Rule:
    def __init__(self, spec: dict) -> None:
        if not isinstance(spec, dict):
            raise RuleError(f"a rule must be a JSON object, not {spec!r}")
        unknown = set(spec) - RULE_KEYS
        if unknown:
            raise RuleError(f"unknown rule key(s) {sorted(unknown)} (known: {sorted(RULE_KEYS)})")
        self.fault = spec.get("fault")
        if self.fault not in FAULTS:
            raise RuleError(f"fault must be one of {list(FAULTS)}, not {self.fault!r}")
        self.probability = spec.get("probability")
        if self.probability is not None:
            if isinstance(self.probability, bool) or not isinstance(self.probability, (int, float)):
                raise RuleError(f"probability must be a number, not {self.probability!r}")
            if not 0 <= self.probability <= 1:
                raise RuleError(f"probability must be within 0...1, not {self.probability}")
        nth = spec.get("nth")
        if nth is None:
            self.nth: set[int] | None = None
        else:
            values = nth if isinstance(nth, list) else [nth]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise RuleError(f"nth must be a positive integer or a list of them, not {nth!r}")
            self.nth = set(values)
        method = spec.get("method")
        if method is None:
            self.methods: set[str] | None = None
        else:
            values = method if isinstance(method, list) else [method]
            if not values or not all(isinstance(v, str) and v for v in values):
                raise RuleError(f"method must be a string or a list of strings, not {method!r}")
            self.methods = {v.upper() for v in values}
        self.path_regex = spec.get("path_regex")
        if self.path_regex is not None:
            if not isinstance(self.path_regex, str):
                raise RuleError(f"path_regex must be a string, not {self.path_regex!r}")
            try:
                self.pattern: re.Pattern | None = re.compile(self.path_regex)
            except re.error as e:
                raise RuleError(f"bad path_regex {self.path_regex!r}: {e}") from e
        else:
            self.pattern = None
        seconds = spec.get("seconds", DEFAULT_SECONDS.get(self.fault, DEFAULT_STALL_SECONDS))
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise RuleError(f"seconds must be a number >= 0, not {seconds!r}")
        self.seconds = float(seconds)
        self.times = spec.get("times")
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise RuleError(f"times must be a positive integer, not {self.times!r}")
        self.spec = dict(spec)
        self.matched = 0
        self.fired = 0

    def matches(self, method: str, target: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.pattern is None or self.pattern.search(target) is not None

    def describe(self) -> dict:
        return {**self.spec, "matched": self.matched, "fired": self.fired}


def parse_rule_argument(text: str) -> dict:
    """--rule: a JSON object, or `KIND key=value ...`."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise RuleError(f"--rule {text!r}: {e}") from e
    words = shlex.split(text)
    if not words:
        raise RuleError("--rule: empty")
    spec: dict = {"fault": words[0]}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise RuleError(f"--rule {text!r}: {word!r} is not key=value")
        if key in ("probability", "seconds"):
            try:
                spec[key] = float(value)
            except ValueError as e:
                raise RuleError(f"--rule {text!r}: {key} must be a number") from e
        elif key in ("nth", "times"):
            try:
                numbers = [int(v) for v in value.split(",")]
            except ValueError as e:
                raise RuleError(f"--rule {text!r}: {key} must be integers") from e
            spec[key] = numbers if key == "nth" else numbers[0]
        elif key == "method":
            spec[key] = value.split(",")
        else:
            spec[key] = value
    return spec


# --- the proxy ---------------------------------------------------------------------------------------


class Proxy:
    def __init__(self, upstream_port: int, records: int, seed: int | None) -> None:
        self.upstream_port = upstream_port
        self.rules: list[Rule] = []
        self.seed = seed if seed is not None else random.randrange(2**63)
        self.rng = random.Random(self.seed)
        self.record_limit = records
        self.shutdown = asyncio.Event()
        self.clear_stats()

    def clear_stats(self) -> None:
        self.requests = 0
        self.forwarded = 0
        self.connections = 0
        self.upstream_errors = 0
        self.request_body_bytes = 0
        self.faults = {kind: 0 for kind in FAULTS}
        self.records: collections.deque = collections.deque(maxlen=self.record_limit)
        for rule in self.rules:
            rule.matched = rule.fired = 0

    def configure(self, body: dict) -> None:
        if not isinstance(body, dict):
            raise RuleError("the configuration must be a JSON object")
        unknown = set(body) - {"rules", "seed"}
        if unknown:
            raise RuleError(f"unknown configuration key(s) {sorted(unknown)} (known: rules, seed)")
        specs = body.get("rules", [])
        if not isinstance(specs, list):
            raise RuleError("rules must be a list")
        rules = [Rule(spec) for spec in specs]  # all valid, or nothing changes
        seed = body.get("seed")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise RuleError(f"seed must be an integer, not {seed!r}")
            self.seed = seed
            self.rng = random.Random(seed)
        self.rules = rules

    def choose(self, method: str, target: str) -> tuple[int, Rule] | None:
        chosen = None
        for index, rule in enumerate(self.rules):
            if not rule.matches(method, target):
                continue
            rule.matched += 1
            if chosen is not None or (rule.times is not None and rule.fired >= rule.times):
                continue
            fires = rule.nth is not None and rule.matched in rule.nth
            if rule.probability is not None and not fires:
                fires = self.rng.random() < rule.probability
            if rule.nth is None and rule.probability is None:
                fires = True
            if fires:
                rule.fired += 1
                chosen = (index, rule)
        return chosen

    def stats(self, records: int | None) -> dict:
        items = list(self.records)
        if records is not None:
            items = items[-records:] if records > 0 else []
        return {
            "requests": self.requests,
            "forwarded": self.forwarded,
            "faults": dict(self.faults),
            "connections": self.connections,
            "upstream_errors": self.upstream_errors,
            "request_body_bytes": self.request_body_bytes,
            "seed": self.seed,
            "rules": [rule.describe() for rule in self.rules],
            "records": items,
        }

    # -- connections --

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted = False  # connections that carry only control requests are not counted
        try:
            while True:
                try:
                    raw = await read_head(reader)
                    if raw is None:
                        break
                    request = Request(raw)
                except ProtocolError as e:
                    log(f"bad request: {e}")
                    writer.write(simple_response(400, "Bad Request", f"{e}\n".encode(), "text/plain", True, False))
                    await lingering_close(reader, writer)
                    return
                if request.target.startswith(CONTROL_PREFIX):
                    keep = await self.control(request, reader, writer)
                else:
                    if not counted:
                        self.connections += 1
                        counted = True
                    keep = await self.serve(request, reader, writer)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ProtocolError, OSError) as e:
            log(f"connection ended: {type(e).__name__}: {e}")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 — one broken connection must not stop the proxy
            warn(f"internal error: {type(e).__name__}: {e}")
            abort_with_rst(writer)
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def serve(self, request: Request, reader, writer) -> bool:
        """Serve one proxied request; True when the client connection can take another."""
        self.requests += 1
        n = self.requests
        chosen = self.choose(request.method, request.target)
        rule = chosen[1] if chosen else None
        record = {
            "n": n,
            "method": request.method,
            "path": request.target,
            "fault": rule.fault if rule else None,
            "rule": chosen[0] if chosen else None,
            "status": None,
        }
        self.records.append(record)
        if rule:
            self.faults[rule.fault] += 1
        keep = not request.wants_close
        try:
            if rule is None:
                return await self.forward(request, reader, writer, record, keep)
            fault = rule.fault
            if fault == "reset":
                await self.read_some_body(request, reader, writer)
                abort_with_rst(writer)
                return False
            if fault == "stall_mid_request":
                await self.read_some_body(request, reader, writer)
                await asyncio.sleep(rule.seconds)
                abort_with_rst(writer)
                return False
            if fault in ERROR_BODIES:
                return await self.answer_error(fault, request, reader, writer, record, keep)
            if fault == "stall":
                await self.stall(request, reader, writer, rule.seconds)
                return False
            if fault == "delay":
                await asyncio.sleep(rule.seconds)
                return await self.forward(request, reader, writer, record, keep)
            if fault == "drop_response":
                return await self.forward(request, reader, writer, record, keep, mode="drop")
            if fault == "stall_mid_response":
                return await self.forward(request, reader, writer, record, keep, mode="stall", seconds=rule.seconds)
            if fault == "delay_response":
                return await self.forward(request, reader, writer, record, keep, mode="late", seconds=rule.seconds)
            raise AssertionError(fault)
        finally:
            kind, length = request.framing
            framing = f"{length} bytes" if kind == "length" else kind
            expect = ", expect 100-continue" if request.expects_continue else ""
            log(
                f"#{n} {request.method} {request.target} ({framing}{expect})"
                f" -> {record['fault'] or 'forwarded'}, status {record['status']}"
            )

    async def read_some_body(self, request: Request, reader, writer) -> None:
        """Read part of the request body: up to half of it and at most 64 KiB; for a chunked body
        whatever arrives first. Nothing when there is no body. Never waits longer than 2 s."""
        if not request.has_body:
            return
        if request.expects_continue:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        kind, length = request.framing
        want = max(1, min(length // 2, RESET_READ_LIMIT)) if kind == "length" else 1
        deadline = time.monotonic() + RESET_READ_WAIT
        got = 0
        while got < want and (left := deadline - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(min(want - got, RESET_READ_LIMIT)), left)
            except asyncio.TimeoutError:
                break
            if not data:
                break
            got += len(data)

    async def answer_error(self, fault: str, request: Request, reader, writer, record: dict, keep: bool) -> bool:
        status, reason, code, message = ERROR_BODIES[fault]
        body = s3_error_xml(code, message)
        head_only = request.method == "HEAD"
        if request.expects_continue and request.has_body:
            # The final answer to the Expect: the client may or may not send the body now, so the
            # connection cannot be reused; close it without an RST.
            writer.write(simple_response(status, reason, body, "application/xml", True, head_only))
            record["status"] = status
            await lingering_close(reader, writer)
            return False
        await drain_body(reader, request.framing)
        writer.write(simple_response(status, reason, body, "application/xml", not keep, head_only))
        await writer.drain()
        record["status"] = status
        return keep

    async def stall(self, request: Request, reader, writer, seconds: float) -> None:
        drainer = asyncio.ensure_future(drain_body(reader, request.framing)) if request.has_body else None
        try:
            await asyncio.sleep(seconds)
        finally:
            if drainer is not None and not drainer.done():
                drainer.cancel()
                abort_with_rst(writer)  # unread body: the kernel would send an RST anyway
            elif drainer is not None and not drainer.cancelled():
                drainer.exception()  # retrieved, so asyncio does not log it
        writer.close()

    async def forward(
        self, request: Request, reader, writer, record: dict, keep: bool, mode: str = "normal", seconds: float = 0
    ) -> bool:
        """Forward the request on a new upstream connection and relay the response (mode "normal"),
        throw it away and RST the client ("drop"), relay part of it and stall ("stall"), or relay it
        `seconds` late ("late")."""
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.upstream_port, limit=HEAD_LIMIT), 10
            )
        except (OSError, asyncio.TimeoutError) as e:
            self.upstream_errors += 1
            warn(f"cannot connect to the upstream 127.0.0.1:{self.upstream_port}: {e}")
            await self.bad_gateway(request, reader, writer, record, f"upstream unreachable: {e}")
            return False
        self.forwarded += 1
        pump = None
        try:
            up_writer.write(request.raw)
            if request.has_body:
                pump = asyncio.ensure_future(self.pump_body(request, reader, up_writer))
            else:
                await up_writer.drain()
            progress = {"sent_head": False}
            relay = asyncio.ensure_future(
                self.relay_response(request, reader, up_reader, writer, record, progress, keep, pump, mode, seconds)
            )
            waiting = {relay} if pump is None else {relay, pump}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_EXCEPTION)
            if pump is not None and pump.done() and not pump.cancelled() and pump.exception() is not None:
                # The client broke off its upload (or sent a malformed body): nothing to answer.
                relay.cancel()
                log(f"request body: {type(pump.exception()).__name__}: {pump.exception()}")
                abort_with_rst(writer)
                return False
            try:
                return await relay
            except (ConnectionError, asyncio.IncompleteReadError, ProtocolError, OSError) as e:
                if progress["sent_head"]:
                    raise  # the client already has part of a response: just close
                self.upstream_errors += 1
                warn(f"upstream failed for {request.method} {request.target}: {type(e).__name__}: {e}")
                if pump is not None and not pump.done():
                    pump.cancel()
                await self.bad_gateway(request, reader, writer, record, f"upstream failed: {e}")
                return False
        finally:
            if pump is not None and not pump.done():
                pump.cancel()
            up_writer.transport.abort()

    async def pump_body(self, request: Request, reader, up_writer: asyncio.StreamWriter) -> None:
        """Stream the request body to the upstream. Errors reading from the client propagate; once the
        upstream stops taking the body the rest is read and discarded (the client connection stays in
        step)."""
        upstream_open = True
        async for piece in body_pieces(reader, request.framing):
            self.request_body_bytes += len(piece)
            if upstream_open:
                try:
                    up_writer.write(piece)
                    await up_writer.drain()
                except (ConnectionError, OSError):
                    upstream_open = False

    async def relay_response(
        self, request, reader, up_reader, writer, record, progress, keep, pump, mode, seconds
    ) -> bool:
        """Relay interim responses and the final one (per mode); True when the client connection can
        take another request."""
        while True:
            raw = await read_head(up_reader)
            if raw is None:
                raise ConnectionError("the upstream closed the connection without answering")
            response = Response(raw, request)
            if 100 <= response.status < 200 and response.status != 101:
                writer.write(response.raw)  # 100 Continue: the client may send its body now
                await writer.drain()
                continue
            break
        if mode == "drop":
            await drain_body(up_reader, response.framing)
            if pump is not None and not pump.done():
                await asyncio.wait({pump}, timeout=EARLY_RESPONSE_GRACE)
            abort_with_rst(writer)
            return False
        if mode == "late":
            await asyncio.sleep(seconds)
            mode = "normal"

        early = pump is not None and not pump.done()
        if early:
            await asyncio.wait({pump}, timeout=EARLY_RESPONSE_GRACE)
            early = not pump.done()
        keep = keep and not response.ends_with_eof and not early and mode == "normal"
        record["status"] = response.status
        progress["sent_head"] = True
        writer.write(response.for_next_hop(close=not keep))

        if mode == "stall":
            kind, length = response.framing
            # Half the body, at most 1 MiB; chunked: the first chunk's size line and the start of its data.
            budget = min(length // 2, STALL_MID_RESPONSE_LIMIT) if kind == "length" else STALL_MID_RESPONSE_LIMIT
            sent = pieces = 0
            async for piece in body_pieces(up_reader, response.framing):
                piece = piece[: budget - sent]
                writer.write(piece)
                sent += len(piece)
                pieces += 1
                if sent >= budget or (kind != "length" and pieces >= 2):
                    break
            await writer.drain()
            await asyncio.sleep(seconds)
            writer.close()
            return False

        async for piece in body_pieces(up_reader, response.framing):
            writer.write(piece)
            await writer.drain()
        await writer.drain()
        if early:
            if pump is not None and not pump.done():
                pump.cancel()
            await lingering_close(reader, writer)
            return False
        return keep

    async def bad_gateway(self, request, reader, writer, record, message: str) -> None:
        body = f"faultproxy: {message}\n".encode()
        writer.write(simple_response(502, "Bad Gateway", body, "text/plain", True, request.method == "HEAD"))
        record["status"] = 502
        await lingering_close(reader, writer)

    # -- control endpoint --

    async def control(self, request: Request, reader, writer) -> bool:
        keep = not request.wants_close
        kind, length = request.framing
        if kind == "length" and length > CONTROL_BODY_LIMIT:
            writer.write(simple_response(413, "Content Too Large", b"", "text/plain", True, False))
            await lingering_close(reader, writer)
            return False
        if request.expects_continue and request.has_body:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = bytearray()
        async for piece in body_pieces(reader, request.framing):
            body += piece
            if len(body) > CONTROL_BODY_LIMIT + 64 * 1024:
                raise ProtocolError("control request body too large")
        if kind == "chunked":
            body = bytearray(dechunk(bytes(body)))

        url = urllib.parse.urlsplit(request.target)
        query = urllib.parse.parse_qs(url.query)
        route = (request.method, url.path[len(CONTROL_PREFIX) :])
        status, answer = 200, None
        try:
            if route == ("GET", "stats"):
                records = int(query["records"][0]) if "records" in query else None
                answer = self.stats(records)
            elif route == ("GET", "config"):
                answer = {"rules": [rule.spec for rule in self.rules], "seed": self.seed}
            elif route == ("POST", "config"):
                self.configure(json.loads(body or b"{}"))
                answer = {"ok": True, "rules": [rule.spec for rule in self.rules], "seed": self.seed}
                log(f"configured: {json.dumps(answer)}")
            elif route == ("POST", "reset"):
                self.clear_stats()
                self.rng = random.Random(self.seed)
                answer = {"ok": True}
            elif route == ("POST", "shutdown"):
                answer = {"ok": True}
                self.shutdown.set()
                keep = False
            else:
                status, answer = 404, {"error": f"no control route {request.method} {url.path}"}
        except (RuleError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            status, answer = 400, {"error": str(e)}
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        payload = (json.dumps(answer) + "\n").encode()
        writer.write(simple_response(status, reason, payload, "application/json", not keep, request.method == "HEAD"))
        await writer.drain()
        return keep


def dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


# --- process plumbing ------------------------------------------------------------------------------


def upstream_port(text: str) -> int:
    """http://127.0.0.1:PORT, 127.0.0.1:PORT, localhost:PORT or PORT; loopback only."""
    if text.isdigit():
        return int(text)
    url = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
    if url.scheme != "http":
        raise argparse.ArgumentTypeError(f"only http:// upstreams: {text!r}")
    if url.hostname not in ("127.0.0.1", "localhost"):
        raise argparse.ArgumentTypeError(f"the upstream must be on 127.0.0.1: {text!r}")
    if not url.port:
        raise argparse.ArgumentTypeError(f"the upstream needs a port: {text!r}")
    return url.port


async def amain(args: argparse.Namespace, config: dict) -> int:
    proxy = Proxy(args.upstream, args.records, args.seed)
    proxy.configure(config)
    server = await asyncio.start_server(proxy.handle, HOST, args.port, limit=HEAD_LIMIT)
    port = server.sockets[0].getsockname()[1]
    announce_port(port, args.port_file)
    log(f"listening on {HOST}:{port}, forwarding to 127.0.0.1:{args.upstream}, seed {proxy.seed}")
    async with server:
        await proxy.shutdown.wait()
        await asyncio.sleep(0.05)  # let the shutdown answer go out
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See the top of tools/faultproxy.py for the rule format."
    )
    parser.add_argument("--upstream", required=True, type=upstream_port, help="http://127.0.0.1:PORT of the server")
    parser.add_argument("--port", type=int, default=0, help="port to listen on at 127.0.0.1 (0: a free one)")
    parser.add_argument("--rule", action="append", default=[], help="a fault rule (JSON or `KIND key=value ...`)")
    parser.add_argument("--config", help="a JSON file like the body of POST /__faultproxy/config")
    parser.add_argument("--seed", type=int, help="seed of the random generator (default: a random one)")
    parser.add_argument("--records", type=int, default=1000, help="how many request records to keep (1000)")
    parser.add_argument("--parent-pid", type=int, help="exit when this process ends")
    parser.add_argument("--port-file", help="also write the port to this file once listening")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args()

    global VERBOSE
    VERBOSE = args.verbose
    restore_default_signals()
    try:
        config: dict = {}
        if args.config:
            with open(args.config) as f:
                config = json.load(f)
            if not isinstance(config, dict):
                raise RuleError(f"{args.config}: not a JSON object")
        if args.rule:
            config = {**config, "rules": list(config.get("rules", [])) + [parse_rule_argument(r) for r in args.rule]}
        Proxy(args.upstream, 1, 0).configure(config)  # validate before listening
    except (OSError, ValueError) as e:
        parser.error(str(e))
    if args.parent_pid is not None:
        watch_parent(args.parent_pid, "faultproxy")
    try:
        return asyncio.run(amain(args, config))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
