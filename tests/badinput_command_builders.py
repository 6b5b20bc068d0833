"""Builders for the command corpus (``badinputs_commands.py``): outputs that collide with what a
command reads or keeps, damaged workspaces, forged bundle manifests, special files and models that
fail in odd ways. Each returns the path (or option, or name) the one-line error must name.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import badinput_builders as mk
import numpy as np
import torch
from badinput_builders import Env


# -- outputs and inputs ---------------------------------------------------------------------------
def bundle_copy(env: Env, name: str = "b.zip") -> Path:
    """The good bundle copied under the inputs (so a command that damaged it would show)."""
    return Path(shutil.copyfile(env.bundle, env.inputs / name))


def unzipped_bundle(env: Env) -> Path:
    folder = env.inputs / "unzipped"
    with zipfile.ZipFile(env.bundle) as zf:
        zf.extractall(folder)
    return folder


def vectors(env: Env, name: str = "q.npy", dim: int = 32, rows: int = 5) -> Path:
    path = env.inputs / name
    np.save(path, np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32))
    return path


def user_folder(env: Env) -> Path:
    """A folder of the user's that is not a bundle."""
    folder = env.inputs / "my-folder"
    folder.mkdir()
    mk.write(folder / "thesis.txt", "years of work")
    return folder


def other_workspace(env: Env) -> Path:
    """A folder holding another workspace's database (an output inside it must be refused)."""
    from embridge.core.store import Workspace

    Workspace.create(env.inputs / "other-ws").close()
    return env.inputs / "other-ws"


def fifo(env: Env, name: str = "pipe") -> Path:
    path = env.inputs / name
    os.mkfifo(path)
    return path


def held_apply_lock(env: Env) -> Path:
    """Another 'bundle apply' holds the lock of ``{in}/out.npy``."""
    vectors(env)
    lock = env.inputs / "out.npy.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    env.stack.callback(os.close, fd)
    return env.inputs / "out.npy"


def link_named(env: Env, name: str, target: Path) -> Path:
    link = env.inputs / name
    link.symlink_to(target)
    return link


def link_to_bundle(env: Env) -> Path:
    target = bundle_copy(env)
    link = env.inputs / "link.zip"
    link.symlink_to(target)
    return link


# -- the workspace --------------------------------------------------------------------------------
def empty_db(env: Env) -> Path:
    return mk.write(mk.db(env), b"")


def db_is_a_folder(env: Env) -> Path:
    mk.db(env).unlink()
    mk.db(env).mkdir()
    return mk.db(env)


def dropped_table(table: str) -> Callable[[Env], Path]:
    return lambda env: mk.edit_db(env, f"drop table {table}")


def dropped_column(env: Env) -> Path:
    return mk.edit_db(env, "alter table runs drop column status")


def renamed_model(name: str) -> Callable[[Env], Path]:
    """A database edited so that a stored model name is a path."""
    def build(env: Env) -> Path:
        mk.edit_db(env, f"update models set name = '{name}' where name = 'v1'")
        npz_for_import(env)
        return env.ws / "vectors" / name
    return build


def npz_for_import(env: Env) -> Path:
    return mk.npz(env.inputs / "more.npz", np.ones((2, 16), dtype=np.float32), ["fresh-1", "fresh-2"])


# -- checkpoints ----------------------------------------------------------------------------------
class RaisesInForward(torch.nn.Module):
    """An 8 -> 4 embedder whose forward raises once a batch has more than ``limit`` rows."""

    def __init__(self, limit: int = 0, in_features: int = 8) -> None:
        super().__init__()
        self.limit = limit
        self.layer = torch.nn.Linear(in_features, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise ValueError("this model refuses to work")
        return self.layer(x)


def raising_model(env: Env, limit: int = 0, name: str = "raises.ts", in_features: int = 8) -> Path:
    path = env.inputs / name
    torch.jit.save(torch.jit.script(RaisesInForward(limit, in_features)), str(path))
    return path


def huge_config_checkpoint(env: Env) -> Path:
    """A tiny state_dict whose config asks for layers of 10^5 x 10^5 floats (40 GB) each."""
    from embridge.core.models import build_model

    path = env.inputs / "huge-config.pt"
    weights = build_model("mlp", mk.MLP_CONFIG)[0].state_dict()
    torch.save({"format": 1, "arch": "mlp", "arch_config": {"input_dim": 8, "out_dim": 4,
                                                            "hidden": [100_000, 100_000]},
                "state_dict": weights}, path)
    return path


def text_file(env: Env, name: str = "notes.pt") -> Path:
    return mk.write(env.inputs / name, "these are my notes, not a model\n" * 20)


def deep_json_line(env: Env) -> Path:
    return mk.write(env.inputs / "deep.jsonl", '{"key": "a", "text": ' + "[" * 200_000 + "]" * 200_000 + "}\n")


# -- forged bundles (checksums rewritten to match, so only the field checks can catch them) --------
def manifest_edit(path: str, value: object) -> Callable[[Env], Path]:
    """Set a (dotted) manifest field and rewrite the checksums."""
    def edit(manifest: dict) -> None:
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[key]
        node[last] = value

    name = "forged-" + path.replace(".", "-") + ".zip"
    return lambda env: mk.forged(env, name, edit)


def manifest_drop(path: str) -> Callable[[Env], Path]:
    def edit(manifest: dict) -> None:
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[key]
        del node[last]

    return lambda env: mk.forged(env, "dropped-" + path.replace(".", "-") + ".zip", edit)


def raw_manifest(env: Env, name: str, text: bytes) -> Path:
    """A bundle whose manifest.json is ``text`` (any bytes), CHECKSUMS rewritten to match."""
    with zipfile.ZipFile(env.bundle) as src:
        members = {i.filename: src.read(i) for i in src.infolist()}
    return mk.with_manifest(env, name, members, text, json.loads(members["manifest.json"])["files"])


def deeply_nested_manifest(env: Env) -> Path:
    return raw_manifest(env, "deep.zip", b'{"format_version": 1, "adapter": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


class RaisingAdapter(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("adapter refuses")


def adapter_raising_in_forward(env: Env) -> Path:
    data = io.BytesIO()
    torch.jit.save(torch.jit.script(RaisingAdapter()), data)
    return mk.forged(env, "raising-adapter.zip", files={"adapter.pt": data.getvalue()})


def empty_adapter_file(env: Env) -> Path:
    return mk.forged(env, "empty-adapter.zip", files={"adapter.pt": b""})
