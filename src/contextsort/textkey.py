"""The exact-duplicate hash of a text: blake2b (8 bytes) of `" ".join(text.split()).lower()`.

Texts are normalised many at a time, joined by NUL bytes and cut apart again (NUL is
neither whitespace nor cased, so no text's result depends on its neighbours): ASCII texts
as bytes (whitespace to one space by translate and replace, A-Z lowered), the others as
one string by Python's own rules. The hashes are stored (text_hash.npy): any change here
changes stores, so the batched forms are tested against the one-by-one definition.
"""

from __future__ import annotations

import hashlib

import numpy as np

# str.split()'s ASCII whitespace (\x1c-\x1f are whitespace to Python too) to a space, A-Z to a-z
NORMALISE_ASCII = bytes(32 if chr(c).isspace() else c + 32 if 65 <= c <= 90 else c for c in range(256))


def short_hashes(keys: list[bytes]) -> np.ndarray:
    """uint64 (blake2b, 8 bytes, little-endian) of each byte string."""
    blake = hashlib.blake2b
    return np.frombuffer(b"".join([blake(k, digest_size=8).digest() for k in keys]), dtype="<u8").astype(np.uint64)


def ascii_keys(joined: bytes, n: int) -> list[bytes] | None:
    """Normalised forms of `n` ASCII texts joined by NUL bytes; None if a text held a NUL of its own."""
    norm = joined.translate(NORMALISE_ASCII)
    # where spaces must go is found with numpy (a bytes search for a pattern starting
    # with a space is slow on text, where every other word ends in one)
    arr = np.frombuffer(norm, dtype=np.uint8)
    space = arr == 32
    if (space[1:] & space[:-1]).any():
        while b"  " in norm:
            norm = norm.replace(b"  ", b" ")
        arr = np.frombuffer(norm, dtype=np.uint8)
        space = arr == 32
    nul = arr == 0
    if (space[:-1] & nul[1:]).any():
        norm = norm.replace(b" \0", b"\0")
    if (nul[:-1] & space[1:]).any():
        norm = norm.replace(b"\0 ", b"\0")
    parts = norm.strip(b" ").split(b"\0")
    return parts if len(parts) == n else None


def unicode_keys(texts: list[str]) -> list[bytes]:
    """Normalised forms (UTF-8) of any texts, by Python's rules, together where no text holds a NUL."""
    if not texts:
        return []
    parts = " ".join("\0".join(texts).split()).replace(" \0", "\0").replace("\0 ", "\0").lower().encode(
        "utf-8", errors="surrogatepass").split(b"\0")
    if len(parts) == len(texts):
        return parts
    return [" ".join(t.split()).lower().encode("utf-8", errors="surrogatepass") for t in texts]


def text_hashes(texts: list[str]) -> np.ndarray:
    """uint64 hash of each text's normalised form, `" ".join(text.split()).lower()` (exact duplicates)."""
    n = len(texts)
    flags = np.fromiter(map(str.isascii, texts), dtype=bool, count=n)
    out = np.empty(n, dtype=np.uint64)
    at = np.flatnonzero(flags)
    if len(at):
        group = texts if len(at) == n else [texts[i] for i in at.tolist()]
        keys = ascii_keys("\0".join(group).encode("ascii"), len(group))
        out[at] = short_hashes(keys if keys is not None else unicode_keys(group))
    at = np.flatnonzero(~flags)
    if len(at):
        out[at] = short_hashes(unicode_keys([texts[i] for i in at.tolist()]))
    return out
