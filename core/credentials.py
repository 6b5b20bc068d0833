"""Credentials in store addresses: what may be printed or stored of a URI.

A PostgreSQL URI may carry a password (``postgresql://me:PASSWORD@host/db``) and a server URI an API key or
token as a query parameter. Messages, ``--json`` outputs, the workspace's records and a migration's checkpoint
name a store by :func:`masked`: the same address with each secret replaced by ``***``, so the address stays
recognisable and the secret stays with the user. Masking errs on the side of hiding: a password written
with an unencoded ``/``, ``?``, ``#`` or ``@`` hides everything up to the URI's last ``@``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# a query parameter whose (decoded, lower-case) name holds one of these carries a secret: libpq's password,
# sslpassword and sslkey, an api_key, apikey or key, a token or an auth header's value
SECRET_WORDS = ("pass", "secret", "token", "key", "auth", "credential")
_USER_PASSWORD = re.compile(r"(://[^:/@?#]*):.*@", re.DOTALL)  # to the URI's last '@'
_PARAM = re.compile(r"([?&])([^=&#]*)=([^&#]*)")


def secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a secret (its name decoded as the URI's readers do)."""
    decoded = unquote(name).lower()
    return any(word in decoded for word in SECRET_WORDS)


def masked(uri: str) -> str:
    """``uri`` with the password of its user part and every secret parameter's value replaced by ``***``."""
    shown = _USER_PASSWORD.sub(r"\1:***@", uri)
    return _PARAM.sub(lambda m: f"{m[1]}{m[2]}=***" if secret_param(m[2]) else m[0], shown)


def scrubbed(text: str, uri: str) -> str:
    """``text`` (a client library's message about ``uri``) with every secret ``uri`` holds replaced by ``***``:
    libpq quotes a password it could not parse, or the whole connection string."""
    secrets = {m[3] for m in _PARAM.finditer(uri) if secret_param(m[2]) and m[3]}
    user = re.match(r"[^:]+://[^:/@?#]*:(.*)@", uri, re.DOTALL)
    if user and user[1]:
        secrets.add(user[1])
    for secret in sorted(secrets | {unquote(s) for s in secrets}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return masked(text)
