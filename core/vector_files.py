"""Reading vector files without loading them whole: ``.npy`` matrices and ``.npz`` archives.

An ``.npz`` holds ``ids`` (document keys) and ``vectors`` (one row per id) and optionally
``query_ids`` / ``query_vectors`` for query items; an ``.npy`` matrix comes with a text file of keys.
Only the key lists are read into memory. A matrix in an ``.npy``, or stored uncompressed in an
``.npz`` (``np.savez``), is memory-mapped at its offset in the file; one deflated in an ``.npz``
(``np.savez_compressed``) is decompressed block by block. Either way peak memory is one block of
rows, not the file, so a 1M x 384 import needs tens of MB rather than gigabytes.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from embridge.core.errors import VectorFileError
from embridge.core.keys import check_input_file, normalise_keys
from embridge.core.store.vector_matrix import as_storage_dtype, finite_rows, release_pages
from embridge.core.text_files import utf8_problem
from embridge.core.vector_spread import blocks_problem
from embridge.core.zip_member_checks import check_member
from embridge.core.zip_member_crc import MemberCrc

BLOCK_ROWS = 4096  # 6 MB of 384-d float32 rows
BLOCK_VALUES = BLOCK_ROWS * 4096  # a block never holds more values than 4096 rows of 4096-d vectors (64 MB)
MAX_DIM = 65_536  # embedding models give hundreds to a few thousand values a vector


def rows_per_block(dim: int, rows: int = BLOCK_ROWS) -> int:
    """``rows``, fewer for vectors wide enough that a block would pass :data:`BLOCK_VALUES`."""
    return max(1, min(rows, BLOCK_VALUES // max(int(dim), 1)))
_PIECE = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header: 30 bytes


@dataclass(frozen=True)
class MatrixReader:
    """A 2-D numeric matrix in a file, read by blocks of rows or by row indices."""

    path: Path
    member: str | None  # the .npz member, or None for an .npy
    shape: tuple[int, int]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int  # of the raw data in the file (stored) or in the member (deflated)
    mapped: bool  # raw data readable at data_offset in the file itself
    crc: tuple[int, int] | None = None  # a mapped .npz member: (its recorded CRC-32, where its bytes start)

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def dim(self) -> int:
        return self.shape[1]

    @property
    def storage_dtype(self) -> str:
        return "float16" if self.dtype == np.float16 else "float32"

    def memmap(self) -> np.ndarray:
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.data_offset, shape=self.shape,
                         order="F" if self.fortran_order else "C")

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) in file order, cast to the stored dtype and checked finite."""
        block_rows = rows_per_block(self.dim, block_rows or BLOCK_ROWS)
        if self.mapped:
            mm, crc = self.memmap(), self._crc()
            for start in range(0, self.rows, block_rows):
                raw = np.array(mm[start:start + block_rows])
                if crc is not None:
                    crc.feed(start, raw.data, len(raw))
                block = self._checked(raw, start)
                self._release(mm, start, start + len(block))
                yield start, block
            if crc is not None:
                crc.finish()
            return
        row_bytes = self.dim * self.dtype.itemsize
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.member or "") as fh:
                fh.read(self.data_offset)
                for start in range(0, self.rows, block_rows):
                    count = min(block_rows, self.rows - start)
                    block = _read_exactly(fh, count * row_bytes, self.path, f"member {self.member} ends early, "
                                          f"at row {start}").view(self.dtype).reshape(count, self.dim)
                    yield start, self._checked(block, start)
        except (zlib.error, zipfile.BadZipFile, EOFError) as exc:  # a damaged deflate stream or CRC
            raise VectorFileError(self.path, f"member {self.member} is damaged ({exc}); write the file again") from exc

    def _crc(self) -> MemberCrc | None:
        """A running check of a C-ordered mapped member's recorded CRC-32 (a plain .npy has none)."""
        if self.crc is None or self.fortran_order:
            return None
        expected, start = self.crc
        with open(self.path, "rb") as fh:
            fh.seek(start)
            header = fh.read(self.data_offset - start)
        return MemberCrc(self.path, self.member or "", expected, header, self.rows)

    def take(self, rows: np.ndarray, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """The rows ``rows`` (ascending file rows) in blocks: (offset in ``rows``, block)."""
        block_rows = rows_per_block(self.dim, block_rows or BLOCK_ROWS)
        rows = np.asarray(rows, dtype=np.int64)
        if self.mapped:
            mm, crc = self.memmap(), self._crc()
            for start in range(0, len(rows), block_rows):
                part = rows[start:start + block_rows]
                first, last = int(part[0]), int(part[-1])
                whole = last - first + 1 == len(part)  # a run of consecutive rows: read where it lies
                if crc is not None and whole:  # every row in file order (an attach of a whole file) is checked
                    crc.feed(first, mm[first:last + 1].data, len(part))
                block = self._checked(mm[first:last + 1] if whole else mm[part], 0, part)
                yield start, block
                self._release(mm, first, last + 1)  # once the caller is done with the block
            if crc is not None:
                crc.finish()
            return
        done = 0
        for first, block in self.blocks(block_rows):
            stop = int(np.searchsorted(rows, first + len(block)))
            if stop > done:
                yield done, block[rows[done:stop] - first]
                done = stop

    def lookup(self, rows: np.ndarray) -> np.ndarray:
        """Rows in the given (any) order, as the stored dtype."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.dim), dtype=self.storage_dtype)
        for offset, block in self.take(rows[order]):
            out[order[offset:offset + len(block)]] = block
        return out

    def _release(self, mm: np.ndarray, start: int, stop: int) -> None:
        if not self.fortran_order:
            release_pages(mm, start, stop)

    def _checked(self, block: np.ndarray, first_row: int, rows: np.ndarray | None = None) -> np.ndarray:
        bad = ~finite_rows(block)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            row = int(rows[at]) if rows is not None else first_row + at
            side = "query_vectors " if (self.member or "").startswith("query_vectors") else ""  # not a document row
            raise VectorFileError(self.path, f"{side}row {row} holds NaN or inf values")
        return as_storage_dtype(block, self.storage_dtype, str(self.path), first_row)


@dataclass(frozen=True)
class VectorFile:
    """Keys and matrix readers of one vector file: documents, and queries when it has them."""

    path: Path
    keys: list[str]
    vectors: MatrixReader
    query_keys: list[str] | None = None
    query_vectors: MatrixReader | None = None

    @property
    def dim(self) -> int:
        return self.vectors.dim

    def check_spread(self, read_all: bool = False) -> None:
        """Refuse a member whose rows all share one direction, naming it: documents and queries are checked
        apart, as a model's documents and queries are searched apart (five zero queries hide among fifty good
        documents). ``read_all=False`` reads one block of a usable member."""
        for member, reader in (("vectors", self.vectors), ("query_vectors", self.query_vectors)):
            if reader is None:
                continue
            problem = blocks_problem((block for _, block in reader.blocks()), read_all)
            if problem:
                raise VectorFileError(self.path, f"{member}: {problem}")

    @classmethod
    def open(cls, path: str | Path, ids_path: str | Path | None = None) -> VectorFile:
        """Read the keys and matrix headers, checking shapes, dtypes and ids; no vectors are read."""
        src = Path(path)
        check_input_file(src, "vector file")  # a FIFO or device: opening or mapping it would block or never end
        if ids_path is not None:
            check_input_file(ids_path, "id list (--ids)")
        try:
            if src.suffix.lower() == ".npz":
                return cls._open_npz(src)
            if ids_path is None:
                raise VectorFileError(src, "an .npy vector file needs an id list (--ids FILE, one key a line)")
            reader = _npy_reader(src)
            raw, wheres = read_ids_file(Path(ids_path))
            if len(raw) != reader.rows:
                raise VectorFileError(src, f"{reader.rows} vectors but {len(raw)} ids in {ids_path}")
            keys = normalise_keys(raw, Path(ids_path), noun="id", wheres=wheres)
            _check_keys(Path(ids_path), keys, reader, "ids")
            return cls(src, keys, reader)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            if isinstance(exc, VectorFileError):
                raise
            raise VectorFileError(src, f"unreadable vector file ({exc})") from exc

    @classmethod
    def _open_npz(cls, src: Path) -> VectorFile:
        with zipfile.ZipFile(src) as zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            if "vectors" not in members or "ids" not in members:
                raise VectorFileError(src, f"an .npz needs arrays 'ids' and 'vectors' (found {sorted(members)})")
            unknown = sorted(set(members) - NPZ_ARRAYS)
            if unknown:  # a misspelt 'query_id' would otherwise drop the queries without a word
                raise VectorFileError(src, f"holds arrays Embridge does not read ({', '.join(unknown)}); an .npz holds "
                                      "'ids' and 'vectors', and optionally 'query_ids' and 'query_vectors' "
                                      "(labels are imported from a CSV or JSONL file)")
            if ("query_ids" in members) != ("query_vectors" in members):
                raise VectorFileError(src, "an .npz with queries needs both 'query_ids' and 'query_vectors'")
            vectors = _member_reader(src, zf, members["vectors"])
            keys = _keys(src, zf, members["ids"], vectors.rows)
            _check_keys(src, keys, vectors, "ids")
            if "query_vectors" not in members:
                return cls(src, keys, vectors)
            queries = _member_reader(src, zf, members["query_vectors"])
            query_keys = _keys(src, zf, members["query_ids"], queries.rows)
            _check_keys(src, query_keys, queries, "query_ids")
            if queries.dim != vectors.dim:
                raise VectorFileError(src, f"query_vectors are {queries.dim}-d but vectors are {vectors.dim}-d")
            return cls(src, keys, vectors, query_keys, queries)


NPZ_ARRAYS = frozenset({"ids", "vectors", "query_ids", "query_vectors"})


def _read_exactly(fh: BinaryIO, size: int, path: Path, short: str) -> np.ndarray:
    """``size`` bytes into one buffer, read in 1 MiB pieces (one big read of a zip member keeps copies)."""
    out = np.empty(size, dtype=np.uint8)
    pos = 0
    while pos < size:
        piece = fh.read(min(_PIECE, size - pos))
        if not piece:
            raise VectorFileError(path, short)
        out[pos:pos + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
        pos += len(piece)
    return out


def _read_header(fh: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=10_000)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=10_000)
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype), fh.tell()


def _validated(src: Path, shape: tuple[int, ...], dtype: np.dtype, data_bytes: int, member: str | None) -> None:
    if dtype.hasobject:
        raise VectorFileError(src, "unreadable vector file (Object arrays cannot be loaded when allow_pickle=False)")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > data_bytes:
        if member:
            raise VectorFileError(src, f"member {member} claims {claimed} bytes of data in its header but holds "
                                  f"{data_bytes}")
        raise VectorFileError(src, f"the header claims {claimed} bytes of data but the file holds {data_bytes} "
                              "(truncated or forged)")
    if dtype.kind not in "fiu":
        raise VectorFileError(src, f"vectors must be numeric, got dtype {dtype}")
    if len(shape) != 2:
        raise VectorFileError(src, f"vectors must be a 2-D matrix, got shape {shape}")
    if shape[0] == 0:
        name = (member or "").removesuffix(".npy")
        raise VectorFileError(src, f"'{name}' is empty: leave it out of a file without queries" if name and
                              name != "vectors" else "the file holds no vectors")
    if shape[1] == 0:
        raise VectorFileError(src, f"vectors have shape {shape}: no values per vector")
    if shape[1] > MAX_DIM:
        raise VectorFileError(src, f"vectors of {shape[1]:,} values each; Embridge takes at most {MAX_DIM:,} (embedding "
                              "models give hundreds to a few thousand)")


def read_ids_file(path: Path) -> tuple[list[str], list[str]]:
    """Keys of an id list (one a line, UTF-8, BOM allowed) and where each stands ("line 3")."""
    check_input_file(path, "id list (--ids)")  # /dev/zero would fill the memory, a FIFO block forever
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise VectorFileError(path, utf8_problem(path, exc)) from None
    except OSError as exc:
        raise VectorFileError(path, f"cannot read the id list ({exc.strerror or exc})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    blank = next((n for n, line in enumerate(lines, start=1) if not line.strip()), None)
    if blank is not None:
        raise VectorFileError(path, f"line {blank} is empty; the id list needs one key a line, in row order")
    return lines, [f"line {n}" for n in range(1, len(lines) + 1)]


def npy_header(src: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an .npy file, refused when the header claims more data than the file holds."""
    with open(src, "rb") as fh:
        shape, _, dtype, header = _read_header(fh)
        size = src.stat().st_size
    claimed = 0 if dtype.hasobject else math.prod(shape) * dtype.itemsize
    if claimed > size - header:
        raise VectorFileError(src, f"the header claims {claimed} bytes of data but the file holds "
                              f"{size - header} (truncated or forged)")
    return shape, dtype


