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


from .errors import InputError  # noqa: E402  (re-exported: bad input that stops the run)


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
            os.fsync(fh.fileno())
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
        os.replace(tmp, self.dir / "label_names.json")
        os.replace(self.dir / "records.jsonl.tmp", self.dir / "records.jsonl")
        os.replace(self.dir / "text.bin.tmp", self.dir / "text.bin")
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
            os.fsync(fout.fileno())
        os.replace(dst, src)
        return np.asarray(new_off, dtype=np.int64)


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
