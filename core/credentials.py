"""Credentials in store addresses: what may be printed or stored of a URI.

A PostgreSQL URI may carry a password (``postgresql://me:PASSWORD@host/db``) and a server URI an API key or
token as a query parameter. Nothing Embridge prints or stores holds one:

- :func:`masked` is the address as recorded (an import's source, a migration's checkpoint, a run's store),
  read as Embridge reads every store URI (RFC 3986: the authority ends at the first ``/``, ``?`` or ``#``,
  its user part at its last ``@``). The password of the user part (the whole user part of a scheme that is
  not PostgreSQL, which holds nothing but a key) and secret query parameters become ``***``, and nothing
  else changes, so two stores never record alike.
- :func:`hidden` is the address as printed (messages, the app's job titles and log): :func:`masked`, and
  what reads as a user part of an address written with a password's ``/`` or ``?`` unencoded (no working
  address) hidden too: all before the last ``@`` that precedes the first query value.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# a query parameter whose (decoded, lower-case) name holds one of these carries a secret: libpq's password,
# sslpassword and sslkey, an api_key, apikey or key, a token or an auth header's value
SECRET_WORDS = ("pass", "secret", "token", "key", "auth", "credential")
_PARAM = re.compile(r"([?&])([^=&#]*)=([^&#]*)")
_ADDRESS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES = ("postgresql", "postgres")
_SECRET_TAIL = re.compile(r"(=\*\*\*)(?:[&#][^&#=\s]*)+?(?=&[^&#=\s]*=|\s|'|$)")


def secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a secret (its name decoded as the URI's readers do)."""
    decoded = unquote(name).lower()
    return any(word in decoded for word in SECRET_WORDS)


def _masked_user(user: str, scheme: str) -> str:
    """A user part ('me:pw@', 'KEY@') as recorded: PostgreSQL's user name kept, its password masked."""
    if scheme.lower() not in _POSTGRES:
        return "***@"
    name, colon, _ = user[:-1].partition(":")
    return f"{name}:***@" if colon else user


def masked(uri: str) -> str:
    """``uri`` as recorded (see the module): its secrets replaced by ``***``, nothing else. The address may
    follow other text ('store:postgresql://...', as an import records its source)."""
    match = _ADDRESS.search(uri)
    if match is None:
        return uri
    head, rest = uri[:match.end()], uri[match.end():]
    stop = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, stop)
    if at >= 0:
        rest = _masked_user(rest[:at + 1], match[1]) + rest[at + 1:]
    query = rest.find("?")  # the first '?' is past the authority: the user part holds none (it ends before one)
    if query >= 0:
        rest = rest[:query] + _PARAM.sub(lambda m: f"{m[1]}{m[2]}=***" if secret_param(m[2]) else m[0],
                                         rest[query:])
    return head + rest


def hidden(text: str) -> str:
    """``text`` (an address, or a message naming some) as printed: :func:`masked`, and what reads as a user
    part of an address written with a password's '/' or '?' unencoded hidden too."""
    starts = [m.start() for m in _ADDRESS.finditer(text)]
    if not starts:
        return text
    pieces = [text[:starts[0]], *(text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True))]
    shown = "".join([pieces[0], *(_hide_user(masked(piece)) for piece in pieces[1:])])
    # a secret value written with an unencoded '&' or '#': what follows, up to the next 'name=', is the value's
    return _SECRET_TAIL.sub(r"\1", shown)


def _hide_user(piece: str) -> str:
    """An address (at the start of ``piece``) whose text before its first query value (or a space, in a
    message) still holds an '@' after :func:`masked`: what precedes that '@' is taken for a user part and
    hidden (a PostgreSQL user name alone is no secret, and stays)."""
    match = _ADDRESS.match(piece)
    assert match is not None
    rest = piece[match.end():]
    if rest.startswith("/"):  # a local path ('parquet:///data/B@1'): no user part, and an '@' is the path's
        return piece
    region = rest.split(" ", 1)[0]
    region = region[:region.find("=")] if "=" in region else region  # a query value's '@' is no user part's
    at = region.rfind("@")
    user = region[:at]
    postgres = match[1].lower() in _POSTGRES
    if at <= 0 or user.endswith("***") or (postgres and not any(c in user for c in ":/")):
        return piece
    name = user.partition(":")[0]
    keep = f"{name}:" if postgres and ":" in user and "/" not in name else ""
    return piece[:match.end()] + keep + "***" + rest[at:]


def scrubbed(text: str, uri: str) -> str:
    """``text`` (a client library's message about ``uri``) with every secret ``uri`` holds replaced by ``***``:
    libpq quotes a password it could not parse, or pieces of one (after an unencoded '@' or ':') as a host."""
    match = _ADDRESS.search(uri)
    secrets: set[str] = set()
    if match is not None:
        rest = uri[match.end():]
        user = rest[:max(rest.split("?", 1)[0].rfind("@"), 0)]  # all that may be a user part, as printed
        secret = user.partition(":")[2] if match[1].lower() in _POSTGRES else user
        secrets |= {secret, *(piece for piece in re.split(r"[@:/?#,]", secret) if len(piece) > 1)}
        secrets |= _secret_values(rest.partition("?")[2])
    secrets = {s for s in secrets if s}
    for secret in sorted(secrets | {unquote(s) for s in secrets}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return hidden(text)


def _secret_values(query: str) -> set[str]:
    """The values of a query's secret parameters, each with what an unencoded '&' or '#' split off it (the
    pieces up to the next 'name=')."""
    values: set[str] = set()
    pieces = re.split(r"[&#]", query)
    for n, piece in enumerate(pieces):
        name, eq, value = piece.partition("=")
        if eq and secret_param(name):
            tail = [value]
            for more in pieces[n + 1:]:
                if "=" in more:
                    break
                tail.append(more)
            values |= {v for v in tail if len(v) > 1}
    return values
