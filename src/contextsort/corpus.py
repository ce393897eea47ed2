"""Corpus readers and the on-disk document store.

Readers stream records from JSONL (plain, .gz, .zst), JSON arrays, Parquet and text
folders (one document per .txt file). Every record is either accepted into the
document store or rejected with file, line and reason: nothing is dropped silently,
and what ingest stores cannot fail a later stage (see docs/input.md). An input may
name its own fields (`data.jsonl:text=content`); the reader counts each input.

The document store keeps documents out of Python memory: the raw record (as one
JSON line, all original fields kept) and its text live in two byte files with
int64 offset arrays, so later stages read any document by position.
"""

from __future__ import annotations

import codecs
import errno
import gzip
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

TEXT_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".parquet", ".txt")


from .errors import InputError  # noqa: E402  (re-exported: bad input that stops the run)
from .atomic import commit, save_npy


@dataclass
class Record:
    """One accepted input document."""

    source: str  # file the record came from
    line: int  # 1-based line (JSONL) or row (Parquet) number; 0 for text files
    id: object  # original id (or its position when the record has none)
    text: str
    fields: dict  # all original fields, as read (text included)


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


def _open_text_lines(path: Path) -> Iterator[bytes]:
    name = path.name
    if name.endswith(".gz"):
        fh = gzip.open(path, "rb")
    elif name.endswith(".zst"):
        yield from _zst_lines(path)
        return
    else:
        fh = open(path, "rb")
    with fh:
        yield from fh


