"""Crash-safe file primitives: write to a temp name in the same folder, fsync, rename.

A reader therefore sees either the old file or the complete new one, never a torn write. Temp
names start with ``.tmp-`` so a workspace can sweep leftovers of a crashed writer on open.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from embridge.core.errors import DiskFullError, StoreError
from embridge.core.paths import TEMP_TAG_HEX, TMP_PREFIX, shown_path

_HASH_BLOCK = 1 << 20
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def disk_error(exc: OSError, path: Path, action: str, option: str | None = None) -> StoreError:
    """A readable StoreError for a failed file operation (a full disk named as such). A temp file the
    user never sees is named by its folder, the place a permission or the space is missing; ``option``
    (``--out``) is named before the path where the path was given as one."""
    folder_of = Path(path)
    path = f"{option} {shown_path(path)}" if option else shown_path(path)
    if exc.errno in DISK_FULL:
        return DiskFullError(f"{path}: not enough disk space to {action} ({exc.strerror})")
    if exc.errno is None and _SHORT_WRITE.fullmatch(str(exc)):  # numpy's tofile on a full disk: no errno
        return DiskFullError(f"{path}: not enough disk space to {action} (the disk filled during the write)")
    return StoreError(f"{path}: cannot {action} ({exc.strerror or exc}){_read_only_words(exc, folder_of)}")


def _read_only_words(exc: OSError, path: Path) -> str:
    """'; <folder> is read-only to this user' where a refused write is explained by that (a workspace copied
    from another user, a read-only mount), so the line says what to change."""
    from embridge.core.store.sqlite_errors import read_only_folder

    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ""
    folder = path if path.is_dir() else path.parent
    return f"; {folder} is read-only to this user" if read_only_folder(folder) else ""


def save_npy_once(path: Path, array: np.ndarray) -> None:
    """``np.save`` unless ``path`` already holds ``array`` (written when a job started, so that finishing it
    needs no more disk space)."""
    try:
        held = np.load(path, mmap_mode="r", allow_pickle=False)
        if held.dtype == array.dtype and np.array_equal(held, array):
            return
    except (OSError, ValueError):
        pass
    np.save(path, array)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, streamed in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """Hash of a folder: every file's relative path and content, in sorted order."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def temp_path_for(final: Path) -> Path:
    """A unique temp name beside ``final`` (same filesystem, so the rename is atomic)."""
    return final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:TEMP_TAG_HEX]}-{final.name}")


def fsync_dir(path: Path) -> None:
    """Persist a rename by syncing the containing folder (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def publish(tmp: Path, final: Path) -> None:
    """Make a fully written temp file visible under its final name, durably; a file it replaces keeps its
    permission bits (a report or JUnit file a team made group-readable stays so)."""
    _fsync_file(tmp)
    _keep_mode(final, tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _keep_mode(final: Path, tmp: Path) -> None:
    """Give ``tmp`` the permission bits of the regular file ``final`` it is about to replace."""
    try:
        mode = os.lstat(final).st_mode
    except OSError:  # nothing there yet
        return
    if stat.S_ISREG(mode) and tmp.is_file():
        os.chmod(tmp, stat.S_IMODE(mode))


def publish_new(tmp: Path, final: Path) -> None:
    """Move a finished temp file or folder to ``final``, which must not exist yet.

    The name is claimed atomically (a hard link for a file, an exclusive ``mkdir`` for a folder), so
    something another process put at ``final`` while ``tmp`` was being written raises
    FileExistsError instead of being replaced.
    """
    if tmp.is_dir():
        final.mkdir()
        try:
            os.replace(tmp, final)  # onto the empty folder just made
        except OSError:  # systems that do not rename a folder over an empty one
            final.rmdir()
            os.rename(tmp, final)
    else:
        _fsync_file(tmp)
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: check, then rename
            if final.exists() or final.is_symlink():
                raise FileExistsError(errno.EEXIST, "exists", str(final)) from None
            os.replace(tmp, final)
        else:
            tmp.unlink()
    fsync_dir(final.parent)


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux's ``renameat2`` exchange), so each name always holds a
    whole file or folder; False, with nothing changed, where the system cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # not glibc 2.28+ (musl, an old glibc)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        # swapped: a failed sync must not read as "not swapped", or the caller cleans up the wrong one
        with contextlib.suppress(OSError):
            fsync_dir(b.parent)
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # the kernel or filesystem cannot exchange
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def atomic_target(final: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``final``, on error it is removed."""
    final = Path(final)
    tmp = temp_path_for(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        publish(tmp, final)
    except OSError as exc:  # a full disk (or a folder we may not write) is one line naming the file
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, final, "write it") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(final: str | Path, data: bytes) -> None:
    with atomic_target(final) as tmp:
        tmp.write_bytes(data)


def torch_bytes(obj: object, jit: bool = False) -> bytes:
    """``torch.save`` (or ``torch.jit.save``) into memory: torch's own file writer aborts the whole
    process on a failed write (a full disk), while a Python write raises an error we can report."""
    import torch

    buffer = io.BytesIO()
    if jit:
        torch.jit.save(obj, buffer)
    else:
        torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_write_text(final: str | Path, text: str) -> None:
    atomic_write_bytes(final, text.encode("utf-8"))


def atomic_copy(src: str | Path, final: str | Path) -> None:
    """Copy a file so that ``final`` only ever appears complete."""
    with atomic_target(final) as tmp:
        shutil.copyfile(src, tmp)


def atomic_copy_tree(src: str | Path, final: str | Path) -> None:
    """Copy a folder under a temp name, then rename it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    try:
        shutil.copytree(src, tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
