"""Store addresses: ``scheme://[host]/path?collection=NAME&...``, parsed once, decoded once.

Every connector and command reads a store's URI through :class:`StoreURI`: percent-decoding, repeated
parameters, a two-slash local path and a NUL are settled here, so no connector sees a name the user
did not mean; :meth:`StoreURI.place` gives one value per store however its URI is spelt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlencode, urlsplit

from embridge.core.connectors.names import check_uri_names
from embridge.core.credentials import hidden, masked
from embridge.core.errors import InputError

LOCAL_SCHEMES = ("parquet", "lance", "lancedb", "faiss")  # stores that are folders or files, never servers
SERVER_URI_SCHEMES = ("postgresql", "postgres")  # URIs handed to the server's own client (libpq) as written


DEFAULT_PORTS = {"postgresql": 5432, "qdrant": 6333, "chroma": 8000}  # a server reached without a port


def _without_default_port(host: str, default: int | None) -> str:
    """``host`` without a ``:port`` that is the scheme's default, so ``h`` and ``h:5432`` are one server."""
    if default is not None and host.endswith(f":{default}") and "]" not in host.rpartition(":")[2]:
        return host[: -len(f":{default}")]
    return host


def _split_port(hostport: str) -> tuple[str, str]:
    """(host, port) of ``host[:port]`` (port '' when none; the colons of a bare IPv6 address are no port's)."""
    host, sep, port = hostport.rpartition(":")
    return (host, port) if sep and "]" not in port else (hostport, "")


def _meant(scheme: str, host: str, path: str, quoted_path: str) -> str:
    """The spelling a two-slash local URI was meant as: ``/host/path`` (a path missing its first slash) or,
    when only that exists, ``host/path`` under the working folder (a relative path); both when neither does."""
    absolute, relative = Path("/" + host + path), Path.cwd() / (host + path)
    say_absolute = f"for the folder {absolute} write {scheme}:///{host}{quoted_path} (three slashes)"
    say_relative = f"for {relative} (a path relative to here) write {scheme}://{Path.cwd() / host}{quoted_path}"
    try:
        if absolute.exists() or absolute.parent.exists():
            return say_absolute
        if relative.exists() or relative.parent.exists():
            return say_relative
    except OSError:
        pass
    return f"{say_absolute}, or {say_relative}"


