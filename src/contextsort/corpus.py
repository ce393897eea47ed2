"""Corpus readers and the on-disk document store.

Readers stream records from JSONL (plain, .gz, .zst), Parquet and text folders
(one document per .txt file). Every record is either accepted into the document
store or rejected with file, line and reason: nothing is dropped silently.

The document store keeps documents out of Python memory: the raw record (as one
JSON line, all original fields kept) and its text live in two byte files with
int64 offset arrays, so later stages read any document by position.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

TEXT_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".parquet", ".txt")


class InputError(Exception):
    """Bad input that stops the run (strict mode, or nothing usable).

    The message names file, line and field; the CLI prints it without a traceback.
    """


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
# Readers
# ---------------------------------------------------------------------------


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand directories into their corpus files, in sorted (deterministic) order."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(f"{p}: no such file or directory")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(TEXT_SUFFIXES))
            if not files:
                raise InputError(f"{p}: directory holds no .jsonl/.json(.gz/.zst), .parquet or .txt files")
            out.extend(files)
        else:
            out.append(p)
    return out


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


class CorpusReader:
    """Streams Records and Rejects from input files.

    text_field / id_field / label_field name the JSON or Parquet columns. For text
    folders the id is the path relative to the folder and the label the parent
    folder's name. In strict mode the first bad record raises InputError.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike],
        text_field: str = "text",
        id_field: str = "id",
        label_field: str | None = "label",
        strict: bool = False,
    ):
        self.raw_paths = [Path(p) for p in paths]
        self.text_field = text_field
        self.id_field = id_field
        self.label_field = label_field
        self.strict = strict
        self.position = 0  # running count of records read (for missing ids)

    def __iter__(self) -> Iterator[Record | Reject]:
        for root in self.raw_paths:
            if not root.exists():
                self.position += 1
                yield self._reject(str(root), 0, None, "no such file or directory")
                continue
            if root.is_dir():
                try:
                    files = expand_paths([root])
                except InputError as e:
                    self.position += 1
                    yield self._reject(str(root), 0, None, str(e).split(": ", 1)[-1])
                    continue
                yield from self._read_dir(root, files)
            else:
                yield from self._read_file(root)

    # -- helpers -----------------------------------------------------------
    def _reject(self, source: str, line: int, rid: object, reason: str, field: str | None = None) -> Reject:
        if self.strict:
            where = f"{source}:{line}" if line else source
            fld = f" field '{field}':" if field else ""
            raise InputError(f"{where}:{fld} {reason}")
        return Reject(source, line, rid, reason)

    def _check_text(self, source: str, line: int, rid: object, text: object) -> Record | Reject | str:
        if text is None:
            return self._reject(source, line, rid, f"missing text field '{self.text_field}'", self.text_field)
        if not isinstance(text, str):
            return self._reject(
                source, line, rid, f"text field '{self.text_field}' is {type(text).__name__}, not a string", self.text_field
            )
        if not text.strip():
            return self._reject(source, line, rid, "empty text", self.text_field)
        return text

    def _make(self, source: str, line: int, fields: dict) -> Record | Reject:
        pos = self.position
        self.position += 1
        rid = fields.get(self.id_field)
        if rid is None:  # missing ids get the record's position among all records read
            rid = pos
            fields = {self.id_field: pos, **fields}
        checked = self._check_text(source, line, rid, fields.get(self.text_field))
        if not isinstance(checked, str):
            return checked
        return Record(source, line, rid, checked, fields)

    def _read_file(self, path: Path) -> Iterator[Record | Reject]:
        name = path.name
        src = str(path)
        if name.endswith(".parquet"):
            yield from self._read_parquet(path)
            return
        if name.endswith(".txt"):
            yield from self._read_dir(path.parent, [path])
            return
        try:
            lineno = 0
            for lineno, raw in enumerate(_open_text_lines(path), start=1):
                if not raw.strip():
                    continue
                try:
                    s = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    self.position += 1
                    yield self._reject(src, lineno, None, f"invalid UTF-8 at byte {e.start}")
                    continue
                try:
                    obj = json.loads(s)
                except json.JSONDecodeError as e:
                    self.position += 1
                    yield self._reject(src, lineno, None, f"malformed JSON: {e.msg} (column {e.colno})")
                    continue
                if not isinstance(obj, dict):
                    self.position += 1
                    yield self._reject(src, lineno, None, f"JSON value is a {type(obj).__name__}, not an object")
                    continue
                yield self._make(src, lineno, obj)
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

    def _read_parquet(self, path: Path) -> Iterator[Record | Reject]:
        import pyarrow.parquet as pq

        src = str(path)
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:
            self.position += 1
            yield self._reject(src, 0, None, f"not a readable Parquet file: {e}")
            return
        names = pf.schema_arrow.names
        if self.text_field not in names:
            # every row is rejected (so counts still add up), with the same reason
            reason = f"Parquet file has no column '{self.text_field}' (columns: {', '.join(names)})"
            for row in range(1, pf.metadata.num_rows + 1):
                self.position += 1
                yield self._reject(src, row, None, reason, self.text_field)
            return
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=4096):
                for fields in batch.to_pylist():
                    row += 1
                    yield self._make(src, row, fields)
        except (OSError, ValueError) as e:  # corrupt page / truncated file
            if self.strict:
                raise InputError(f"{src}: unreadable Parquet data after row {row}: {e}") from None
            self.position += 1
            yield Reject(src, row + 1, None, f"unreadable Parquet data after row {row}: {e}")

    def _read_dir(self, root: Path, files: list[Path]) -> Iterator[Record | Reject]:
        for f in files:
            if not f.name.endswith(".txt"):
                yield from self._read_file(f)
                continue
            src = str(f)
            rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name
            pos = self.position
            self.position += 1
            try:
                data = f.read_bytes()
            except OSError as e:
                yield self._reject(src, 0, rel, f"unreadable file: {e}")
                continue
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
            del pos
            yield Record(src, 0, rel, text, fields)


