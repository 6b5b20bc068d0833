"""Credentials in store addresses: what may be printed or stored of a URI.

A PostgreSQL URI may carry a password (``postgresql://me:PASSWORD@host/db``) and a server URI an API key or
token as a query parameter. Messages, ``--json`` outputs, the workspace's records and a migration's checkpoint
name a store by :func:`masked`: the same address with each secret replaced by ``***``, so the address stays
recognisable and the secret stays with the user.
"""

from __future__ import annotations

import re

# query parameters that carry a secret (libpq's password and sslpassword, an API key or token)
SECRET_PARAMS = ("password", "sslpassword", "api_key", "apikey", "api-key", "token", "access_token")
_USER_PASSWORD = re.compile(r"(://[^:/@?#]*):[^/?#]*@")  # to the last @ of the authority
_SECRET_PARAM = re.compile(r"([?&](?:" + "|".join(map(re.escape, SECRET_PARAMS)) + r")=)[^&#]*", re.IGNORECASE)


def masked(uri: str) -> str:
    """``uri`` with the password of its user part and every secret parameter's value replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", _USER_PASSWORD.sub(r"\1:***@", uri))
