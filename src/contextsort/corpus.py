"""Corpus readers and the on-disk document store.

Readers stream records from JSONL (plain, .gz, .zst), JSON arrays, Parquet and text
folders (one document per .txt file). Every record is either accepted into the
document store or rejected with file, line and reason: nothing is dropped silently,
and what ingest stores cannot fail a later stage (see docs/input.md). An input may
name its own fields (`data.jsonl:text=content`); the reader counts each input.

The document store keeps documents out of Python memory: the raw record (as one
JSON line, all original fields kept) and its text live in two byte files with
int64 offset arrays, so later stages read any document by position.

Reading is batched where it pays: JSON lines are decoded a few thousand at a time
(one comprehension, plain good records made inline), the store takes records a batch
at a time (joined bytes, batch hashes), and a JSONL record that needs no change is
stored as its own input line, never encoded again. With `blocks=True` (what ingest
uses), runs of plain records skip the per-record path altogether: a block of JSON lines
read by pyarrow.json, or a Parquet batch, becomes one RecordBlock of columns
(arrow_ingest.py), stored with `DocStoreWriter.add_block`, with the same store files and
rejects; any block the fast path cannot vouch for is read line by line. Inputs can be read in pieces
(`plan_pieces`, `CorpusReader.read_piece`) and the store built in shards; see
parallel_ingest.py.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import xxhash

TEXT_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".parquet", ".txt")


from .errors import InputError  # noqa: E402  (re-exported: bad input that stops the run)


class RecordError(InputError):
    """Strict mode: one bad record stops the run; names its file, line (0: none) and field."""

    def __init__(self, source: str, line: int, field: str | None, reason: str):
        self.source, self.line, self.field, self.reason = source, line, field, reason
        super().__init__(self.message())

    def message(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        fld = f" field '{self.field}':" if self.field else ""
        return f"{where}:{fld} {self.reason}"

    def __str__(self) -> str:  # the line may be corrected after the error was raised (a piece of a file)
        return self.message()

    def __reduce__(self):  # raised inside Ray tasks: rebuilt from its parts
        return (RecordError, (self.source, self.line, self.field, self.reason))
from .atomic import Writeback, commit, commit_many, save_npy, write_unsynced
from .textkey import bytes_hashes, hash_utf8, text_hashes  # noqa: E402,F401  (exact-duplicate hashes; re-exported)
from .arrow_ingest import RecordBlock, json_lines_block, parquet_batch_block  # noqa: E402  (columnar fast paths)


@dataclass(slots=True)
class Record:
    """One accepted input document."""

    source: str  # file the record came from
    line: int  # 1-based line (JSONL) or row (Parquet) number; 0 for text files
    id: object  # original id (or its position when the record has none)
    text: str
    fields: dict  # all original fields, as read (text included)
    raw: bytes | None = None  # the input line, when `fields` is exactly what it decodes to (stored as is)
    id_from_position: bool = False  # the id is the record's position among the records read (it had none)


@dataclass
class Reject:
    """One input record that was not accepted, with why."""

    source: str
    line: int
    id: object
    reason: str

    def to_json(self) -> dict:
        return {"id": self.id, "reason": self.reason, "source": self.source, "line": self.line}


# ---------------------------------------------------------------------------
# Inputs: specs with per-input field names, folder listing, content fingerprint
# ---------------------------------------------------------------------------

FIELD_KEYS = ("text", "id", "label")
_MAPPING = re.compile(r"^(?:text|id|label)=[^,=:]+(?:,(?:text|id|label)=[^,=:]+)*$")


@dataclass(frozen=True)
class InputSpec:
    """One input as given: a path, and the fields this input reads instead of the run's.

    `fields` maps "text" / "id" / "label" to this input's field names, e.g. {"text": "content"}.
    """

    spec: str
    path: Path
    fields: dict = dc_field(default_factory=dict)


def parse_input_spec(spec: str | os.PathLike) -> InputSpec:
    """Split `data.jsonl:text=content,id=doc_id,label=cat` into the path and its field mapping.

    The suffix after the last ':' is a mapping only when it is `key=value(,key=value)*`
    with keys text/id/label, and the whole string does not name an existing file, so
    paths that contain ':' still work.
    """
    s = os.fspath(spec)
    path, sep, suffix = s.rpartition(":")
    if not sep or not path or not _MAPPING.match(suffix) or os.path.lexists(s):
        return InputSpec(s, Path(s), {})
    fields: dict[str, str] = {}
    for pair in suffix.split(","):
        key, value = pair.split("=", 1)
        if key in fields:
            raise InputError(f"{s}: field '{key}' is mapped twice")
        fields[key] = value
    return InputSpec(s, Path(path), fields)


def path_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an input (None for a regular file or a folder).

    Checked before opening, so that a FIFO never blocks the run and a symbolic link
    loop is not reported as a missing file.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        if os.path.islink(path):
            return f"broken symbolic link (to {os.readlink(path)})"
        if e.errno == errno.ENOENT:
            return "no such file or directory"
        return f"cannot access: {e.strerror}"
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return None
    kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
    return f"not a regular file ({kind})"


def list_folder(root: Path, exclude: Iterable[Path] = ()) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Corpus files under a folder, sorted; and the corpus-named entries that cannot be read, with why.

    Symbolic links to folders are followed, each real folder once: a second path to a folder
    (a link loop, or two links to the same data) is reported, not read twice.
    A FIFO, a broken link or a link loop named like a corpus file is reported rather than
    skipped. Folders in `exclude` (the run directory, when it sits inside an input folder)
    are never entered.
    """
    files: list[Path] = []
    bad: list[tuple[Path, str]] = []
    skip = {Path(e).resolve() for e in exclude}
    seen: dict[tuple[int, int], Path] = {}  # each real folder, and the path it is read through
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        seen.setdefault((st.st_dev, st.st_ino), Path(dirpath))
        keep = []
        for d in sorted(dirnames):
            sub = Path(dirpath) / d
            if skip and sub.resolve() in skip:
                continue
            try:
                sst = os.stat(sub)
            except OSError as e:
                bad.append((sub, path_problem(sub) or f"cannot access: {e.strerror}"))
                continue
            first = seen.get((sst.st_dev, sst.st_ino))
            if first is not None:
                bad.append((sub, f"the same folder as {first} (symbolic link), read once"))
                continue
            seen[(sst.st_dev, sst.st_ino)] = sub
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if not name.endswith(TEXT_SUFFIXES):
                continue
            f = Path(dirpath) / name
            problem = path_problem(f)
            if problem is None and f.is_file():
                files.append(f)
            else:
                bad.append((f, problem or "not a regular file"))
    return sorted(files), sorted(bad)


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Input specs (or paths) expanded into their readable corpus files, in sorted order."""
    out: list[Path] = []
    for spec in paths:
        p = parse_input_spec(spec).path
        problem = path_problem(p)
        if problem:
            raise InputError(f"{p}: {problem}")
        if p.is_dir():
            files, _ = list_folder(p)
            if not files:
                raise InputError(f"{p}: directory holds no .jsonl/.json(.gz/.zst), .parquet or .txt files")
            out.extend(files)
        else:
            out.append(p)
    return out


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """xxh3-128 of a file's bytes (several GB/s: far below the cost of embedding them)."""
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            h.update(data)
    return h.hexdigest()