# ---------------------------------------------------------------------------
# Document store
# ---------------------------------------------------------------------------


def _id_key(rid: object) -> str:
    return json.dumps(rid, sort_keys=True, default=str)


class DocStoreWriter:
    """Appends accepted records to the store; rejects duplicate ids.

    Files (under `directory`): records.jsonl (one JSON object per document, original
    fields), records.idx.npy (int64 offsets, N+1), text.bin (UTF-8 texts back to back),
    text.idx.npy (int64 offsets, N+1), text_hash.npy (uint64, for exact-duplicate
    detection), labels.json (label per document, or absent).
    """

    def __init__(self, directory: Path, label_field: str | None = "label"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.label_field = label_field
        self._rec = open(self.dir / "records.jsonl.tmp", "wb")
        self._txt = open(self.dir / "text.bin.tmp", "wb")
        self._rec_off = [0]
        self._txt_off = [0]
        self._hashes: list[int] = []
        self._labels: list[object] = []
        self._seen_ids: dict[str, tuple[str, int]] = {}
        self._content = hashlib.blake2b(digest_size=16)  # of everything stored, for downstream fingerprints
        self.n = 0

    def add(self, rec: Record, strict: bool = False) -> Reject | None:
        key = _id_key(rec.id)
        first = self._seen_ids.get(key)
        if first is not None:
            reason = f"duplicate id {rec.id!r} (first seen at {first[0]}:{first[1]})"
            if strict:
                raise InputError(f"{rec.source}:{rec.line}: field 'id': {reason}")
            return Reject(rec.source, rec.line, rec.id, reason)
        self._seen_ids[key] = (rec.source, rec.line)
        line = json.dumps(rec.fields, ensure_ascii=False, default=str).encode("utf-8") + b"\n"
        self._rec.write(line)
        self._content.update(line)
        self._rec_off.append(self._rec_off[-1] + len(line))
        tb = rec.text.encode("utf-8", errors="surrogatepass")
        self._txt.write(tb)
        self._txt_off.append(self._txt_off[-1] + len(tb))
        norm = " ".join(rec.text.split()).lower().encode("utf-8", errors="surrogatepass")
        self._hashes.append(int.from_bytes(hashlib.blake2b(norm, digest_size=8).digest(), "little"))
        self._labels.append(rec.fields.get(self.label_field) if self.label_field else None)
        self.n += 1
        return None

    @property
    def content_hash(self) -> str:
        """Hash of the stored records: unchanged when re-reading unchanged inputs."""
        return self._content.hexdigest()

    def close(self) -> None:
        for fh in (self._rec, self._txt):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        _save_npy(self.dir / "records.idx.npy", np.asarray(self._rec_off, dtype=np.int64))
        _save_npy(self.dir / "text.idx.npy", np.asarray(self._txt_off, dtype=np.int64))
        _save_npy(self.dir / "text_hash.npy", np.asarray(self._hashes, dtype=np.uint64))
        labels = self._labels if any(lab is not None for lab in self._labels) else None
        tmp = self.dir / "labels.json.tmp"
        tmp.write_text(json.dumps(labels))
        os.replace(tmp, self.dir / "labels.json")
        os.replace(self.dir / "records.jsonl.tmp", self.dir / "records.jsonl")
        os.replace(self.dir / "text.bin.tmp", self.dir / "text.bin")


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class DocStore:
    """Read-only random access to the documents of a run, by position."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.rec_off = np.load(self.dir / "records.idx.npy")
        self.txt_off = np.load(self.dir / "text.idx.npy")
        self.text_hash = np.load(self.dir / "text_hash.npy")
        self._rec = np.memmap(self.dir / "records.jsonl", dtype=np.uint8, mode="r") if self.rec_off[-1] else None
        self._txt = np.memmap(self.dir / "text.bin", dtype=np.uint8, mode="r") if self.txt_off[-1] else None
        self.labels = json.loads((self.dir / "labels.json").read_text())

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


def fingerprint_inputs(paths: Iterable[Path]) -> str:
    """Cheap fingerprint of input files: path, size and mtime (not the content)."""
    h = hashlib.sha256()
    for root in paths:
        root = Path(root)
        try:
            files = expand_paths([root])
        except InputError:
            h.update(f"{root}|missing\n".encode())
            continue
        for p in files:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