def _zst_lines(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Lines of a .zst file (any number of frames); a truncated stream raises OSError.

    zstandard's stream_reader ends silently at a truncated frame, so decompress by hand
    and check that the last frame was complete.
    """
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    fed = False  # has the current decompressor been given any byte of a frame?
    buf = b""
    with open(path, "rb") as raw:
        while True:
            data = raw.read(chunk)
            if not data:
                break
            while data:
                fed = True
                out = dobj.decompress(data)
                data = b""
                if dobj.eof:  # frame finished: what is left belongs to the next frame
                    data = dobj.unused_data
                    dobj = dctx.decompressobj()
                    fed = False
                buf += out
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line + b"\n"
    if fed:
        raise OSError("truncated zstd stream (file ends inside a frame)")
    if buf:
        yield buf


def record_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Lines without a leading UTF-8 BOM, split at LF, CRLF and lone CR alike.

    A raw CR cannot occur inside valid JSON text (it must be escaped), so splitting
    at it never cuts a record.
    """
    first = True
    for raw in lines:
        if first:
            first = False
            if raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
        if b"\r" not in raw:
            yield raw
            continue
        body = raw.rstrip(b"\n")
        if body.endswith(b"\r"):
            body = body[:-1]
        yield from body.split(b"\r")


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
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike],
        text_field: str = "text",
        id_field: str = "id",
        label_field: str | None = "label",
        strict: bool = False,
        exclude: Iterable[str | os.PathLike] = (),
    ):
        self.inputs = [parse_input_spec(p) for p in paths]
        self.exclude = [Path(e) for e in exclude]  # folders never read (the run directory)
        self.raw_paths = [i.path for i in self.inputs]
        self.text_field = text_field
        self.id_field = id_field
        self.label_field = label_field
        self.strict = strict
        self.position = 0  # running count of records read (for missing ids)
        self.counts: list[InputCount] = []
        self._src_fields: dict[str, str | None] = {}  # canonical field -> this input's field

    def __iter__(self) -> Iterator[Record | Reject]:
        self.counts = []
        for inp in self.inputs:
            count = InputCount(inp.spec)
            self.counts.append(count)
            self._src_fields = {
                self.text_field: inp.fields.get("text", self.text_field),
                self.id_field: inp.fields.get("id", self.id_field),
            }
            if self.label_field:
                self._src_fields[self.label_field] = inp.fields.get("label", self.label_field)
            elif "label" in inp.fields:
                self._src_fields["label"] = inp.fields["label"]
            for item in self._read_input(inp.path):
                count.records += 1
                if isinstance(item, Reject):
                    count.rejected += 1
                else:
                    count.documents += 1
                yield item
            if self.strict and count.documents == 0:
                raise InputError(f"{inp.spec}: input yielded no document ({count.records} records read)")

    def _read_input(self, root: Path) -> Iterator[Record | Reject]:
        problem = path_problem(root)
        if problem:
            self.position += 1
            yield self._reject(str(root), 0, None, problem)
            return
        if not root.is_dir():
            yield from self._read_file(root)
            return
        files, bad = list_folder(root, self.exclude)
        for f, why in bad:
            self.position += 1
            yield self._reject(str(f), 0, None, why)
        if not files and not bad:
            self.position += 1
            yield self._reject(str(root), 0, None, "directory holds no .jsonl/.json(.gz/.zst), .parquet or .txt files")
        yield from self._read_dir(root, files)

    # -- helpers -----------------------------------------------------------
    @property
    def _text_src(self) -> str:
        return self._src_fields.get(self.text_field, self.text_field)

    def _reject(self, source: str, line: int, rid: object, reason: str, field: str | None = None) -> Reject:
        if self.strict:
            where = f"{source}:{line}" if line else source
            fld = f" field '{field}':" if field else ""
            raise InputError(f"{where}:{fld} {reason}")
        return Reject(source, line, rid, reason)

    def _make(self, source: str, line: int, original: dict) -> Record | Reject:
        """A decoded record to a Record (mapped fields renamed to the run's names) or a Reject."""
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
        if rid is None:  # a missing or null id gets the record's position among all records read
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
        return Record(source, line, rid, text, fields)

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
        return self._object(src, lineno, obj, "\\ud" in s or "\\uD" in s)

    def _object(self, src: str, lineno: int, obj: object, may_have_surrogates: bool) -> Record | Reject:
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
        return self._make(src, lineno, obj)

    def _read_file(self, path: Path) -> Iterator[Record | Reject]:
        name = path.name
        src = str(path)
        if name.endswith(".parquet"):
            yield from self._read_parquet(path)
            return
        if name.endswith(".txt"):
            yield from self._read_dir(path.parent, [path])
            return
        lineno = 0
        try:
            if name.endswith((".json", ".json.gz", ".json.zst")) and self._holds_array(path):
                yield from self._read_json_array(path)
                return
            for lineno, raw in enumerate(record_lines(_open_text_lines(path)), start=1):
                if raw.strip():
                    yield self._decoded(src, lineno, raw)
        except InputError:
            raise
        except Exception as e:  # truncated .gz (EOFError/OSError), .zst (ZstdError), unreadable file (OSError)
            if not isinstance(e, (OSError, EOFError)) and type(e).__name__ != "ZstdError":
                raise
            msg = f"unreadable file after line {lineno}: {e}" if lineno else f"unreadable file: {e}"
            if self.strict:
                raise InputError(f"{src}: {msg}") from None
            self.position += 1
            yield Reject(src, lineno + 1, None, msg)

    @staticmethod
    def _holds_array(path: Path) -> bool:
        """Does this .json file hold one JSON array (rather than JSON lines)?"""
        for raw in record_lines(_open_text_lines(path)):
            head = raw.lstrip()
            if head:
                return head.startswith(b"[")
        return False

    def _read_json_array(self, path: Path) -> Iterator[Record | Reject]:
        """Each element of a JSON array file is one record; its line is where the element starts."""
        src = str(path)
        data = b"".join(_open_text_lines(path))
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

    def _read_parquet(self, path: Path) -> Iterator[Record | Reject]:
        """Rows of a Parquet file, read one row group at a time.

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
        if text_src not in names:
            # every row is rejected (so counts still add up), with the same reason
            reason = f"Parquet file has no column '{text_src}' (columns: {', '.join(names)})"
            for row in range(1, pf.metadata.num_rows + 1):
                self.position += 1
                yield self._reject(src, row, None, reason, text_src)
            return
        row = 0
        for g in range(pf.num_row_groups):
            group_end = row + pf.metadata.row_group(g).num_rows
            try:
                for batch in pf.iter_batches(batch_size=4096, row_groups=[g]):
                    bad: dict[int, str] = {}
                    columns = [_column_values(batch.column(c), name, name == text_src, bad) for c, name in enumerate(batch.schema.names)]
                    for r, values in enumerate(zip(*columns)):
                        row += 1
                        if r in bad:
                            self.position += 1
                            yield self._reject(src, row, None, bad[r])
                        else:
                            yield self._make(src, row, dict(zip(batch.schema.names, values)))
            except InputError:
                raise
            except Exception as e:  # corrupt page, truncated file, a type with no Python value
                reason = f"unreadable Parquet row group {g} ({group_end - row} rows left unread): {type(e).__name__}: {e}"
                if self.strict:
                    raise InputError(f"{src}:{row + 1}: {reason}") from None
                while row < group_end:
                    row += 1
                    self.position += 1
                    yield Reject(src, row, None, reason)

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

    def _type_nested(self, key: str) -> None:
        import pyarrow as pa

        values = self._pending.pop(key, [])
        if not values or self.nested.get(key, 0) is None:
            return
        try:
            t = pa.array(values).type
            prev = self.nested.get(key)
            if prev is not None:
                t = pa.unify_schemas([pa.schema([("f", prev)]), pa.schema([("f", t)])], promote_options="permissive").field("f").type
            if not _parquet_writable(t):
                raise ValueError("empty struct")
            self.nested[key] = t
        except Exception:  # mixed element types, integers beyond int64, ...: written as JSON text
            self.nested[key] = None

    def to_json(self) -> dict:
        """Plain JSON (nested Arrow types serialised as an IPC schema, base64)."""
        import base64

        import pyarrow as pa

        for key in list(self._pending):
            self._type_nested(key)
        typed = [pa.field(k, t) for k, t in self.nested.items() if t is not None]
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


def _parquet_writable(t) -> bool:
    """False for types Parquet cannot hold (a struct with no field, at any depth)."""
    import pyarrow as pa

    if pa.types.is_struct(t):
        return t.num_fields > 0 and all(_parquet_writable(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _parquet_writable(t.value_type)
    return True


def _id_key(rid: object) -> str:
    return json.dumps(rid, sort_keys=True, default=str)


class DocStoreWriter:
    """Appends accepted records to the store; finds duplicate ids when closed.

    Files (under `directory`): records.jsonl (one JSON object per document, original
    fields), records.idx.npy (int64 offsets, N+1), text.bin (UTF-8 texts back to back),
    text.idx.npy (int64 offsets, N+1), text_hash.npy (uint64, for exact-duplicate
    detection), label_codes.npy (int32, -1 = none) + label_names.json.

    Per-document state is a few fixed-size numbers in compact arrays (about 50 bytes a
    document), not Python objects, so ingest memory stays small at tens of millions of
    documents. Duplicate ids are found at close() by sorting 64-bit id hashes (checked
    against the real ids, so a hash collision cannot reject a document); the later
    copies are then removed from the store and returned as rejects.
    """

    def __init__(self, directory: Path, label_field: str | None = "label", id_field: str = "id"):
        from array import array

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.label_field = label_field
        self.id_field = id_field
        self._rec = open(self.dir / "records.jsonl.tmp", "wb")
        self._txt = open(self.dir / "text.bin.tmp", "wb")
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
        self._content = hashlib.blake2b(digest_size=16)  # of everything stored, for downstream fingerprints
        self.field_types = FieldTypes()
        self.n = 0

    def add(self, rec: Record, strict: bool = False) -> None:
        """Store one record (duplicate ids are dealt with in close())."""
        line = json.dumps(rec.fields, ensure_ascii=False, default=str).encode("utf-8") + b"\n"
        self._rec.write(line)
        self._content.update(line)
        self._rec_off.append(self._rec_off[-1] + len(line))
        tb = rec.text.encode("utf-8", errors="surrogatepass")
        self._txt.write(tb)
        self._txt_off.append(self._txt_off[-1] + len(tb))
        norm = " ".join(rec.text.split()).lower().encode("utf-8", errors="surrogatepass")
        self._hashes.append(int.from_bytes(hashlib.blake2b(norm, digest_size=8).digest(), "little"))
        self._id_hash.append(int.from_bytes(hashlib.blake2b(_id_key(rec.id).encode(), digest_size=8).digest(), "little"))
        label = rec.fields.get(self.label_field) if self.label_field else None
        if label is None:
            self._label_code.append(-1)
        else:
            key = _id_key(label)
            code = self._label_index.get(key)
            if code is None:
                code = self._label_index[key] = len(self._label_names)
                self._label_names.append(label)
            self._label_code.append(code)
        src = self._source_index.get(rec.source)
        if src is None:
            src = self._source_index[rec.source] = len(self._sources)
            self._sources.append(rec.source)
        self._source.append(src)
        self._line.append(rec.line)
        self.field_types.add(rec.fields)
        self.n += 1

    @property
    def content_hash(self) -> str:
        """Hash of the stored records: unchanged when re-reading unchanged inputs."""
        return self._content.hexdigest()

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
        _save_npy(self.dir / "records.idx.npy", rec_off)
        _save_npy(self.dir / "text.idx.npy", txt_off)
        _save_npy(self.dir / "text_hash.npy", np.frombuffer(self._hashes, dtype=np.uint64)[keep] if len(keep) else np.empty(0, np.uint64))
        codes = np.frombuffer(self._label_code, dtype=np.int32)[keep] if len(keep) else np.empty(0, np.int32)
        _save_npy(self.dir / "label_codes.npy", codes)
        tmp = self.dir / "label_names.json.tmp"
        tmp.write_text(json.dumps(self._label_names if (codes >= 0).any() else None, default=str))
        commit(tmp, self.dir / "label_names.json")
        tmp = self.dir / "fields.json.tmp"
        tmp.write_text(json.dumps(self.field_types.to_json()))
        commit(tmp, self.dir / "fields.json")
        commit(self.dir / "records.jsonl.tmp", self.dir / "records.jsonl")
        commit(self.dir / "text.bin.tmp", self.dir / "text.bin")
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
            self._content = hashlib.blake2b(digest_size=16)
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
        return [self.text(i) for i in range(start, stop)]

    def record(self, i: int) -> dict:
        a, b = self.rec_off[i], self.rec_off[i + 1]
        return json.loads(bytes(self._rec[a:b]))

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
