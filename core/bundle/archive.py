"""Reading a bundle safely, whether it is a folder or a ``.zip``, without extracting it.

A bundle arrives from elsewhere, so it is untrusted input. Opening one refuses members with an
absolute path, a ``..`` part or a backslash, symbolic links, duplicate or encrypted members,
members larger than a cap and archives whose declared uncompressed total exceeds a second cap (a
zip bomb). Members are then read as streams: hashing a 10 GB gallery never holds it in memory, and
the few members read whole (manifest, adapter, probes) have a third, smaller cap.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from embridge.core.env_numbers import env_number
from embridge.core.errors import BundleError
from embridge.core.paths import check_regular

GIB = 1 << 30
_DRIVE = re.compile(r"^[A-Za-z]:")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class BundleLimits:
    """Size caps applied when a bundle is opened (bytes, uncompressed)."""

    max_member_bytes: int = 16 * GIB
    max_total_bytes: int = 64 * GIB
    max_read_bytes: int = GIB // 2  # members read whole into memory

    @classmethod
    def from_env(cls) -> BundleLimits:
        """Defaults, overridden by ``EMBRIDGE_BUNDLE_MAX_MEMBER_MB`` / ``..._MAX_TOTAL_MB``."""
        base = cls()
        member, total = (env_number(f"EMBRIDGE_BUNDLE_MAX_{which}_MB", default / (1 << 20), float, 1e-3,
                                    "a size in MiB (a number)")
                         for which, default in (("MEMBER", base.max_member_bytes), ("TOTAL", base.max_total_bytes)))
        return cls(int(member * (1 << 20)), int(total * (1 << 20)), base.max_read_bytes)


def check_member_name(name: str, source: str | Path) -> None:
    """Refuse names that could escape the bundle when extracted anywhere."""
    if "\\" in name or "\x00" in name:
        raise BundleError(f"{source}: unsafe member name {name!r} (backslash or NUL)")
    if name.startswith("/") or _DRIVE.match(name):
        raise BundleError(f"{source}: unsafe member {name!r} has an absolute path")
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        raise BundleError(f"{source}: unsafe member {name!r} points outside the bundle ('..')")
    if any(p in ("", ".") for p in parts):
        raise BundleError(f"{source}: unsafe member name {name!r} (empty or '.' path part)")


class BundleSource:
    """Read access to the regular files of a bundle, by relative POSIX name."""

    def __init__(self, path: Path, sizes: dict[str, int], limits: BundleLimits) -> None:
        self.path = path
        self.limits = limits
        self._sizes = sizes
        total = sum(sizes.values())
        for name, size in sizes.items():
            if size > limits.max_member_bytes:
                raise BundleError(f"{path}: member {name} is {size} bytes, over the "
                                  f"{limits.max_member_bytes}-byte cap per file")
        if total > limits.max_total_bytes:
            raise BundleError(f"{path}: {total} bytes uncompressed in all, over the "
                              f"{limits.max_total_bytes}-byte cap (possible zip bomb)")

    def names(self) -> list[str]:
        return sorted(self._sizes)

    def has(self, name: str) -> bool:
        return name in self._sizes

    def size(self, name: str) -> int:
        return self._sizes[name]

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def read_bytes(self, name: str) -> bytes:
        """The whole member, refused when it exceeds ``max_read_bytes``."""
        if name not in self._sizes:
            raise BundleError(f"{self.path}: {name} is missing from the bundle")
        cap = self.limits.max_read_bytes
        with self.open(name) as fh:
            data = fh.read(cap + 1)
        if len(data) > cap:
            raise BundleError(f"{self.path}: {name} is larger than {cap} bytes; refusing to read it whole")
        return data

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        with self.open(name) as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                digest.update(block)
        return digest.hexdigest()

    def close(self) -> None:
        """Release the archive handle (folders hold none)."""

    def __enter__(self) -> BundleSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FolderSource(BundleSource):
    """A bundle folder; symbolic links and special files anywhere inside it are refused."""

    def __init__(self, path: Path, limits: BundleLimits) -> None:
        sizes: dict[str, int] = {}
        for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
            for entry in dirnames + filenames:
                full = Path(dirpath) / entry
                rel = full.relative_to(path).as_posix()
                mode = full.lstat().st_mode
                if stat.S_ISLNK(mode):
                    raise BundleError(f"{path}: {rel} is a symbolic link; bundles may not contain links")
                if entry in filenames:
                    if not stat.S_ISREG(mode):
                        raise BundleError(f"{path}: {rel} is not a regular file")
                    check_member_name(rel, path)
                    sizes[rel] = full.stat().st_size
        super().__init__(path, sizes, limits)

    def open(self, name: str) -> BinaryIO:
        return open(self.path / name, "rb")


class ZipSource(BundleSource):
    """A zipped bundle; members may sit under one top folder (a zipped bundle folder)."""

    def __init__(self, path: Path, limits: BundleLimits) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BundleError(f"{path}: not a readable zip archive ({exc})") from exc
        try:
            members = self._zip.infolist()
            if members and min(info.header_offset for info in members) != 0:
                # the member list found is not the file's own: cut short inside a stored member that is a
                # zip itself (adapter.pt), the reader took that member's list for the bundle's
                raise BundleError(f"{path}: {TRUNCATED_ZIP}")
            infos = self._scan(path)
            self._prefix = _common_prefix(list(infos))
            self._infos = {name[len(self._prefix):]: info for name, info in infos.items()}
            super().__init__(path, {n: i.file_size for n, i in self._infos.items()}, limits)
        except BaseException:
            self._zip.close()
            raise

    def _scan(self, path: Path) -> dict[str, zipfile.ZipInfo]:
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            check_member_name(info.filename, path)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BundleError(f"{path}: member {info.filename} is a symbolic link; bundles may not contain links")
            if info.flag_bits & 0x1:
                raise BundleError(f"{path}: member {info.filename} is encrypted")
            if info.is_dir():
                continue
            if info.filename in infos:
                raise BundleError(f"{path}: member {info.filename} appears twice in the archive")
            infos[info.filename] = info
        return infos

    def open(self, name: str) -> BinaryIO:
        try:
            return self._zip.open(self._infos[name])  # type: ignore[return-value]
        except KeyError:
            raise BundleError(f"{self.path}: {name} is missing from the bundle") from None
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise BundleError(f"{self.path}: {name} cannot be read ({exc})") from exc

    def sha256(self, name: str) -> str:
        try:
            return super().sha256(name)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:  # CRC errors surface here
            raise BundleError(f"{self.path}: {name} is corrupt in the archive ({exc})") from exc

    def read_bytes(self, name: str) -> bytes:
        """The whole member; its CRC is checked as it is read (CHECKSUMS and the manifest come first)."""
        try:
            return super().read_bytes(name)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise BundleError(f"{self.path}: {name} is corrupt in the archive ({exc})") from exc

    def close(self) -> None:
        self._zip.close()


def _common_prefix(names: list[str]) -> str:
    """``"folder/"`` when every member lies under one top folder holding ``manifest.json``."""
    if not names or "manifest.json" in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        prefix = tops.pop() + "/"
        if prefix + "manifest.json" in names:
            return prefix
    return ""


TRUNCATED_ZIP = "a damaged or truncated zip archive (its end, the list of its members, is missing); copy the bundle again"


def open_bundle(path: str | Path, limits: BundleLimits | None = None) -> BundleSource:
    """Open a bundle folder or zip for reading (see the module docstring for what is refused)."""
    source = Path(path)
    limits = limits or BundleLimits.from_env()
    if source.is_symlink():
        raise BundleError(f"{source}: the bundle path is a symbolic link; give the real path")
    if source.is_dir():
        return FolderSource(source, limits)
    if source.is_file():
        if not zipfile.is_zipfile(source):
            with source.open("rb") as head:
                damaged = head.read(4) == b"PK\x03\x04"  # a zip's first member, but no directory at its end
            raise BundleError(f"{source}: " + (TRUNCATED_ZIP if damaged else
                                               "not a bundle (neither a folder nor a zip archive)"))
        return ZipSource(source, limits)
    if not os.path.lexists(source):
        raise BundleError(f"{source}: no such bundle")
    check_regular(source, "bundle")  # a FIFO, device or socket: named as such (reading one may never end)
    raise BundleError(f"{source}: not a bundle (neither a folder nor a zip archive)")


def read_npy(src: BundleSource, name: str) -> object:
    """A small ``.npy`` member as an array (never pickled objects)."""
    import numpy as np

    try:
        return np.load(io.BytesIO(src.read_bytes(name)), allow_pickle=False)
    except (ValueError, MemoryError) as exc:  # MemoryError: a forged header claiming a gigantic shape
        raise BundleError(f"{src.path}: {name} is not a plain .npy array ({exc})") from exc