def fingerprint_inputs(paths: Iterable[str | os.PathLike], exclude: Iterable[Path] = ()) -> str:
    """Fingerprint of the inputs by content: each spec (field mapping included), each file's bytes.

    An edit that keeps a file's size and mtime changes it; entries that cannot be read
    (missing, FIFO, broken link) enter with their reason and are never opened.
    """
    h = hashlib.sha256()
    for spec in paths:
        inp = parse_input_spec(spec)
        h.update(f"input {inp.spec}\n".encode())
        problem = path_problem(inp.path)
        if problem:
            h.update(f"{inp.path}|{problem}\n".encode())
            continue
        if inp.path.is_dir():
            files, bad = list_folder(inp.path, exclude)
        else:
            files, bad = [inp.path], []
        for p in files:
            h.update(f"{p.resolve()}|{file_digest(p)}\n".encode())
        for p, why in bad:
            h.update(f"{p}|{why}\n".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------


def file_chunks(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes (decompressed for .gz / .zst) a piece at a time, in no relation to its lines:
    a JSON array on one line of a GB is read in linear time."""
    if path.name.endswith((".gz", ".zst")):
        yield from decompressed_chunks(path)
        return
    yield from byte_range(path, 0, None, chunk)


def byte_range(path: Path, start: int, stop: int | None, chunk: int) -> Iterator[bytes]:
    """Bytes [start, stop) of a file (stop None: to its end), `chunk` bytes at a time."""
    with open(path, "rb") as fh:
        fh.seek(start)
        left = None if stop is None else stop - start
        while data := fh.read(chunk if left is None else min(chunk, left)):
            if left is not None:
                left -= len(data)
            yield data


def decompressed_chunks(path: Path, chunk: int = 1 << 18) -> Iterator[bytes]:
    """The decompressed bytes of a .gz or .zst file (any number of members or frames), a piece at a time.

    Decompressed by hand so that nothing read is lost: a file that ends inside a member or
    frame raises OSError after every piece before it (zstandard's stream_reader ends
    silently there; GzipFile.read drops what its failing call had decompressed), and so
    does corrupt data (zlib.error, ZstdError).
    """
    gz = path.name.endswith(".gz")
    if gz:
        import zlib

        def new():
            return zlib.decompressobj(wbits=31)  # one gzip member: header, deflate data, CRC and length checked

        errors: type | tuple = zlib.error
        unit = "gzip member"
    else:
        import zstandard

        new = zstandard.ZstdDecompressor().decompressobj
        errors = zstandard.ZstdError
        unit = "zstd frame"
    dobj = new()
    fed = False  # has the current decompressor been given any byte of its member / frame?
    started = False  # has a whole member / frame been read?
    with open(path, "rb") as raw:
        while data := raw.read(chunk):
            while data:
                if gz and started and not fed:
                    data = data.lstrip(b"\0")  # gzip allows zero padding after a member (as GzipFile does)
                    if not data:
                        break
                fed = True
                try:
                    out = dobj.decompress(data)
                except errors as e:
                    raise OSError(f"corrupt {unit}: {e}") from e
                data = b""
                if dobj.eof:  # member / frame finished: what is left belongs to the next one
                    data = dobj.unused_data
                    dobj = new()
                    fed, started = False, True
                if out:
                    yield out
    if fed:
        raise OSError(f"truncated file (it ends inside a {unit})")


CHUNK_BYTES = 1 << 22  # bytes of a plain file read at once


def plain_blocks(path: Path, start: int = 0, stop: int | None = None, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Bytes [start, stop) of an uncompressed file as blocks of whole lines (each cut after an LF; a BOM at byte 0 dropped).

    Cut after LF bytes, the pieces of a file hold, together, the whole file's lines, however
    the block's own lines are then split (LF, CRLF, lone CR: `bytes.splitlines`)."""
    # each read is `chunk` bytes already: cut at every one
    return line_blocks(byte_range(path, start, stop, chunk), size=1, drop_bom=start == 0)


def line_blocks(chunks: Iterable[bytes], size: int = CHUNK_BYTES, drop_bom: bool = True) -> Iterator[bytes]:
    """A stream's pieces regrouped into blocks of whole lines of at least `size` bytes (each cut
    after the last LF of a piece, the last block maybe not; a BOM at the start dropped). The
    unfinished line is a list of pieces, joined once however long. A read error comes after
    the whole lines read before it."""
    pending: list = []
    held = 0

    def take(upto: int | None) -> bytes:  # the pending pieces, up to byte `upto` of the last one (None: all)
        nonlocal pending, held, drop_bom
        if upto is None:
            block, pending = b"".join(pending), []
        else:
            last = pending[-1]
            block = b"".join([*pending[:-1], memoryview(last)[:upto]])  # one copy of the block, not two
            pending = [last[upto:]] if upto < len(last) else []
        held = sum(map(len, pending))
        if drop_bom and block:
            drop_bom = False
            block = block.removeprefix(codecs.BOM_UTF8)
        return block

    it = iter(chunks)
    while True:
        try:
            data = next(it)
        except StopIteration:
            break
        except Exception:
            pending = [b"".join(pending)]
            block = take(pending[0].rfind(b"\n") + 1)
            if block:
                yield block
            raise
        pending.append(data)
        held += len(data)
        cut = data.rfind(b"\n") + 1 if held >= size else 0  # no LF in this piece: no new place to cut
        if cut:
            block = take(cut)
            if block:
                yield block
    block = take(None)
    if block:
        yield block


def line_cuts(path: Path, pieces: int) -> list[int]:
    """Byte offsets that cut a file into about `pieces` ranges, each cut just after an LF byte."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as fh:
        for k in range(1, pieces):
            target = max(cuts[-1], size * k // pieces)
            fh.seek(target)
            pos = target
            while True:  # the first LF at or after the target
                data = fh.read(1 << 16)
                if not data:
                    pos = size
                    break
                i = data.find(b"\n")
                if i >= 0:
                    pos += i + 1
                    break
                pos += len(data)
            if cuts[-1] < pos < size:
                cuts.append(pos)
    return cuts + [size]


def _lone_surrogate_field(obj: dict) -> str | None:
    """The first field of a decoded JSON object holding a lone surrogate (not encodable as UTF-8)."""
    for key, value in obj.items():
        try:
            json.dumps({key: value}, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return key
    return None


def _fields_list(fields: dict, limit: int = 12) -> str:
    names = [str(k) for k in fields]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "none"


@dataclass
class InputCount:
    """What one input yielded: records read, documents accepted, records rejected."""

    input: str
    records: int = 0
    documents: int = 0
    rejected: int = 0

    def to_json(self) -> dict:
        return {"input": self.input, "records": self.records, "documents": self.documents, "rejected": self.rejected}


@dataclass(frozen=True)
class Piece:
    """A part of one input that is read on its own: a whole file, a byte range of a plain
    JSON-lines file (cut after an LF), a range of a Parquet file's row groups, a run of a
    folder's .txt files, or an entry that cannot be read (`problem`: one reject).

    `line` numbers inside a byte range count from its start; the driver adds the lines of
    the earlier ranges of the same file (`first_piece_of_file` marks where a file starts).
    """

    input: int  # index of the input spec it belongs to
    kind: str  # "lines" | "json" (array or lines) | "parquet" | "txt" | "problem"
    path: str  # the file (for txt: the folder the ids are relative to)
    start: int = 0  # lines: first byte; parquet: first row group
    stop: int = -1  # lines: end byte; parquet: end row group (-1: to the end)
    files: tuple = ()  # txt: the files, in order
    reason: str = ""  # problem: why the entry cannot be read
    first_piece_of_file: bool = True


def plan_pieces(specs: list[InputSpec], exclude: Iterable[Path] = (), piece_bytes: int | None = None,
                rows_per_piece: int | None = None, txt_per_piece: int = 4096) -> list[Piece]:
    """The inputs cut into pieces, in reading order (the order of the sequential reader).

    Plain JSON-lines files larger than `piece_bytes` are cut into byte ranges, Parquet
    files into runs of row groups of about `rows_per_piece` rows; None keeps files whole.
    Compressed files and JSON arrays are one piece each (they cannot be entered midway).
    """
    exclude = [Path(e) for e in exclude]
    out: list[Piece] = []

    def file_pieces(k: int, f: Path) -> None:
        name = f.name
        if name.endswith(".txt"):
            out.append(Piece(k, "txt", str(f.parent), files=(str(f),)))
        elif name.endswith(".parquet"):
            out.extend(parquet_pieces(k, f, rows_per_piece))
        elif name.endswith((".jsonl", ".json")) and piece_bytes and os.path.getsize(f) > piece_bytes:
            if name.endswith(".json") and CorpusReader.holds_array(f):
                out.append(Piece(k, "json", str(f)))
                return
            cuts = line_cuts(f, -(-os.path.getsize(f) // piece_bytes))
            for j, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
                out.append(Piece(k, "lines", str(f), a, b, first_piece_of_file=j == 0))
        else:
            out.append(Piece(k, "json", str(f)))

    for k, inp in enumerate(specs):
        root = inp.path
        problem = path_problem(root)
        if problem:
            out.append(Piece(k, "problem", str(root), reason=problem))
            continue
        if not root.is_dir():
            file_pieces(k, root)
            continue
        files, bad = list_folder(root, exclude)
        out.extend(Piece(k, "problem", str(f), reason=why) for f, why in bad)
        if not files and not bad:
            out.append(Piece(k, "problem", str(root), reason="directory holds no .jsonl/.json(.gz/.zst), .parquet or .txt files"))
        txt: list[str] = []
        for f in files + [None]:
            if f is not None and f.name.endswith(".txt") and len(txt) < txt_per_piece:
                txt.append(str(f))
                continue
            if txt:
                out.append(Piece(k, "txt", str(root), files=tuple(txt)))
                txt = []
            if f is not None:
                if f.name.endswith(".txt"):
                    txt.append(str(f))
                else:
                    file_pieces(k, f)
    return out


def parquet_pieces(k: int, path: Path, rows_per_piece: int | None) -> list[Piece]:
    """A Parquet file as runs of whole row groups of about `rows_per_piece` rows (one piece if None or unreadable)."""
    if not rows_per_piece:
        return [Piece(k, "parquet", str(path))]
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception:  # the piece's reader rejects it with why
        return [Piece(k, "parquet", str(path))]
    out, start, rows = [], 0, 0
    for g in range(meta.num_row_groups):
        rows += meta.row_group(g).num_rows
        if rows >= rows_per_piece or g == meta.num_row_groups - 1:
            out.append(Piece(k, "parquet", str(path), start, g + 1, first_piece_of_file=start == 0))
            start, rows = g + 1, 0
    return out or [Piece(k, "parquet", str(path))]


BLANK = object()  # a line left to the line-by-line path (blank lines: numbered, never a record)
_SCAN_JSON = json.JSONDecoder().scan_once  # (value, end) of the JSON value at an index; StopIteration if none


class CorpusReader:
    """Streams Records and Rejects from inputs; counts what each input yielded.

    `paths` are input specs (`parse_input_spec`): a path, optionally with its own field
    names (`data.jsonl:text=content,id=doc_id`). text_field / id_field / label_field
    name the run's fields: a mapped input's fields are renamed to them in the stored
    record. For text folders the id is the path relative to the folder and the label
    the parent folder's name. In strict mode the first bad record, or an input that
    yields no document, raises InputError. After iterating, `counts` holds one
    InputCount per input (in order), for the caller to warn about inputs that yielded
    no document.

    `read_piece` reads one piece of an input on its own (see `plan_pieces`): positions
    and the line numbers of byte ranges then count from the piece's start, and
    `lines_read` says how many lines it held, for the caller to put them in place.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike],
        text_field: str = "text",
        id_field: str = "id",
        label_field: str | None = "label",
        strict: bool = False,
        exclude: Iterable[str | os.PathLike] = (),
        blocks: bool = False,
    ):
        self.inputs = [parse_input_spec(p) for p in paths]
        self.blocks = blocks  # may yield RecordBlocks (arrow_ingest.py) for runs of plain good records
        self.exclude = [Path(e) for e in exclude]  # folders never read (the run directory)
        self.raw_paths = [i.path for i in self.inputs]
        self.text_field = text_field
        self.id_field = id_field
        self.label_field = label_field
        self.strict = strict
        self.position = 0  # running count of records read (for missing ids)
        self.lines_read = 0  # lines of the last piece read
        self.counts: list[InputCount] = []
        self._src_fields: dict[str, str | None] = {}  # canonical field -> this input's field

    def __iter__(self) -> Iterator[Record | Reject]:
        self.counts = [InputCount(inp.spec) for inp in self.inputs]
        pieces = plan_pieces(self.inputs, self.exclude)
        for j, piece in enumerate(pieces):
            count = self.counts[piece.input]
            for item in self.read_piece(piece):
                if isinstance(item, Reject):
                    count.records += 1
                    count.rejected += 1
                else:
                    k = 1 if isinstance(item, Record) else len(item)
                    count.records += k
                    count.documents += k
                yield item
            last_of_input = j + 1 == len(pieces) or pieces[j + 1].input != piece.input
            if self.strict and last_of_input and count.documents == 0:
                raise InputError(f"{count.input}: input yielded no document ({count.records} records read)")

    def read_piece(self, piece: Piece) -> Iterator[Record | Reject]:
        """The records and rejects of one piece, in order (with `blocks`, runs of records may come as RecordBlocks)."""
        inp = self.inputs[piece.input]
        self._src_fields = {
            self.text_field: inp.fields.get("text", self.text_field),
            self.id_field: inp.fields.get("id", self.id_field),
        }
        if self.label_field:
            self._src_fields[self.label_field] = inp.fields.get("label", self.label_field)
        elif "label" in inp.fields:
            self._src_fields["label"] = inp.fields["label"]
        self.lines_read = 0
        path = Path(piece.path)
        if piece.kind == "problem":
            self.position += 1
            yield self._reject(piece.path, 0, None, piece.reason)
        elif piece.kind == "txt":
            yield from self._read_dir(path, [Path(f) for f in piece.files])
        elif piece.kind == "parquet":
            yield from self._read_parquet(path, piece.start, None if piece.stop < 0 else piece.stop)
        elif piece.kind == "lines":
            yield from self._read_lines(path, piece.start, piece.stop)
        else:
            yield from self._read_file(path)

    # -- helpers -----------------------------------------------------------
    @property
    def _text_src(self) -> str:
        return self._src_fields.get(self.text_field, self.text_field)

    def _reject(self, source: str, line: int, rid: object, reason: str, field: str | None = None) -> Reject:
        if self.strict:
            raise RecordError(source, line, field, reason)
        return Reject(source, line, rid, reason)

    def _make(self, source: str, line: int, original: dict, raw: bytes | None = None) -> Record | Reject:
        """A decoded record to a Record (mapped fields renamed to the run's names) or a Reject.

        `raw`: the input line `original` was decoded from; kept when the record is stored unchanged.
        """
        pos = self.position
        self.position += 1
        text_src = self._text_src
        rid = original.get(self._src_fields[self.id_field])
        renames = {src: dst for dst, src in self._src_fields.items() if src != dst}
        for src, dst in renames.items():
            if dst in original:
                return self._reject(source, line, rid, f"field '{dst}' clashes with this input's mapping of '{src}' to '{dst}'", dst)
        if text_src not in original:
            return self._reject(
                source, line, rid, f"missing text field '{text_src}' (record has fields: {_fields_list(original)})", text_src
            )
        fields = {renames.get(k, k): v for k, v in original.items()} if renames else original
        from_position = rid is None
        if from_position:  # a missing or null id gets the record's position among all records read
            rid = pos
            if self.id_field in fields:
                fields = dict(fields)
                fields[self.id_field] = pos
            else:
                fields = {self.id_field: pos, **fields}
        text = fields[self.text_field]
        if text is None:
            return self._reject(source, line, rid, f"text field '{text_src}' is null", text_src)
        if not isinstance(text, str):
            return self._reject(source, line, rid, f"text field '{text_src}' is {type(text).__name__}, not a string", text_src)
        if not text.strip():
            return self._reject(source, line, rid, "empty text", text_src)
        return Record(source, line, rid, text, fields, raw if fields is original else None, from_position)

    def _decoded(self, src: str, lineno: int, raw: bytes) -> Record | Reject:
        """One JSONL line to a Record or Reject."""
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.position += 1
            return self._reject(src, lineno, None, f"invalid UTF-8 at byte {e.start}")
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            self.position += 1
            return self._reject(src, lineno, None, f"malformed JSON: {e.msg} (column {e.colno})")
        return self._object(src, lineno, obj, "\\ud" in s or "\\uD" in s, raw)

    def _object(self, src: str, lineno: int, obj: object, may_have_surrogates: bool, raw: bytes | None = None) -> Record | Reject:
        """A decoded JSON value to a Record or Reject (lone surrogates checked only where an escape was seen)."""
        if not isinstance(obj, dict):
            self.position += 1
            return self._reject(src, lineno, None, f"JSON value is a {type(obj).__name__}, not an object")
        if may_have_surrogates:
            bad = _lone_surrogate_field(obj)
            if bad is not None:
                self.position += 1
                id_src = self._src_fields[self.id_field]
                rid = None if bad == id_src else obj.get(id_src)  # an id with a surrogate cannot go in the reject file
                return self._reject(src, lineno, rid, f"field '{bad}' holds a lone surrogate escape (not valid Unicode)", bad)
        return self._make(src, lineno, obj, raw)

    def _decode_lines(self, src: str, first: int, lines: list[bytes]) -> list[Record | Reject]:
        """Consecutive lines (the first numbered `first`) to Records and Rejects; blank lines are skipped.

        The batch is decoded in comprehensions and plain good records are made inline; any
        other line goes through `_decoded`, and a batch that fails to decode is decoded again
        line by line, so that a bad line costs only itself, with the same reason.
        """
        scan = _SCAN_JSON
        try:  # the C scanner on each line (what json.loads does, less its Python layers)
            texts = [raw.decode("utf-8") for raw in lines]
            objs = [scan(s, 0) if s.startswith("{") else BLANK for s in texts]
        except (ValueError, StopIteration):  # invalid UTF-8 or JSON somewhere in the batch
            return [self._decoded(src, first + k, raw) for k, raw in enumerate(lines) if raw.strip()]
        id_src, text_src = self._src_fields[self.id_field], self._text_src
        plain = all(src == dst for dst, src in self._src_fields.items())  # no field renamed
        out = []
        for k, (got, raw, s) in enumerate(zip(objs, lines, texts)):
            if got is BLANK or got[1] != len(s):  # blank, not an object, space around it, more after it
                if raw.strip():
                    out.append(self._decoded(src, first + k, raw))
                continue
            obj = got[0]
            surrogates = b"\\ud" in raw or b"\\uD" in raw
            if plain and not surrogates and type(obj) is dict:
                rid, text = obj.get(id_src), obj.get(text_src)
                if rid is not None and type(text) is str and text and not text.isspace():  # a plain good record
                    self.position += 1
                    out.append(Record(src, first + k, rid, text, obj, raw))
                    continue
            out.append(self._object(src, first + k, obj, surrogates, raw))
        return out

    def _read_lines(self, path: Path, start: int = 0, stop: int | None = None) -> Iterator[Record | Reject]:
        """JSON lines of a file (plain: bytes [start, stop); or .gz / .zst), in batches.

        Numbered from the start of the range; an unreadable rest of the file (a truncated
        .gz, a failing disk) is one reject at the first line not read.
        """
        src = str(path)
        lineno = 0
        compressed = path.name.endswith((".gz", ".zst"))
        if compressed:
            batches = line_blocks(decompressed_chunks(path))
        else:
            batches = plain_blocks(path, start, stop)
        fast = self.blocks and all(s == d for d, s in self._src_fields.items())
        try:
            for lines in batches:
                block = json_lines_block(lines, src, lineno + 1, self.text_field, self.id_field, self.label_field) if fast else None
                if block is not None:
                    self.position += len(block)
                    lineno += len(block)
                    yield block
                    continue
                lines = lines.splitlines()
                yield from self._decode_lines(src, lineno + 1, lines)
                lineno += len(lines)
        except InputError:
            raise
        except Exception as e:  # truncated .gz (EOFError/OSError), .zst (ZstdError), unreadable file (OSError)
            if not isinstance(e, (OSError, EOFError)) and type(e).__name__ != "ZstdError":
                raise
            self.position += 1
            yield self._reject(src, lineno + 1, None, f"unreadable file from this line on: {e}")
        finally:
            self.lines_read = lineno

    def _read_file(self, path: Path) -> Iterator[Record | Reject]:
        name = path.name
        if name.endswith(".parquet"):
            yield from self._read_parquet(path)
            return
        if name.endswith(".txt"):
            yield from self._read_dir(path.parent, [path])
            return
        try:
            holds_array = name.endswith((".json", ".json.gz", ".json.zst")) and self.holds_array(path)
        except InputError:
            raise
        except Exception as e:
            if not isinstance(e, (OSError, EOFError)) and type(e).__name__ != "ZstdError":
                raise
            holds_array = False  # the line reader rejects the unreadable file
        if not holds_array:
            yield from self._read_lines(path)
            return
        try:
            yield from self._read_json_array(path)
        except InputError:
            raise
        except Exception as e:  # a truncated .json.gz / .json.zst array
            if not isinstance(e, (OSError, EOFError)) and type(e).__name__ != "ZstdError":
                raise
            self.position += 1
            yield self._reject(str(path), 1, None, f"unreadable file from this line on: {e}")

    @staticmethod
    def holds_array(path: Path) -> bool:
        """Does this .json file hold one JSON array (rather than JSON lines)? Its first byte that is
        not blank (after a BOM) is '['."""
        held = b""
        for data in file_chunks(path, chunk=1 << 16):
            if held is not None:  # the first 3 bytes may hold a BOM, whatever the pieces
                held += data
                if len(held) < len(codecs.BOM_UTF8):
                    continue
                data, held = held.removeprefix(codecs.BOM_UTF8), None
            head = data.lstrip()
            if head:
                return head.startswith(b"[")
        head = (held or b"").removeprefix(codecs.BOM_UTF8).lstrip()
        return head.startswith(b"[")

    def _read_json_array(self, path: Path) -> Iterator[Record | Reject]:
        """Each element of a JSON array file is one record; its line is where the element starts."""
        src = str(path)
        data = b"".join(file_chunks(path))
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        try:
            s = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            self.position += 1
            yield self._reject(src, line, None, f"invalid UTF-8 at byte {e.start}: the JSON array cannot be read")
            return
        surrogates = "\\ud" in s or "\\uD" in s
        dec = json.JSONDecoder()
        ws = re.compile(r"\s*")
        pos = ws.match(s, 0).end() + 1  # past '['
        line, counted = 1, 0
        pos = ws.match(s, pos).end()
        if s.startswith("]", pos):
            return
        while True:
            line += s.count("\n", counted, pos)
            counted = pos
            try:
                obj, end = dec.raw_decode(s, pos)
            except json.JSONDecodeError as e:
                self.position += 1
                yield self._reject(src, e.lineno, None, f"malformed JSON array: {e.msg} (line {e.lineno} column {e.colno}); the rest of the file is unread")
                return
            yield self._object(src, line, obj, surrogates)
            pos = ws.match(s, end).end()
            if s.startswith(",", pos):
                pos = ws.match(s, pos + 1).end()
                continue
            if s.startswith("]", pos) and not s[ws.match(s, pos + 1).end():]:
                return
            lineno = s.count("\n", 0, pos) + 1
            self.position += 1
            yield self._reject(src, lineno, None, "malformed JSON array: expected ',' or ']' after an element; the rest of the file is unread")
            return

    def _read_parquet(self, path: Path, first_group: int = 0, stop_group: int | None = None) -> Iterator[Record | Reject]:
        """Rows of a Parquet file (row groups [first_group, stop_group)), read one row group at a time.

        Text in `binary` / `large_binary` columns is decoded per row; a value that is not
        valid UTF-8 rejects only its row. A row group that cannot be decoded rejects its
        own rows (each counted), never the rest of the file.
        """
        import pyarrow.parquet as pq

        src = str(path)
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:
            self.position += 1
            yield self._reject(src, 0, None, f"not a readable Parquet file: {e}")
            return
        names = pf.schema_arrow.names
        text_src = self._text_src
        groups = range(first_group, pf.num_row_groups if stop_group is None else stop_group)
        row = sum(pf.metadata.row_group(g).num_rows for g in range(first_group))  # rows before this piece
        if text_src not in names:
            # every row is rejected (so counts still add up), with the same reason
            reason = f"Parquet file has no column '{text_src}' (columns: {', '.join(names)})"
            last = row + sum(pf.metadata.row_group(g).num_rows for g in groups)
            for r in range(row + 1, last + 1):
                self.position += 1
                yield self._reject(src, r, None, reason, text_src)
            return
        fast = self.blocks and all(s == d for d, s in self._src_fields.items())
        for g in groups:
            group_end = row + pf.metadata.row_group(g).num_rows
            try:
                for batch in pf.iter_batches(batch_size=4096, row_groups=[g]):
                    block = self._parquet_block(batch, src, row + 1) if fast else None
                    if block is not None:
                        self.position += len(block)
                        row += len(block)
                        yield block
                        continue
                    bad: dict[int, str] = {}
                    names = batch.schema.names
                    columns = [_column_values(batch.column(c), name, name == text_src, bad) for c, name in enumerate(names)]
                    items = self._parquet_rows(src, row + 1, [dict(zip(names, values)) for values in zip(*columns)], bad)
                    row += batch.num_rows
                    yield from items
            except InputError:
                raise
            except Exception as e:  # corrupt page, truncated file, a type with no Python value
                reason = f"unreadable Parquet row group {g} ({group_end - row} rows left unread): {type(e).__name__}: {e}"
                if self.strict:
                    raise RecordError(src, row + 1, None, reason) from None
                while row < group_end:
                    row += 1
                    self.position += 1
                    yield Reject(src, row, None, reason)

    def _parquet_block(self, batch, src: str, first_row: int) -> RecordBlock | None:
        """The fast path for one batch; None (the ordinary path decides) when it does not apply or fails."""
        try:
            return parquet_batch_block(batch, src, first_row, self.text_field, self.id_field, self.label_field)
        except Exception:  # a type or value the fast path did not foresee: never a reject of its own
            return None

    def _parquet_rows(self, src: str, first: int, rows: list[dict], bad: dict[int, str]) -> list[Record | Reject]:
        """Rows of one Parquet batch (the first is row `first`) to Records and Rejects; plain good rows made inline."""
        id_src, text_src = self._src_fields[self.id_field], self._text_src
        plain = all(s == d for d, s in self._src_fields.items())
        out: list[Record | Reject] = []
        for r, obj in enumerate(rows):
            if r in bad:
                self.position += 1
                out.append(self._reject(src, first + r, None, bad[r]))
                continue
            if plain:
                rid, text = obj.get(id_src), obj.get(text_src)
                if rid is not None and type(text) is str and text and not text.isspace():
                    self.position += 1
                    out.append(Record(src, first + r, rid, text, obj))
                    continue
            out.append(self._make(src, first + r, obj))
        return out

    def _read_dir(self, root: Path, files: list[Path]) -> Iterator[Record | Reject]:
        for f in files:
            if not f.name.endswith(".txt"):
                yield from self._read_file(f)
                continue
            src = str(f)
            rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name
            self.position += 1
            try:
                data = f.read_bytes()
            except OSError as e:
                yield self._reject(src, 0, rel, f"unreadable file: {e}")
                continue
            if data.startswith(codecs.BOM_UTF8):
                data = data[len(codecs.BOM_UTF8):]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                yield self._reject(src, 0, rel, f"invalid UTF-8 at byte {e.start}")
                continue
            if not text.strip():
                yield self._reject(src, 0, rel, "empty text", self.text_field)
                continue
            fields = {self.id_field: rel, self.text_field: text}
            if f.parent != root:
                fields[self.label_field or "label"] = f.parent.name
            yield Record(src, 0, rel, text, fields)


