"""Inputs where users keep them: fsspec URLs (s3://, gs://, hf://, file://, ...) made local,
and Hugging Face `Dataset.save_to_disk` folders turned into Parquet the readers know.

Ingest reads local files. A URL input is fingerprinted from its listing (path, size and
the store's own checksum, e.g. the S3 ETag; nothing downloaded), and downloaded through
fsspec into a folder of the run directory when ingest runs; the readers then treat it
like any local input. `file://` URLs are plain local paths. Protocols come from fsspec's
own packages (s3fs for s3://, gcsfs for gs://, huggingface_hub for hf://); their options
come from fsspec's configuration, e.g. FSSPEC_S3_ENDPOINT_URL or the usual AWS_* variables.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import DependencyMissing, InputError

PROTOCOL_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub",
                     "az": "adlfs", "abfs": "adlfs"}


def is_url(path: str | os.PathLike) -> bool:
    """Whether an input names a remote location (PROTOCOL://...) rather than a local path."""
    s = str(path)
    return "://" in s and s.split("://", 1)[0].isidentifier()


def local_path(path: str | os.PathLike) -> str:
    """file://PATH -> PATH; anything else unchanged."""
    s = str(path)
    return s[len("file://"):] if s.startswith("file://") else s


def open_filesystem(url: str):
    """(fsspec filesystem, path inside it) for a URL, with a clear error when its package is missing."""
    try:
        import fsspec
    except ImportError:
        raise DependencyMissing(f"{url}: reading URLs needs fsspec: pip install 'contextsort[remote]'") from None
    protocol = url.split("://", 1)[0]
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError:
        pkg = PROTOCOL_PACKAGES.get(protocol, f"the fsspec package for {protocol}://")
        raise DependencyMissing(f"{url}: reading {protocol}:// needs {pkg}: pip install {pkg}") from None
    except ValueError as e:
        raise InputError(f"{url}: not a URL fsspec can open: {e}") from None
    return fs, path


def remote_files(url: str) -> list[dict]:
    """The files under a URL (one file, or every file below a folder), with their listing info."""
    fs, path = open_filesystem(url)
    try:
        if fs.isdir(path):
            infos = sorted(fs.find(path, detail=True).values(), key=lambda i: i["name"])
        else:
            infos = [fs.info(path)]
    except FileNotFoundError:
        raise InputError(f"{url}: no such file or folder") from None
    except PermissionError as e:
        raise InputError(f"{url}: access denied: {e}") from None
    files = [i for i in infos if i.get("type", "file") == "file"]
    if not files:
        raise InputError(f"{url}: no such file or folder")
    return files


def checksum(info: dict) -> str:
    """The store's own content checksum when it gives one (S3 ETag, GCS md5, HF lfs sha), else size + mtime."""
    for key in ("ETag", "etag", "md5Hash", "crc32c", "sha256", "checksum"):
        if info.get(key):
            return str(info[key]).strip('"')
    lfs = info.get("lfs") or {}
    if isinstance(lfs, dict) and lfs.get("sha256"):
        return lfs["sha256"]
    return f"{info.get('size')}|{info.get('mtime') or info.get('LastModified') or info.get('last_modified')}"


def fingerprint_urls(urls: list[str]) -> str:
    """Fingerprint of URL inputs from their listings (name, size, checksum); nothing is downloaded."""
    h = hashlib.sha256()
    for url in urls:
        for info in remote_files(url):
            h.update(json.dumps([info["name"], info.get("size"), checksum(info)], default=str).encode())
    return h.hexdigest()[:16]


def download(url: str, cache_dir: Path) -> str:
    """Copy a URL (file or folder) into cache_dir through fsspec, streamed; returns the local path.

    The local copy keeps the URL's last path component and, for folders, the layout below it
    (readers look at suffixes: .jsonl.gz, .parquet, ...)."""
    fs, path = open_filesystem(url)
    files = remote_files(url)
    root = Path(cache_dir) / hashlib.sha256(url.encode()).hexdigest()[:12]
    name = path.rstrip("/").rsplit("/", 1)[-1] or "input"
    target = root / name
    base = path.rstrip("/")  # url_to_fs gives the path without its protocol, as listings name files
    single = len(files) == 1 and files[0]["name"].rstrip("/") == base
    for info in files:
        dest = target if single else target / info["name"][len(base):].lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with fs.open(info["name"], "rb") as src, open(dest, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 22), b""):
                out.write(chunk)
    return str(target)


def is_hf_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether a local folder was written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    d = Path(path)
    return d.is_dir() and ((d / "state.json").is_file() or (d / "dataset_dict.json").is_file())


def hf_dataset_to_parquet(path: str, cache_dir: Path) -> str:
    """A `save_to_disk` folder as Parquet (one file per split, in split order) under cache_dir."""
    try:
        import datasets
    except ImportError:
        raise DependencyMissing(f"{path}: reading a saved Hugging Face dataset needs datasets: pip install datasets") from None
    loaded = datasets.load_from_disk(path)
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("data", loaded)]
    target = Path(cache_dir) / hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12] / Path(path).name
    target.mkdir(parents=True, exist_ok=True)
    for i, (name, ds) in enumerate(splits):
        ds.to_parquet(str(target / f"{i:03d}-{name}.parquet"))
    return str(target)


def fingerprint_local_tree(path: str) -> str:
    """Fingerprint of every file under a local folder: relative name, size, mtime."""
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def localize(inputs: list[str], cache_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Local paths the readers know for every input (URLs downloaded into cache_dir, saved HF
    datasets written there as Parquet) and {local path: original input} for messages."""
    out, origin = [], {}
    for p in inputs:
        if is_url(p) and not str(p).startswith("file://"):
            local = download(str(p), cache_dir)
            origin[local] = str(p)
        else:
            local = local_path(p)
        if is_hf_saved_dataset(local):
            converted = hf_dataset_to_parquet(local, cache_dir)
            origin[converted] = origin.get(local, str(p))
            local = converted
        out.append(local)
    return out, origin


def url_of(source: str, origin: dict[str, str]) -> str:
    """A local file name shown as the URL it was downloaded from (reject lists, errors)."""
    for local, url in origin.items():
        if source == local or source.startswith(local + "/"):
            return url + source[len(local):]
    return source
