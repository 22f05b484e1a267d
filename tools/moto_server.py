"""moto_server.py — moto's `moto_server` command with one fix: unsigned requests get 403, not 500.

Usage (tools/moto_ctl.py starts it this way; the arguments are moto_server's own):

    .venv/bin/python tools/moto_server.py -H 127.0.0.1 -p PORT

Why: with authentication on (see /moto-api/reset-auth in moto_ctl.py), moto 5.2.5 reads the
Authorization header unconditionally (moto/iam/access_control.py, IAMRequestBase.__init__:
`self._headers["Authorization"]`), so a request carrying no signature at all fails with KeyError and
HTTP 500 — which an S3 client treats as a retryable server fault. Real S3 answers 403 AccessDenied,
and other query/JSON services 403 MissingAuthenticationToken; this wrapper does the same, and only
where moto would have crashed: while auth is on and the request has no Authorization header.

Presigned URLs (signature in the query string, no Authorization header) are left alone: moto 5.2.5
cannot check them with auth on and still answers 500. The tests should sign with the header.
"""

from __future__ import annotations

import sys

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

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