def _column_values(col, name: str, is_text: bool, bad: dict[int, str]) -> list:
    """Python values of one Parquet column batch; rows whose value cannot be decoded go to `bad`.

    Binary text is decoded as UTF-8 per row; a string column holding invalid UTF-8 (Arrow
    does not check it on read) is decoded per row as well.
    """
    import pyarrow as pa

    t = col.type
    binary = pa.types.is_binary(t) or pa.types.is_large_binary(t)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return col.to_pylist()
        except UnicodeDecodeError:
            col = col.cast(pa.large_binary())
            binary = True
            is_text = True
    if not binary:
        return col.to_pylist()
    raw = col.to_pylist()
    if not is_text:
        return raw
    out = []
    for r, v in enumerate(raw):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError as e:
            bad.setdefault(r, f"field '{name}': invalid UTF-8 at byte {e.start}")
            out.append(None)
    return out


# ---------------------------------------------------------------------------
# Document store
# ---------------------------------------------------------------------------


INT53 = 1 << 53  # integers beyond this lose precision as float64
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def value_kind(v: object) -> str:
    """JSON kind of a stored value: null, bool, int, int53 (beyond 2**53), bigint (beyond int64), float, str, list, dict."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        if INT64_MIN <= v <= INT64_MAX:
            return "int" if -INT53 <= v <= INT53 else "int53"
        return "bigint"
    if isinstance(v, float):
        return "float"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "dict"
    return "str"  # str, and what the store writes as a string (bytes, dates, decimals from Parquet)


_PLAIN_KINDS = {str: "str", type(None): "null", bool: "bool", float: "float", list: "list", dict: "dict"}


class FieldTypes:
    """The kinds of value each top-level field holds across stored records, gathered at ingest.

    The Parquet writer derives its schema from this (formats/schema.py), so a field
    whose records disagree on type is decided before any expensive stage runs, and
    written without failing. Nested values (lists, objects) are typed by Arrow in
    batches; None marks a nested field Arrow cannot type (mixed element types, ...).
    """

    BATCH = 4096

    def __init__(self) -> None:
        self.kinds: dict[str, set[str]] = {}
        self.nested: dict[str, object] = {}  # field -> pyarrow DataType, or None (not typeable)
        self._pending: dict[str, list] = {}

    def add(self, fields: dict) -> None:
        """Note the kind of each value of one record."""
        all_kinds = self.kinds
        for key, value in fields.items():
            kind = _PLAIN_KINDS.get(type(value)) or value_kind(value)
            kinds = all_kinds.get(key)
            if kinds is None:
                kinds = all_kinds[key] = set()
            kinds.add(kind)
            if kind in ("list", "dict") and self.nested.get(key, 0) is not None:
                pending = self._pending.setdefault(key, [])
                pending.append(json.loads(json.dumps(value, default=str)))  # as the store holds it
                if len(pending) >= self.BATCH:
                    self._type_nested(key)

    def add_many(self, records: list[dict]) -> None:
        """`add` for each record in order, by field rather than by record (the same kinds and Arrow types)."""
        if not records:
            return
        shapes = set(map(tuple, records))
        if len(shapes) == 1:
            keys = next(iter(shapes))
            columns = {k: [r[k] for r in records] for k in keys}
        else:
            keys = tuple(dict.fromkeys(k for r in records for k in r))
            columns = {k: [r[k] for r in records if k in r] for k in keys}
        for key in keys:
            values = columns[key]
            kinds = self.kinds.get(key)
            if kinds is None:
                kinds = self.kinds[key] = set()
            types = set(map(type, values))
            kinds.update(_PLAIN_KINDS[t] for t in types if t in _PLAIN_KINDS)
            if int in types:
                ints = [v for v in values if type(v) is int]
                if -INT53 <= min(ints) and max(ints) <= INT53:
                    kinds.add("int")
                else:
                    kinds.update(map(value_kind, ints))
            if any(t not in _PLAIN_KINDS and t is not int for t in types):
                kinds.update(value_kind(v) for v in values if type(v) not in _PLAIN_KINDS and type(v) is not int)
            if types & {list, dict} or any(t not in _PLAIN_KINDS and t is not int for t in types):
                for v in (v for v in values if isinstance(v, (list, tuple, dict))):
                    if self.nested.get(key, 0) is None:
                        break
                    pending = self._pending.setdefault(key, [])
                    pending.append(json.loads(json.dumps(v, default=str)))
                    if len(pending) >= self.BATCH:
                        self._type_nested(key)

    def add_kinds(self, kinds: dict[str, set[str]]) -> None:
        """Note the kinds of flat fields seen in a block of records (field order kept), as `add_many` would."""
        for key, ks in kinds.items():
            self.kinds.setdefault(key, set()).update(ks)

    def merge(self, other: "FieldTypes") -> None:
        """Add what another FieldTypes saw (a shard's): kinds united, Arrow types unified."""
        for key in list(self._pending):
            self._type_nested(key)
        for key in list(other._pending):
            other._type_nested(key)
        for key, kinds in other.kinds.items():
            self.kinds.setdefault(key, set()).update(kinds)
        for key, t in other.nested.items():
            if key not in self.nested or t is None:
                self.nested[key] = t
            elif self.nested[key] is not None:
                self.nested[key] = _unify_nested(self.nested[key], t)

    def _type_nested(self, key: str) -> None:
        import pyarrow as pa

        values = self._pending.pop(key, [])
        if not values or self.nested.get(key, 0) is None:
            return
        try:
            t = pa.array(values).type
        except Exception:  # mixed element types, integers beyond int64, ...: written as JSON text
            self.nested[key] = None
            return
        prev = self.nested.get(key)
        self.nested[key] = _unify_nested(prev, t) if prev is not None else (t if _parquet_writable(t) else None)

    def to_json(self) -> dict:
        """Plain JSON (nested Arrow types serialised as an IPC schema, base64)."""
        import base64

        import pyarrow as pa

        for key in list(self._pending):
            self._type_nested(key)
        typed = [pa.field(k, self.nested[k]) for k in self.kinds if self.nested.get(k) is not None]  # in field order
        return {
            "fields": {k: sorted(v) for k, v in self.kinds.items()},
            "nested_untypeable": sorted(k for k, t in self.nested.items() if t is None),
            "nested_schema": base64.b64encode(pa.schema(typed).serialize().to_pybytes()).decode(),
        }

    @classmethod
    def from_json(cls, obj: dict) -> "FieldTypes":
        import base64

        import pyarrow as pa

        ft = cls()
        ft.kinds = {k: set(v) for k, v in obj["fields"].items()}
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(obj["nested_schema"])))
        ft.nested = {f.name: f.type for f in schema}
        ft.nested.update({k: None for k in obj["nested_untypeable"]})
        return ft


