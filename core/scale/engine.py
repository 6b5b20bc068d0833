"""Engine choice and the Ray session a job runs in.

A job either attaches to an existing cluster (``--ray-address`` or ``RAY_ADDRESS``) or starts a local
Ray for itself; it shuts down only what it started, so a shared cluster or a session the caller already
opened (a test fixture, a notebook) is left running. A cluster address is tried with a plain TCP
connection first (Ray's own connect retries for minutes on an address where nothing listens), and
a user error raised in a Ray worker (a bad row in a partition) reaches the caller as itself, not
wrapped in Ray's remote traceback.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embridge.core.errors import EmbridgeError, InputError, first_line, user_error
from embridge.core.extras import install_hint

ENGINES = ("local", "ray")
CONNECT_TIMEOUT_S = 10.0
MAX_RESTARTS = 3  # of a job's worker (actor) and of its task on it, before the job ends in one line


class EngineError(EmbridgeError):
    """The chosen engine cannot run here (Ray missing, cluster unreachable)."""


@dataclass(frozen=True)
class RaySession:
    """Which cluster a job runs on and whether the job started it (and so must stop it)."""

    address: str | None
    started: bool
    cpus: int


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise InputError("--engine", f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    return engine


def import_ray(address: str | None = None) -> Any:
    """Ray itself, or one line saying how to get it. To attach to a cluster (``address``, else
    ``RAY_ADDRESS``), the token of one `ray start` began with it is first set to be sent: Ray reads that
    setting when it is imported, and such a cluster refuses a driver without it. A local Ray needs none."""
    if (address or os.environ.get("RAY_ADDRESS")) not in (None, "", "local") and "ray" not in sys.modules:
        match_cluster_auth()
    try:
        import ray
    except ImportError as exc:
        import importlib.util

        if sys.modules.get("ray", False) is not None and importlib.util.find_spec("ray") is not None:
            raise EngineError(f"--engine ray: Ray is installed but cannot be imported ({first_line(exc)})") from exc
        raise EngineError(f"--engine ray needs Ray; {install_hint('ray')}") from exc
    return ray


def address_option(address: str) -> str:
    """Where an address came from, for its refusal: ``RAY_ADDRESS`` when the environment gives it, else the option."""
    given = os.environ.get("RAY_ADDRESS", "").strip()
    return "RAY_ADDRESS" if given and given == address.strip() else "--ray-address"


def address_parts(address: str, option: str | None = None) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``, None for ``auto`` and ``local``; any other form
    is refused in one line (Ray's own parse fails later with a raw error, after a run was recorded)."""
    from embridge.core.errors import UsageError

    option = option or address_option(address)
    text = address.strip()
    if text in ("auto", "local"):
        return None
    hostport = text[len("ray://"):] if text.startswith("ray://") else text
    host, _, port = hostport.rstrip("/").rpartition(":")
    if not host or "://" in host or " " in text or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(option, f"'{text}' is not HOST:PORT or ray://HOST:PORT (a port from 1 to 65535)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a cluster address where nothing answers (``HOST:PORT`` or ``ray://HOST:PORT``) at once."""
    parts = address_parts(address)
    if parts is None:
        return
    host, port = parts
    try:
        conn = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        raise EngineError(f"{address_option(address)} {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                          "start one with 'ray start --head' or check the address") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() not in ("0", "false", ""):  # a TLS cluster answers no plain probe
            return
        _check_grpc(conn, address, min(timeout_s, 5.0))  # a cluster answers in milliseconds
    _check_port_role(address, host, port, min(timeout_s, 5.0))
    if not address.strip().startswith("ray://"):
        _check_where_ray_connects(address, host, port, timeout_s)


def _check_where_ray_connects(address: str, host: str, port: int, timeout_s: float) -> None:
    """Ray connects to a local address (127.0.0.1, localhost) through this machine's own IP: a tunnel bound
    to the loopback answers the probe above, and Ray then retried the other address for minutes."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # another Ray: its own connect says what is wrong
        return
    try:
        used = canonicalize_bootstrap_address(f"{host}:{port}") or ""
    except Exception:  # noqa: BLE001 - Ray's own resolution failing is for its connect to report
        return
    ray_host, _, ray_port = used.rpartition(":")
    ray_host = ray_host.strip("[]")
    if not ray_host or ray_host == host or not ray_port.isdigit():
        return
    try:
        socket.create_connection((ray_host, int(ray_port)), timeout=timeout_s).close()
    except OSError:
        raise EngineError(f"{address_option(address)} {address}: Ray connects to a local address through this machine's own IP, "
                          f"{ray_host}, and nothing answers on port {ray_port} there (a tunnel bound to 127.0.0.1?); "
                          f"bind it to {ray_host} or 0.0.0.0, or give ray://HOST:PORT of a Ray Client server") from None


# an HTTP/2 client's opening (the connection preface and an empty SETTINGS frame): a gRPC server, as
# Ray's GCS and client server are, answers with a SETTINGS frame of its own
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _check_grpc(conn: socket.socket, address: str, timeout_s: float) -> None:
    """Refuse a port where something other than Ray listens (a dashboard, a web server, a socket that never
    answers): Ray itself would retry for minutes."""
    try:
        conn.settimeout(timeout_s)
        conn.sendall(_H2_PREFACE)
        reply = conn.recv(9)
    except OSError:
        reply = b""
    if len(reply) < 4 or reply[3] != 4:  # the frame type of SETTINGS
        raise EngineError(f"{address_option(address)} {address}: something listens there but does not answer as a Ray "
                          "cluster (a head's GCS port, 6379 unless set; the dashboard's 8265 is not it)")


# a method only a cluster's GCS serves, and one only a Ray Client server serves
_GCS_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"
_CLIENT_METHOD = "/ray.rpc.RayletDriver/ClusterInfo"


def _check_port_role(address: str, host: str, port: int, timeout_s: float) -> None:
    """Refuse a Ray Client server's port given as ``HOST:PORT`` and a GCS port given as ``ray://HOST:PORT``:
    both are Ray's gRPC servers, and Ray itself takes tens of seconds to fail on the other kind."""
    try:
        import grpc
    except ImportError:  # Ray brings grpcio; without it Ray's own connect says what is wrong
        return
    channel = grpc.insecure_channel(f"{host}:{port}")
    token = cluster_token()
    metadata = (("authorization", f"Bearer {token}"),) if token else ()  # as Ray's own clients send it
    try:
        gcs = _answer(grpc, channel, _GCS_METHOD, timeout_s, metadata)
        client = _answer(grpc, channel, _CLIENT_METHOD, timeout_s, metadata) if gcs == "unimplemented" else None
        if address.strip().startswith("ray://"):
            if gcs == "ok":
                raise EngineError(f"{address_option(address)} {address}: this port is a cluster's GCS, which Ray Client does "
                                  f"not serve; give it without ray:// ({host}:{port}), or ray:// with the head's "
                                  "client server port (10001 unless set)")
        elif client not in (None, "unimplemented", "silent"):
            raise EngineError(f"{address_option(address)} {address}: this port is a Ray Client server, not a cluster's GCS; "
                              f"give it as ray://{host}:{port}, or the head's GCS port (6379 unless set)")
        if client == "unimplemented":  # Ray itself retried such a server for tens of seconds, logging each try
            raise EngineError(f"{address_option(address)} {address}: a gRPC server answers there, but neither as a Ray "
                              "cluster's GCS nor as a Ray Client server (a head's GCS port is 6379 unless set)")
    finally:
        channel.close()


def _answer(grpc: Any, channel: Any, method: str, timeout_s: float, metadata: tuple[tuple[str, str], ...]) -> str:
    """How the server answered an empty call of ``method``: 'ok', 'unimplemented', 'silent' (no answer
    in time, or unreachable) or 'other' (it refused this call: a token it does not accept, say)."""
    try:
        channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)(
            b"", timeout=timeout_s, metadata=metadata)
        return "ok"
    except grpc.RpcError as exc:
        code = exc.code()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "unimplemented"
    return "silent" if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else "other"


@contextmanager
def remote_errors(address: str | None = None) -> Iterator[None]:
    """Re-raise a user error that a Ray task raised as itself (Ray delivers it wrapped), and a cluster that
    stopped answering mid-job (its actors or nodes gone) as one line saying so."""
    try:
        yield
    except Exception as exc:
        found = user_error(exc)
        if found is None and _worker_lost(exc):  # the cluster may well be up: its other actors answered
            raise EngineError(f"a worker of the job on the Ray cluster{f' at {address}' if address else ''} died "
                              f"more often than Ray restarts it, or its node went ({type(exc).__name__}: "
                              f"{first_line(exc)[:200]}); what finished is kept: run the same command again, and "
                              "it resumes") from None
        if found is None and _cluster_failure(exc):
            raise EngineError(f"the Ray cluster{f' at {address}' if address else ''} stopped answering during the "
                              f"job ({type(exc).__name__}: {first_line(exc)[:200]}); what finished is kept: run "
                              "the same command again once the cluster is back, and it resumes") from None
        if found is None or found is exc:
            raise
        raise found from None


def _raised_as(exc: BaseException, names: tuple[str, ...]) -> bool:
    """Whether ``exc`` is one of Ray's exceptions ``names`` (those this Ray version has)."""
    try:
        from ray import exceptions
    except ImportError:
        return False
    return isinstance(exc, tuple(getattr(exceptions, name) for name in names if hasattr(exceptions, name)))


def _worker_lost(exc: BaseException) -> bool:
    """An actor or worker process of the job died (past its restarts): not, by itself, the whole cluster."""
    return _raised_as(exc, ("ActorDiedError", "RayActorError", "WorkerCrashedError"))


def _cluster_failure(exc: BaseException) -> bool:
    """Whether Ray raised ``exc`` for its own failure (an actor, a worker, a node or an object lost with
    them), not for an error of the task's code."""
    return _raised_as(exc, (
        "ActorDiedError", "ActorUnavailableError", "RayActorError", "NodeDiedError", "WorkerCrashedError",
        "ObjectLostError", "OwnerDiedError", "ObjectFetchTimedOutError", "LocalRayletDiedError", "RaySystemError"))


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[RaySession]:
    """Attach to ``address`` (else ``RAY_ADDRESS``), reuse an open session, or start a local Ray."""
    ray = import_ray(address)
    if ray.is_initialized():
        with remote_errors():
            yield RaySession(None, False, int(ray.cluster_resources().get("CPU", 1)))
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}  # not Ray's INFO lines on stderr
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError depending on the failure
        raise EngineError(f"{address_option(address or '')} {address or 'local'}: cannot start or reach Ray: {exc}") from exc
    try:
        with remote_errors(address):
            yield RaySession(address, True, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        ray.shutdown()


def cluster_token() -> str | None:
    """The token a driver here sends to a cluster with token authentication (None when it sends none)."""
    if os.environ.get("RAY_AUTH_MODE", "token" if _token_configured() else "") != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _token_configured() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def match_cluster_auth() -> None:
    """Send the cluster's token when there is one, as ``ray start`` uses it.

    ``ray start`` turns on token authentication when a token exists (``~/.ray/auth_token``,
    ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``), but a driver sends it only with
    ``RAY_AUTH_MODE=token``; an explicit ``RAY_AUTH_MODE`` is left as it is.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    if _token_configured():
        os.environ["RAY_AUTH_MODE"] = "token"


def pool_fits(resources: Mapping[str, Any], actors: int | None, num_gpus: float) -> None:
    """Refuse a pool the cluster cannot hold: actors asking for more GPUs, or more actors than CPUs (each holds
    one), would wait for them forever, saying nothing."""
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if num_gpus and gpus < num_gpus:
        raise EngineError(f"--num-gpus {num_gpus:g}: the Ray cluster has {gpus:g} GPUs; leave --num-gpus out "
                          "to embed on its CPUs")
    if actors and actors > cpus:
        raise EngineError(f"--actors {actors}: the Ray cluster has {cpus:g} CPUs and each actor holds one; give "
                          f"at most {int(cpus)}, or leave --actors out for one a CPU")


def check_pool_fits(address: str | None, actors: int | None, num_gpus: float) -> None:
    """:func:`pool_fits` before a run is recorded, items are staged or a job is submitted (a session opened
    only when --actors or --num-gpus asks for something the cluster may not have)."""
    if not actors and not num_gpus:
        return
    ray = import_ray(address)
    with ray_session(address):
        pool_fits(ray.cluster_resources(), actors, num_gpus)
