"""moto_server.py — moto's `moto_server` command with one fix: unsigned requests get 403, not 500.

Usage (tools/moto_ctl.py starts it this way; the arguments are moto_server's own, plus one):

    .venv/bin/python tools/moto_server.py -H 127.0.0.1 -p PORT [--parent-pid PID]

--parent-pid PID: exit within a second of process PID ending (a watchdog thread polls it), so that a
server started for a test process does not outlive it even when that process is killed.

Why: with authentication on (see /moto-api/reset-auth in moto_ctl.py), moto 5.2.5 reads the
Authorization header unconditionally (moto/iam/access_control.py, IAMRequestBase.__init__:
`self._headers["Authorization"]`), so a request carrying no signature at all fails with KeyError and
HTTP 500 — which an S3 client treats as a retryable server fault. Real S3 answers 403 AccessDenied,
and other query/JSON services 403 MissingAuthenticationToken; this wrapper does the same, and only
where moto would have crashed: while auth is on and the request has no Authorization header.

Presigned URLs (signature in the query string, no Authorization header) are left alone: moto 5.2.5
cannot check them with auth on and still answers 500. The tests should sign with the header.

Second fix: STS AssumeRoleWithWebIdentity (and AssumeRoleWithSAML) are answered unsigned, as AWS does; moto
would refuse them once auth is on.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from processwatch import restore_default_signals, watch_parent  # noqa: E402

from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import _RESTError
from moto.iam import access_control


class MissingAuthenticationTokenError(_RESTError):
    code = 403

    def __init__(self) -> None:
        super().__init__("MissingAuthenticationToken", "Request is missing Authentication Token")


_original_init = access_control.IAMRequestBase.__init__


def _init(self, account_id, method, path, data, body, headers, action):  # type: ignore[no-untyped-def]
    presigned = "Signature=" in path  # X-Amz-Signature= (SigV4) or Signature= (SigV2) in the query
    if "Authorization" not in headers and not presigned:
        if isinstance(self, access_control.S3IAMRequest):
            self._data = data
            self._raise_access_denied()  # S3's 403 AccessDenied, with the bucket name when known
        raise MissingAuthenticationTokenError()
    _original_init(self, account_id, method, path, data, body, headers, action)


access_control.IAMRequestBase.__init__ = _init  # type: ignore[method-assign]


# STS actions that AWS answers without a signature: the token (web identity, SAML assertion) is the proof. moto
# routes them (UNSIGNED_ACTIONS in moto_server/werkzeug_app.py) but with authentication on still demands a
# signature; let them through unsigned, as STS does, so that the credential chain's web identity tests can run.
UNSIGNED_STS_ACTIONS = {"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}
_original_authenticate = ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authenticate(self, iam_request_cls, resource="*"):  # type: ignore[no-untyped-def]
    if "Authorization" not in self.headers and getattr(self, "service_name", None) == "sts":
        if self._get_action() in UNSIGNED_STS_ACTIONS:
            return
    return _original_authenticate(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate  # type: ignore[method-assign]


def _take_parent_pid(argv: list[str]) -> tuple[int | None, list[str]]:
    """Remove `--parent-pid PID` / `--parent-pid=PID` from argv (moto_server does not know it)."""
    rest, pid = [], None
    args = iter(argv)
    for arg in args:
        if arg == "--parent-pid":
            value = next(args, None)
        elif arg.startswith("--parent-pid="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
            continue
        if value is None or not value.isdigit():
            sys.exit("moto_server.py: --parent-pid needs a process id")
        pid = int(value)
    return pid, rest


if __name__ == "__main__":
    from moto.server import main

    # Without this, SIGTERM (tools/moto stop, the tests' exit hook) would stay pending in a server started by a test.
    restore_default_signals()
    parent_pid, argv = _take_parent_pid(sys.argv[1:])
    if parent_pid is not None:
        watch_parent(parent_pid, "moto_server")
    sys.exit(main(argv))