def _unify_nested(a, b):
    """The Arrow type that holds values of both types (None: none does, or Parquet cannot hold it)."""
    import pyarrow as pa

    try:
        t = pa.unify_schemas([pa.schema([("f", a)]), pa.schema([("f", b)])], promote_options="permissive").field("f").type
    except Exception:
        return None
    return t if _parquet_writable(t) else None


def _parquet_writable(t) -> bool:
    """False for types Parquet cannot hold (a struct with no field, at any depth)."""
    import pyarrow as pa

    if pa.types.is_struct(t):
        return t.num_fields > 0 and all(_parquet_writable(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _parquet_writable(t.value_type)
    return True


def _encoder():
    """`json.dumps(obj, ensure_ascii=False, default=str)` as one reusable C encoder: (obj, 0) -> chunks."""
    from json.encoder import c_make_encoder, encode_basestring

    if c_make_encoder is None:  # a Python without the C accelerator
        return lambda obj, level: [json.dumps(obj, ensure_ascii=False, default=str)]
    return c_make_encoder(None, str, encode_basestring, None, ": ", ", ", False, False, True)


_ENCODE_RECORD = _encoder()


def _id_key(rid: object) -> str:
    return json.dumps(rid, sort_keys=True, default=str)


def id_keys(values: list) -> list[str]:
    """`_id_key` of each value (json.dumps, sorted keys); ints and strings without a JSON encoder."""
    from json.encoder import encode_basestring_ascii as quoted

    return [str(v) if type(v) is int else quoted(v) if type(v) is str else _id_key(v) for v in values]


def id_hash_keys(values: list) -> list[str]:
    """The text each id is hashed by: ints as decimals, strings as JSON (`ensure_ascii=False`), bools
    as JSON, anything else as `_id_key`: what the columnar path (`arrow_ingest.json_values`) writes."""
    from json.encoder import encode_basestring as quoted

    return [str(v) if type(v) is int else quoted(v) if type(v) is str else _id_key(v) for v in values]


def id_hashes(keys: list[str]) -> np.ndarray:
    """uint64 (XXH64) of each id key (`id_hash_keys`): compared within one ingest only (shards too), never stored."""
    encoded = [k.encode("utf-8", errors="surrogatepass") for k in keys]
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(keys)), out=offsets[1:])
    return bytes_hashes(b"".join(encoded), offsets)