def _npy_reader(src: Path) -> MatrixReader:
    with open(src, "rb") as fh:
        shape, fortran, dtype, header = _read_header(fh)
        size = src.stat().st_size
    _validated(src, shape, dtype, size - header, None)
    return MatrixReader(src, None, (shape[0], shape[1]), dtype, fortran, header, mapped=True)


def _member_reader(src: Path, zf: zipfile.ZipFile, name: str) -> MatrixReader:
    info = zf.getinfo(name)
    check_member(src, info)
    with zf.open(info) as fh:
        shape, fortran, dtype, header = _read_header(fh)
    _validated(src, shape, dtype, info.file_size - header, name)
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
        with open(src, "rb") as raw:
            raw.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
        name_len, extra_len = fields[-2], fields[-1]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        return MatrixReader(src, name, (shape[0], shape[1]), dtype, fortran, start + header, mapped=True,
                            crc=(info.CRC, start))
    if fortran:
        raise VectorFileError(src, f"member {name} is column-major and compressed; save it with np.savez "
                              "(uncompressed) or as a C-ordered array")
    return MatrixReader(src, name, (shape[0], shape[1]), dtype, False, header, mapped=False)


def _keys(src: Path, zf: zipfile.ZipFile, name: str, rows: int) -> list[str]:
    """Keys of an ids member: a 1-D array of text, UTF-8 bytes or integers, normalised as importers store them."""
    info = zf.getinfo(name)
    check_member(src, info)
    what = name.removesuffix(".npy")
    noun = what.replace("_", " ").removesuffix("s")  # "id" or "query id"
    with zf.open(info) as fh:
        shape, _, dtype, header = _read_header(fh)
    if dtype.kind not in "USiu":
        raise VectorFileError(src, f"{what} must be text or integers, got dtype {dtype}")
    if math.prod(shape) * dtype.itemsize > info.file_size - header:
        raise VectorFileError(src, f"member {name} claims {math.prod(shape) * dtype.itemsize} bytes of data in "
                              f"its header but holds {info.file_size - header}")
    if len(shape) != 1:
        shown = "a single value" if not shape else f"shape {shape}"
        raise VectorFileError(src, f"{what} must be a 1-D array with one key per vector, got {shown}")
    if shape[0] != rows:
        vectors = "vectors" if what == "ids" else "query vectors"
        raise VectorFileError(src, f"{rows} {vectors} but {shape[0]} {what.replace('_', ' ')}")
    if dtype.itemsize == 0 and shape[0]:
        raise VectorFileError(src, f"all {shape[0]} {what} are empty strings (dtype {dtype})")
    with zf.open(info) as fh:
        values = np.lib.format.read_array(fh, allow_pickle=False)
    if dtype.kind == "U" and values.size and dtype.itemsize:  # UCS-4 code units beyond Unicode: no text at all
        units = np.ascontiguousarray(values, dtype=dtype.newbyteorder("=")).view(np.uint32).reshape(len(values), -1)
        beyond = np.flatnonzero((units > 0x10FFFF).any(axis=1))
        if beyond.size:
            raise VectorFileError(src, f"{noun} {int(beyond[0]) + 1} is not Unicode text (it holds code point "
                                  f"0x{int(units[beyond[0]].max()):X}, beyond U+10FFFF)")
    raw: list[str | int] = []
    for n, value in enumerate(values.tolist(), start=1):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise VectorFileError(src, f"{noun} {n} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        raw.append(value)
    return normalise_keys(raw, src, noun=noun)


def _check_keys(src: Path, keys: list[str], reader: MatrixReader, what: str) -> None:
    if len(keys) != reader.rows:
        noun = "vectors" if what == "ids" else "query vectors"
        raise VectorFileError(src, f"{reader.rows} {noun} but {len(keys)} {what.replace('_', ' ')}")
    seen: set[str] = set()
    dupes = {k for k in keys if k in seen or seen.add(k)}
    if dupes:
        raise VectorFileError(src, f"duplicate {what.replace('_', ' ')}, e.g. {sorted(dupes)[:3]}")
