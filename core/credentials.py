"""Credentials in store addresses: what may be printed or stored of a URI.

A PostgreSQL URI may carry a password (``postgresql://me:PASSWORD@host/db``) and a server URI an API key or
token as a query parameter. Messages, ``--json`` outputs, the workspace's records and a migration's checkpoint
name a store by :func:`masked`: the same address with each secret replaced by ``***``, so the address stays
recognisable and the secret stays with the user.

Only the secret itself is replaced, never the host, path or other parameters around it: the masked
address also tells stores apart (an import's source, a migration's), so two stores must never mask alike.
The user part ends at the last ``@`` of the authority, which ends at the first ``/`` (PostgreSQL: libpq
reads an unencoded ``?`` or ``#`` of a password as part of it) or, for other schemes, at the first
``/``, ``?`` or ``#``; a user part of a scheme that is not PostgreSQL holds nothing but a key, and is
masked whole.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# a query parameter whose (decoded, lower-case) name holds one of these carries a secret: libpq's password,
# sslpassword and sslkey, an api_key, apikey or key, a token or an auth header's value
SECRET_WORDS = ("pass", "secret", "token", "key", "auth", "credential")
_PARAM = re.compile(r"([?&])([^=&#]*)=([^&#]*)")
_POSTGRES = ("postgresql", "postgres")


def secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a secret (its name decoded as the URI's readers do)."""
    decoded = unquote(name).lower()
    return any(word in decoded for word in SECRET_WORDS)


def _parts(uri: str) -> tuple[str, str, str, str] | None:
    """(what precedes and the scheme://, the user part, the rest of the authority with what follows, the
    query) of the first address in ``uri``; the user part is '' when there is none. None without one."""
    match = re.search(r"([A-Za-z][A-Za-z0-9+.-]*)://", uri)  # anywhere: 'store:postgresql://...', a message
    if match is None:
        return None
    head, rest = uri[:match.end()], uri[match.end():]
    stops = "/" if match[1].lower() in _POSTGRES else "/?#"
    end = min((i for i in (rest.find(c) for c in stops) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    user, tail = (rest[:at + 1], rest[at + 1:]) if at >= 0 else ("", rest)
    return head, user, tail, tail.partition("?")[2]


def _user_secret(head: str, user: str) -> str:
    """The secret of a user part ('me:pw@' -> 'pw'; 'KEY@' of a non-PostgreSQL scheme -> 'KEY')."""
    body = user[:-1]
    if re.split(r"[^A-Za-z0-9+.-]", head[:-3])[-1].lower() in _POSTGRES:
        return body.partition(":")[2]
    return body


def masked(uri: str) -> str:
    """``uri`` with the secret of its user part and every secret parameter's value replaced by ``***``."""
    parts = _parts(uri)
    if parts is None:
        return uri
    head, user, tail, query = parts
    secret = _user_secret(head, user) if user else ""
    if secret:
        user = user[:-1 - len(secret)] + "***@" if user.endswith(f"{secret}@") else user
    if query:
        start = len(tail) - len(query)
        tail = tail[:start] + _PARAM.sub(lambda m: f"{m[1]}{m[2]}=***" if secret_param(m[2]) else m[0],
                                         "?" + query)[1:]
    return head + user + tail


def scrubbed(text: str, uri: str) -> str:
    """``text`` (a client library's message about ``uri``) with every secret ``uri`` holds replaced by ``***``:
    libpq quotes a password it could not parse, or the part of one after an unencoded '@' as a host."""
    parts = _parts(uri)
    secrets: set[str] = set()
    if parts is not None:
        head, user, _, query = parts
        secret = _user_secret(head, user) if user else ""
        secrets |= {secret, *(piece for piece in secret.split("@") if len(piece) > 1)}
        secrets |= {m[3] for m in _PARAM.finditer("?" + query) if secret_param(m[2])}
    secrets = {s for s in secrets if s}
    for secret in sorted(secrets | {unquote(s) for s in secrets}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return masked(text)