def _append(arr, values: np.ndarray) -> None:
    """Append a numpy array to an array.array of the same item type."""
    arr.frombytes(np.ascontiguousarray(values, dtype=np.dtype(arr.typecode)).tobytes())


SHARD_ARRAYS = ("records.idx", "text.idx", "text_hash", "id_hash", "label_codes", "source", "line", "position_index", "position_value")


class DocStoreWriter:
    """Appends accepted records to the store; finds duplicate ids when closed.

    Files (under `directory`): records.jsonl (one JSON object per document, original
    fields: the input line itself when the record is stored unchanged, else the fields
    as JSON), records.idx.npy (int64 offsets, N+1), text.bin (UTF-8 texts back to
    back), text.idx.npy (int64 offsets, N+1), text_hash.npy (uint64, for exact-duplicate
    detection), label_codes.npy (int32, -1 = none) + label_names.json.

    Records are buffered and stored a batch at a time (joined bytes, hashes of a whole
    batch); `add_block` stores a RecordBlock of columns from the Arrow fast paths. Per-document state is a few fixed-size numbers in compact arrays (about 50
    bytes a document), not Python objects, so ingest memory stays small at tens of
    millions of documents. Duplicate ids are found at close() by sorting 64-bit id hashes
    (checked against the real ids, so a hash collision cannot reject a document); the
    later copies are then removed from the store and returned as rejects.

    A store can be built in shards: each piece of the input writes one with
    `save_shard()`, and the driver's writer takes them in order with `append_shard()`,
    which puts line numbers and position ids in place, then `close()`.
    """

    BATCH = 2048

    def __init__(self, directory: Path, label_field: str | None = "label", id_field: str = "id"):
        from array import array

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.label_field = label_field
        self.id_field = id_field
        self._rec = open(self.dir / "records.jsonl.tmp", "wb")
        self._txt = open(self.dir / "text.bin.tmp", "wb")
        self._writeback = Writeback([self._rec, self._txt])
        self._rec_off = array("q", [0])
        self._txt_off = array("q", [0])
        self._hashes = array("Q")
        self._id_hash = array("Q")
        self._label_code = array("i")
        self._label_index: dict[str, int] = {}
        self._label_names: list[object] = []
        self._source_index: dict[str, int] = {}
        self._sources: list[str] = []
        self._source = array("I")
        self._line = array("q")
        self._position_index = array("q")  # store positions of records whose id is their position
        self._position_value = array("q")
        self._pending: list[Record] = []
        self._content = xxhash.xxh3_128()  # of everything stored, for downstream fingerprints
        self.field_types = FieldTypes()
        self.n = 0

    def add(self, rec: Record, strict: bool = False) -> None:
        """Store one record (duplicate ids are dealt with in close())."""
        self._pending.append(rec)
        if len(self._pending) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        """Store the buffered records: bytes joined, hashes and codes computed for the batch."""
        recs, self._pending = self._pending, []
        if not recs:
            return
        encode = _ENCODE_RECORD
        lines = [r.raw.rstrip(b"\n") if r.raw is not None else "".join(encode(r.fields, 0)).encode("utf-8") for r in recs]
        blob = b"\n".join(lines) + b"\n"
        self._rec.write(blob)
        self._content.update(blob)
        _append(self._rec_off, self._rec_off[-1] + np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)) + 1))
        tbs = [r.text.encode("utf-8", errors="surrogatepass") for r in recs]
        joined = b"".join(tbs)
        self._txt.write(joined)
        self._writeback.wrote(len(blob) + len(joined))
        ends = np.cumsum(np.fromiter(map(len, tbs), np.int64, len(tbs)))
        _append(self._txt_off, self._txt_off[-1] + ends)
        _append(self._hashes, hash_utf8(joined, np.concatenate(([0], ends))))
        _append(self._id_hash, id_hashes(id_hash_keys([r.id for r in recs])))
        labels = [r.fields.get(self.label_field) for r in recs] if self.label_field else None
        _append(self._label_code, self._label_codes(labels, len(recs)))
        for src in dict.fromkeys(r.source for r in recs):
            if src not in self._source_index:
                self._source_index[src] = len(self._sources)
                self._sources.append(src)
        _append(self._source, np.fromiter((self._source_index[r.source] for r in recs), np.uint32, len(recs)))
        _append(self._line, np.fromiter((r.line for r in recs), np.int64, len(recs)))
        for k, r in enumerate(recs):
            if r.id_from_position:
                self._position_index.append(self.n + k)
                self._position_value.append(r.id)
        self.field_types.add_many([r.fields for r in recs])
        self.n += len(recs)

    def _label_codes(self, labels: list | None, n: int) -> np.ndarray:
        """int32 code of each label (-1: none), new labels numbered in order of first appearance."""
        if labels is None:
            return np.full(n, -1, dtype=np.int32)
        local: dict[str, tuple[int, object]] = {}  # key -> (index, first label with that key)
        index = [-1 if v is None else local.setdefault(k, (len(local), v))[0] for v, k in zip(labels, id_keys(labels))]
        return self._global_codes([v for _, v in local.values()], np.asarray(index, dtype=np.int32))

    def _global_codes(self, distinct: list, local: np.ndarray) -> np.ndarray:
        """Store codes for a batch's labels: `distinct` labels (first-appearance order), `local` index into it per record (-1: none)."""
        if not distinct:
            return np.full(len(local), -1, dtype=np.int32)
        remap = np.empty(len(distinct) + 1, dtype=np.int32)
        remap[-1] = -1
        for j, (key, label) in enumerate(zip(id_keys(distinct), distinct)):
            code = self._label_index.get(key)
            if code is None:
                code = self._label_index[key] = len(self._label_names)
                self._label_names.append(label)
            remap[j] = code
        return remap[local]

    def add_block(self, block) -> None:
        """Store a RecordBlock (arrow_ingest.py): the same files as `add` of each of its records, without a Python object per record."""
        self._flush()
        n = len(block)
        if n == 0:
            return
        self._rec.write(block.records)
        self._content.update(block.records)
        _append(self._rec_off, self._rec_off[-1] + np.cumsum(block.record_lengths))
        self._txt.write(block.text_data)
        self._writeback.wrote(len(block.records) + len(block.text_data))
        _append(self._txt_off, self._txt_off[-1] + block.text_offsets[1:])
        _append(self._hashes, block.text_hash)
        _append(self._id_hash, block.id_hash)
        _append(self._label_code, self._global_codes(block.labels, block.label_index) if self.label_field else
                np.full(n, -1, dtype=np.int32))
        if block.source not in self._source_index:
            self._source_index[block.source] = len(self._sources)
            self._sources.append(block.source)
        _append(self._source, np.full(n, self._source_index[block.source], dtype=np.uint32))
        _append(self._line, block.first_line + np.arange(n, dtype=np.int64))
        self.field_types.add_kinds(block.kinds)
        self.n += n

    @property
    def content_hash(self) -> str:
        """Hash of the stored records: unchanged when re-reading unchanged inputs."""
        if self._pending:
            self._flush()
        return self._content.hexdigest()

    # -- shards --------------------------------------------------------------
    def save_shard(self) -> None:
        """Finish this writer as one shard of a store (no duplicate check: the driver does it over all shards)."""
        self._flush()
        self._writeback.finish()
        for fh in (self._rec, self._txt):
            fh.close()
        commit(self.dir / "records.jsonl.tmp", self.dir / "records.jsonl")
        commit(self.dir / "text.bin.tmp", self.dir / "text.bin")
        arrays = (self._rec_off, self._txt_off, self._hashes, self._id_hash, self._label_code, self._source, self._line,
                  self._position_index, self._position_value)
        for name, arr in zip(SHARD_ARRAYS, arrays):
            _save_npy(self.dir / f"{name}.npy", np.frombuffer(arr, dtype=np.dtype(arr.typecode)) if len(arr) else
                      np.empty(0, dtype=np.dtype(arr.typecode)))
        meta = {"n": self.n, "sources": self._sources, "labels": self._label_names,
                "label_keys": list(self._label_index), "field_types": self.field_types.to_json()}
        tmp = self.dir / "shard.json.tmp"
        tmp.write_text(json.dumps(meta, default=str))
        commit(tmp, self.dir / "shard.json")

    def append_shard(self, shard: Path, line_offset: int = 0, position_base: int = 0, source_name=None) -> int:
        """Append a shard written by `save_shard`, in input order; returns its document count.

        `line_offset`: lines of the file before the shard's piece (added to its line
        numbers); `position_base`: records read before it (added to the ids of records
        that had none); `source_name`: maps a stored source (a downloaded copy) to its name.
        """
        shard = Path(shard)
        self._flush()
        meta = json.loads((shard / "shard.json").read_text())
        n = meta["n"]
        self.field_types.merge(FieldTypes.from_json(meta["field_types"]))
        if n == 0:
            return 0
        a = {name: np.load(shard / f"{name}.npy") for name in SHARD_ARRAYS}
        rec_off, id_hash = a["records.idx"], a["id_hash"].copy()
        if len(a["position_index"]):
            ids = a["position_value"] + position_base
            rec_off = self._renumber(shard / "records.jsonl", rec_off, a["position_index"], ids)
            id_hash[a["position_index"]] = id_hashes([str(i) for i in ids.tolist()])
        else:
            _copy_file(shard / "records.jsonl", self._rec, self._content)
        _copy_file(shard / "text.bin", self._txt)
        self._writeback.wrote(int(rec_off[-1]) + int(a["text.idx"][-1]))
        _append(self._rec_off, self._rec_off[-1] + rec_off[1:])
        _append(self._txt_off, self._txt_off[-1] + a["text.idx"][1:])
        _append(self._hashes, a["text_hash"])
        _append(self._id_hash, id_hash)
        remap = np.full(len(meta["labels"]) + 1, -1, dtype=np.int32)  # [-1] stays -1
        for j, (key, label) in enumerate(zip(meta["label_keys"], meta["labels"])):
            code = self._label_index.get(key)
            if code is None:
                code = self._label_index[key] = len(self._label_names)
                self._label_names.append(label)
            remap[j] = code
        _append(self._label_code, remap[a["label_codes"]])
        src_map = np.empty(len(meta["sources"]), dtype=np.uint32)
        for j, src in enumerate(meta["sources"]):
            name = source_name(src) if source_name else src
            if name not in self._source_index:
                self._source_index[name] = len(self._sources)
                self._sources.append(name)
            src_map[j] = self._source_index[name]
        _append(self._source, src_map[a["source"]])
        _append(self._line, a["line"] + line_offset)
        self.n += n
        return n

    def _renumber(self, path: Path, off: np.ndarray, index: np.ndarray, ids: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
        """Append a shard's records, records `index` (whose id was the piece's own count) given
        their ids `ids`; returns the shard's new offsets. Streams: memory stays small.

        Such a record was written with its id first (`{"id": 12, ...`), so the number is
        replaced in place; a record whose null id kept its place is decoded and encoded again.
        """
        head = ("{" + json.dumps(self.id_field, ensure_ascii=False) + ": ").encode("utf-8")
        delta = np.zeros(len(off), dtype=np.int64)

        def put(data: bytes) -> None:
            self._rec.write(data)
            self._content.update(data)

        with open(path, "rb") as fh:
            done = 0
            for i, new_id in zip(index.tolist(), ids.tolist()):
                a, b = int(off[i]), int(off[i + 1])
                while done < a:  # the unchanged records before this one
                    data = fh.read(min(chunk, a - done))
                    if not data:
                        raise RuntimeError(f"ingest: shard {path} is shorter than its offsets")
                    put(data)
                    done += len(data)
                line = fh.read(b - a)
                done = b
                old = json.loads(line)
                was = head + str(old[self.id_field]).encode() + b", "
                if line.startswith(was):
                    new = head + str(new_id).encode() + b", " + line[len(was):]
                else:
                    old[self.id_field] = new_id
                    new = "".join(_ENCODE_RECORD(old, 0)).encode("utf-8") + b"\n"
                put(new)
                delta[i + 1] = len(new) - (b - a)
            while data := fh.read(chunk):
                put(data)
        return off + np.cumsum(delta)

    # -- finishing -----------------------------------------------------------
    def _duplicate_ids(self) -> list[tuple[int, int]]:
        """(later, first) store positions of records whose id was already used."""
        h = np.frombuffer(self._id_hash, dtype=np.uint64) if self.n else np.empty(0, np.uint64)
        order = np.argsort(h, kind="stable")
        hs = h[order]
        same = np.flatnonzero(hs[1:] == hs[:-1]) + 1
        if len(same) == 0:
            return []
        self._rec.flush()
        recs = np.memmap(self.dir / "records.jsonl.tmp", dtype=np.uint8, mode="r")
        off = np.frombuffer(self._rec_off, dtype=np.int64)

        def rid(i: int) -> str:
            return _id_key(json.loads(bytes(recs[off[i] : off[i + 1]])).get(self.id_field))

        out = []
        group_start = 0
        for j in range(1, len(hs) + 1):
            if j == len(hs) or hs[j] != hs[group_start]:
                members = order[group_start:j]
                if len(members) > 1:
                    firsts: dict[str, int] = {}
                    for i in sorted(int(m) for m in members):
                        key = rid(i)
                        if key in firsts:
                            out.append((i, firsts[key]))
                        else:
                            firsts[key] = i
                group_start = j
        del recs
        return sorted(out)

    def close(self, strict: bool = False) -> list[Reject]:
        """Finish the store; return one Reject per record whose id was already used."""
        self._flush()
        self._writeback.finish()
        for fh in (self._rec, self._txt):
            fh.flush()
        dups = self._duplicate_ids()
        rejects = []
        for later, first in dups:
            rec_id = json.loads(self._record_tmp(later)).get(self.id_field)
            reason = f"duplicate id {rec_id!r} (first seen at {self._sources[self._source[first]]}:{self._line[first]})"
            where = f"{self._sources[self._source[later]]}:{self._line[later]}"
            if strict:
                raise InputError(f"{where}: field '{self.id_field}': {reason}")
            rejects.append(Reject(self._sources[self._source[later]], self._line[later], rec_id, reason))
        for fh in (self._rec, self._txt):
            fh.close()
        keep = np.ones(self.n, dtype=bool)
        keep[[d[0] for d in dups]] = False
        rec_off = np.frombuffer(self._rec_off, dtype=np.int64)
        txt_off = np.frombuffer(self._txt_off, dtype=np.int64)
        if dups:
            rec_off = self._compact("records.jsonl.tmp", rec_off, keep, hash_it=True)
            txt_off = self._compact("text.bin.tmp", txt_off, keep)
            self.n = int(keep.sum())
        codes = np.frombuffer(self._label_code, dtype=np.int32)[keep] if len(keep) else np.empty(0, np.int32)
        arrays = {"records.idx.npy": rec_off, "text.idx.npy": txt_off, "label_codes.npy": codes,
                  "text_hash.npy": np.frombuffer(self._hashes, dtype=np.uint64)[keep] if len(keep) else np.empty(0, np.uint64)}
        texts = {"label_names.json": json.dumps(self._label_names if (codes >= 0).any() else None, default=str),
                 "fields.json": json.dumps(self.field_types.to_json())}
        pairs = [(write_unsynced(self.dir / name, lambda fh, a=arr: np.save(fh, a)), self.dir / name) for name, arr in arrays.items()]
        pairs += [(write_unsynced(self.dir / name, lambda fh, t=text: fh.write(t.encode("utf-8"))), self.dir / name)
                  for name, text in texts.items()]
        pairs += [(self.dir / "records.jsonl.tmp", self.dir / "records.jsonl"), (self.dir / "text.bin.tmp", self.dir / "text.bin")]
        commit_many(pairs)  # every file on the disk before any is renamed; records.jsonl and text.bin last, as before
        return rejects

    def _record_tmp(self, i: int) -> bytes:
        with open(self.dir / "records.jsonl.tmp", "rb") as fh:
            fh.seek(self._rec_off[i])
            return fh.read(self._rec_off[i + 1] - self._rec_off[i])

    def _compact(self, name: str, off: np.ndarray, keep: np.ndarray, hash_it: bool = False) -> np.ndarray:
        """Rewrite a byte file without the dropped documents; return the new offsets."""
        src = self.dir / name
        dst = self.dir / (name + ".compact")
        new_off = [0]
        if hash_it:
            self._content = xxhash.xxh3_128()
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            for i in range(len(keep)):
                data = fin.read(int(off[i + 1] - off[i]))
                if keep[i]:
                    fout.write(data)
                    if hash_it:
                        self._content.update(data)
                    new_off.append(new_off[-1] + len(data))
            fout.flush()
        commit(dst, src)
        return np.asarray(new_off, dtype=np.int64)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    save_npy(path, arr)


def _copy_file(path: Path, out, content=None, chunk: int = 1 << 22) -> None:
    """Append a file's bytes to an open file (and to a running hash)."""
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            out.write(data)
            if content is not None:
                content.update(data)


class DocStore:
    """Read-only random access to the documents of a run, by position."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.rec_off = np.load(self.dir / "records.idx.npy")
        self.txt_off = np.load(self.dir / "text.idx.npy")
        self.text_hash = np.load(self.dir / "text_hash.npy")
        self._rec = np.memmap(self.dir / "records.jsonl", dtype=np.uint8, mode="r") if self.rec_off[-1] else None
        self._txt = np.memmap(self.dir / "text.bin", dtype=np.uint8, mode="r") if self.txt_off[-1] else None
        self.label_codes = np.load(self.dir / "label_codes.npy")  # int32 per document, -1 = no label
        self.label_names = json.loads((self.dir / "label_names.json").read_text())  # None if no document has one
        if self.label_names is None:
            self.label_codes = None

    @property
    def labels(self) -> list | None:
        """Label of every document (None where missing), or None when no document has one."""
        if self.label_codes is None:
            return None
        names = self.label_names
        return [names[c] if c >= 0 else None for c in self.label_codes.tolist()]

    def label(self, i: int):
        """Label of document i, or None."""
        if self.label_codes is None or self.label_codes[i] < 0:
            return None
        return self.label_names[self.label_codes[i]]

    def __len__(self) -> int:
        return len(self.txt_off) - 1

    def text(self, i: int) -> str:
        a, b = self.txt_off[i], self.txt_off[i + 1]
        return bytes(self._txt[a:b]).decode("utf-8", errors="surrogatepass")

    def texts(self, start: int, stop: int) -> list[str]:
        """Documents start..stop-1, decoded at once: one decode of their bytes, then cut at each
        document's first character (a decode per document cost the tokenize stage 3-5x more)."""
        n = max(0, stop - start)
        offs = self.txt_off[start:start + n + 1]
        if n == 0 or offs[0] == offs[-1]:
            return [""] * n
        rel = offs - offs[0]
        span = self._txt[int(offs[0]):int(offs[-1])]
        text = bytes(span).decode("utf-8", errors="surrogatepass")
        if len(text) == len(span):  # ASCII: bytes are characters
            cuts = rel.tolist()
        else:  # characters per document = bytes that start a UTF-8 sequence
            chars = np.zeros(n, dtype=np.int64)
            full = rel[1:] > rel[:-1]
            chars[full] = np.add.reduceat((span & 0xC0) != 0x80, rel[:-1][full], dtype=np.int64)
            cuts = [0] + np.cumsum(chars).tolist()
        return [text[cuts[k]:cuts[k + 1]] for k in range(n)]

    def record(self, i: int) -> dict:
        a, b = self.rec_off[i], self.rec_off[i + 1]
        return json.loads(bytes(self._rec[a:b]))

    def records(self, ids) -> list[dict]:
        """The records at `ids`, in that order (a new dict per entry, repeats included)."""
        return [json.loads(raw) for raw in self.raw_records(ids)]

    def raw_records(self, ids) -> list[bytes]:
        """The stored JSON bytes of the records at `ids`, in that order, read with explicit reads
        in ascending file order: pages of a memory map read at random (the write stage reads in
        walk order) stay in the process's resident set, which reaches the whole records file;
        pread copies leave it in the shared page cache (rowfile.py, benchmarks.md)."""
        ids = np.asarray(ids, dtype=np.int64)
        out: list = [None] * len(ids)
        if not len(ids):
            return out
        seq = np.argsort(ids, kind="stable")
        starts, ends = self.rec_off[ids[seq]].tolist(), self.rec_off[ids[seq] + 1].tolist()
        with open(self.dir / "records.jsonl", "rb", buffering=0) as fh:
            fd = fh.fileno()
            for k, a, b in zip(seq.tolist(), starts, ends):
                data = os.pread(fd, b - a, a)
                if len(data) != b - a:
                    raise OSError(f"{self.dir / 'records.jsonl'}: short read at byte {a} (document {int(ids[k])})")
                out[k] = data
        return out

    def text_bytes(self) -> int:
        return int(self.txt_off[-1])

    def field_types(self) -> FieldTypes:
        """Kinds of value per field, as gathered at ingest (gathered now from the records for older stores)."""
        path = self.dir / "fields.json"
        if path.exists():
            return FieldTypes.from_json(json.loads(path.read_text()))
        ft = FieldTypes()
        for i in range(len(self)):
            ft.add(self.record(i))
        return ft