@dataclass(frozen=True)
class StoreURI:
    """A parsed store address: ``scheme://[host]/path?collection=NAME&...``."""

    raw: str
    scheme: str
    netloc: str
    path: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, uri: str, option: str = "--uri") -> StoreURI:
        """Split ``uri``; the path and every query value are percent-decoded here, once (RFC 3986: ``%20`` is
        a space, ``%25`` a '%', and '+' stays '+'), so every connector sees the names the user meant. A
        refusal names the URI as printed (:func:`~embridge.core.credentials.hidden`)."""
        shown = hidden(uri)
        try:
            parts = urlsplit(uri)
        except ValueError as exc:  # an unclosed '[' of an IPv6 host, a port out of range...
            raise InputError(option, f"'{shown}' is not a store URI ({exc})") from None
        if not parts.scheme or "://" not in uri:
            raise InputError(option, f"'{shown}' is not a store URI (expected e.g. qdrant:///path/to/db?collection=docs)")
        scheme = parts.scheme.lower()
        if "#" in uri and scheme not in SERVER_URI_SCHEMES:  # urlsplit would silently cut the path or query there
            raise InputError(option, f"'{shown}' holds '#', which would end the path or query there; write a '#' in "
                             "a name as %23")
        given: dict[str, list[str]] = {}
        for piece in parts.query.split("&") if parts.query else []:
            if piece:
                key, _, value = piece.partition("=")
                given.setdefault(unquote(key), []).append(unquote(value))
        params: dict[str, str] = {}
        for key, values in given.items():
            if len(values) != 1:
                raise InputError(option, f"'{shown}' gives the parameter '{key}' {len(values)} times")
            params[key] = values[0]
        path = unquote(parts.path)
        if "\x00" in path or any("\x00" in v for v in params.values()):
            raise InputError(option, f"'{shown}' holds %00 (a NUL character), which no name or path may hold")
        if scheme in LOCAL_SCHEMES and "@" in parts.netloc:  # a user or key: nothing of it is repeated
            raise InputError(option, f"'{shown}' names a user or key before its path, but {scheme}:// takes an "
                             f"absolute local path after three slashes ({scheme}:///data/docs)")
        if scheme in LOCAL_SCHEMES and parts.netloc:  # parquet://data/x reads as host 'data', path '/x'
            raise InputError(option, f"'{shown}' names the host '{parts.netloc}', but {scheme}:// takes an absolute "
                             f"local path after three slashes; {_meant(scheme, parts.netloc, path, parts.path)}")
        check_uri_names(scheme, path, params, option)
        return cls(uri, scheme, parts.netloc, path, params)

    @property
    def shown(self) -> str:
        """The URI as printed (:func:`~embridge.core.credentials.hidden`: no password, key or secret parameter)."""
        return hidden(self.raw)

    @property
    def recorded(self) -> str:
        """The URI as recorded, an import's source say (:func:`~embridge.core.credentials.masked`: its secrets
        masked and nothing else, so two stores never record alike)."""
        return masked(self.raw)

    @property
    def host(self) -> str:
        """The address's ``host[:port]``, without the user part."""
        return self.netloc.rpartition("@")[2]

    @property
    def base(self) -> str:
        """The URI without its query, with the path decoded (and a local one normalised: ``db/`` and ``db/.``
        are ``db``), as a store is named to the user and in a migration's checkpoint; whether two URIs name
        one store is :meth:`place`'s to say (it also follows links and ignores credentials)."""
        path = os.path.normpath(self.path) if self.path and not self.netloc else self.path
        return masked(f"{self.scheme}://{self.netloc}{path}")

    def place(self) -> tuple[str, str, str]:
        """(scheme, host, path) of where the store lives, one value however it is written: a local path
        resolved (a link, ``//``, ``.`` and a trailing ``/``), a server's host in lower case without the
        user's credentials and its path without a trailing ``/``."""
        scheme = "postgresql" if self.scheme == "postgres" else self.scheme
        if scheme == "postgresql":  # libpq's ?dbname= names the database as the path does, and wins over it
            return scheme, self._pg_server(), "/" + self.params["dbname"] if self.params.get("dbname") \
                else self.path.rstrip("/")
        if self.netloc:
            return scheme, _without_default_port(self.host.lower(), DEFAULT_PORTS.get(scheme)), self.path.rstrip("/")
        return scheme, "", os.path.realpath(self.path.rstrip("/") or "/")

    def _pg_server(self) -> str:
        """The server a PostgreSQL URI reaches, as libpq reads it: ``?host=``/``?port=`` win over the URI's
        own host and port, and no port is the default one (5432)."""
        host, port = _split_port(self.host)
        host, port = self.params.get("host") or host, self.params.get("port") or port
        host = host if host.startswith("/") else host.lower()  # a socket folder is a path: its case counts
        return _without_default_port(f"{host}:{port}" if port else host, DEFAULT_PORTS["postgresql"])

    def server(self, default_port: int) -> tuple[str, int]:
        """(host, port) of a server URI (``scheme://host[:port]/...``); the default port when none is given."""
        if "@" in self.netloc:  # nothing here would use it: a key given so would be ignored, not sent
            key = " (Qdrant's API key comes from $QDRANT_API_KEY)" if self.scheme == "qdrant" else ""
            raise InputError(self.shown, f"{self.scheme}:// takes no user or key before the host; give the host "
                             f"alone{key}")
        host, port = _split_port(self.netloc)
        if port and not port.isdigit():
            raise InputError(self.shown, f"the port '{port}' is not a number")
        if not host.strip("[]"):
            raise InputError(self.shown, "no server host named")
        return host.strip("[]"), int(port) if port else default_port

    @property
    def tls(self) -> bool:
        """Whether a server URI asks for TLS (``?https=1``)."""
        return (self.param("https") or "").lower() in ("1", "true", "yes")

    def param(self, *names: str, default: str | None = None) -> str | None:
        """The first of ``names`` (synonyms, such as table and collection) the URI gives; two synonyms
        with different values are refused rather than one silently winning."""
        given = {name: self.params[name] for name in names if self.params.get(name)}
        if len(set(given.values())) > 1:
            raise InputError(self.shown, "gives " + " and ".join(f"{k}={v}" for k, v in given.items())
                             + ": they name the same thing; give one")
        return next(iter(given.values()), default)

    def with_params(self, **changes: str | None) -> StoreURI:
        """The same store with some parameters replaced (None removes one)."""
        params = {**self.params, **{k: v for k, v in changes.items() if v is not None}}
        for k, v in changes.items():
            if v is None:
                params.pop(k, None)
        base = self.raw.split("?", 1)[0]
        return StoreURI(f"{base}?{encode_query(params)}" if params else base, self.scheme, self.netloc, self.path,
                        params)


def encode_query(params: dict[str, str]) -> str:
    """A query string for ``params`` that :meth:`StoreURI.parse` (and libpq) decode back to the same values."""
    return urlencode(params, quote_via=quote)


def path_uri(scheme: str, path: str | Path, query: str = "") -> str:
    """A ``scheme:///path`` URI for a local path, its characters quoted so that parsing gives the path back."""
    return f"{scheme}://{quote(str(path), safe='/')}" + (f"?{query}" if query else "")
