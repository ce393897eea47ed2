"""The exact-duplicate hash of a text: xxh64 (seed 0) of the UTF-8 of `" ".join(text.split()).lower()`.

The key is Python's own definition (whitespace by `str.isspace`, lowercase by `str.lower`,
so 'İ' -> 'i̇' and a final 'Σ' -> 'ς'); the hash is XXH64 of its UTF-8 bytes (lone
surrogates as `surrogatepass` writes them), equal to `xxhash.xxh64_intdigest(key)`. It is
computed without a Python object per text: one numba kernel walks the UTF-8 bytes of all
texts (a buffer and its offsets, as an Arrow string column holds them), normalises each
text into a scratch buffer and hashes it there. Non-ASCII code points go through tables
made once per process from the running Python's Unicode database (`str.isspace`,
`str.lower`, and for the final-sigma rule the "cased" and "case-ignorable" properties, read
off what `str.lower` does to 'Σ' next to each character; kept in __pycache__), so the
kernel gives what Python gives for every text.

Collisions: 64 bits, so among n distinct texts the chance of any two sharing a hash is
about n² / 2**65 (1e-8 at a million texts, 0.15 % at 235 million); a collision would make
one text an exact duplicate of the other. The hashes are stored (text_hash.npy) and
compared only within one store; the ingest stage's version marks the definition.
"""

from __future__ import annotations

import sys
import unicodedata
from functools import cache
from pathlib import Path

import numba as nb
import numpy as np

from .atomic import save_npy
from .errors import ResourceError

MAX_CP = 0x110000
SPACE, IGNORABLE, CASED = 1, 2, 4  # bits of `unicode_tables(...)[1]`
CAPITAL_SIGMA, SMALL_SIGMA, FINAL_SIGMA, CAPITAL_I_DOT = 0x3A3, 0x3C3, 0x3C2, 0x130


def all_code_points(skip: tuple[int, ...] = ()) -> np.ndarray:
    """Every code point but the surrogates and `skip`, in order (uint32)."""
    cps = np.arange(MAX_CP, dtype=np.uint32)
    keep = (cps < 0xD800) | (cps > 0xDFFF)
    for c in skip:
        keep[c] = False
    return cps[keep]


def lowered(cps: np.ndarray) -> np.ndarray:
    """`str.lower` of the string of these code points, as code points (uint32)."""
    s = cps.astype("<u4").tobytes().decode("utf-32-le")
    return np.frombuffer(s.lower().encode("utf-32-le"), dtype="<u4")


@cache
def unicode_tables(sigma: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(lower, props): the one-code-point lowercase of each code point (int32; İ and Σ are
    handled by the kernel), and its SPACE bit (uint8), from this Python; with `sigma`, also
    the IGNORABLE and CASED bits the final-sigma rule needs (made only for texts with a 'Σ')."""
    if sigma:
        lower, props = unicode_tables()
        return lower, props | sigma_props()
    cps = all_code_points(skip=(CAPITAL_I_DOT,))  # the one code point whose lowercase is two
    low = lowered(cps)
    if len(low) != len(cps):
        raise RuntimeError("this Python lowercases a code point other than U+0130 to several")
    lower = np.arange(MAX_CP, dtype=np.int32)
    lower[cps] = low
    props = np.zeros(MAX_CP, dtype=np.uint8)
    props[space_code_points()] = SPACE
    return lower, props


TABLE_CACHE_DIR = Path(__file__).resolve().parent / "__pycache__"


def sigma_props() -> np.ndarray:
    """`make_sigma_props()`, kept in __pycache__ per Python and Unicode version (it takes 0.3 s
    to make: every process that meets a 'Σ' would pay it; a read-only install just makes it)."""
    path = TABLE_CACHE_DIR / f"contextsort-sigma-props-{sys.implementation.cache_tag}-{unicodedata.unidata_version}.npy"
    try:
        props = np.load(path)
        if props.shape == (MAX_CP,) and props.dtype == np.uint8:
            return props
    except (OSError, ValueError):
        pass
    props = make_sigma_props()
    try:
        path.parent.mkdir(exist_ok=True)
        save_npy(path, props)
    except (OSError, ResourceError):
        pass
    return props


def make_sigma_props() -> np.ndarray:
    """IGNORABLE / CASED bits (uint8) of each code point, as Python's final-sigma rule sees them.

    'Σ' lowercases to 'ς' after a cased character (case-ignorable ones skipped) that is not
    followed by one. Asked of str.lower for each c: in "AcΣ " the Σ is final when c is
    case-ignorable or cased; in " cΣ " only when c is cased and not case-ignorable.
    """
    cps = all_code_points(skip=(CAPITAL_I_DOT,))
    quads = np.empty((len(cps), 4), dtype=np.uint32)
    quads[:, 1], quads[:, 2], quads[:, 3] = cps, CAPITAL_SIGMA, 32
    quads[:, 0] = ord("A")
    after_cased = lowered(quads.ravel()).reshape(-1, 4)[:, 2] == FINAL_SIGMA
    quads[:, 0] = 32
    after_space = lowered(quads.ravel()).reshape(-1, 4)[:, 2] == FINAL_SIGMA
    props = np.zeros(MAX_CP, dtype=np.uint8)
    props[cps[after_cased & ~after_space]] |= IGNORABLE
    props[cps[after_space]] |= CASED
    props[CAPITAL_I_DOT] |= CASED  # an uppercase letter, not case-ignorable
    if (props[space_code_points()] != 0).any():
        raise RuntimeError("this Python has a whitespace character that is cased or case-ignorable")
    return props


def space_code_points() -> list[int]:
    """The code points `str.split()` splits at (str.isspace), found by the regex engine's \\s and checked."""
    import re

    s = all_code_points().astype("<u4").tobytes().decode("utf-32-le")
    found = [ord(m.group()) for m in re.finditer(r"\s", s)]
    if not all(chr(c).isspace() for c in found) or not all(chr(c).isspace() for c in (0x1C, 0x85, 0x3000)):
        raise RuntimeError("re's \\s is not str.isspace in this Python")
    return found


P1 = np.uint64(11400714785074694791)
P2 = np.uint64(14029467366897019727)
P3 = np.uint64(1609587929392839161)
P4 = np.uint64(9650029242287828579)
P5 = np.uint64(2870177450012600261)


@nb.njit(cache=True, inline="always")
def rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@nb.njit(cache=True, inline="always")
def read64(b, i):
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(b[i + k]) << np.uint64(8 * k)
    return v


@nb.njit(cache=True, inline="always")
def read32(b, i):
    v = np.uint64(0)
    for k in range(4):
        v |= np.uint64(b[i + k]) << np.uint64(8 * k)
    return v


@nb.njit(cache=True, inline="always")
def xxh64_round(acc, lane):
    acc = acc + lane * P2
    return rotl(acc, 31) * P1


@nb.njit(cache=True, inline="always")
def xxh64_merge(acc, val):
    acc ^= xxh64_round(np.uint64(0), val)
    return acc * P1 + P4


@nb.njit(cache=True, nogil=True)
def xxh64(b, s, n):
    """XXH64 (seed 0) of b[s:s + n] (one signature for every caller: one compilation)."""
    i = 0
    if n >= 32:
        v1 = P1 + P2
        v2 = P2
        v3 = np.uint64(0)
        v4 = np.uint64(0) - P1
        while i + 32 <= n:
            v1 = xxh64_round(v1, read64(b, s + i))
            v2 = xxh64_round(v2, read64(b, s + i + 8))
            v3 = xxh64_round(v3, read64(b, s + i + 16))
            v4 = xxh64_round(v4, read64(b, s + i + 24))
            i += 32
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
        h = xxh64_merge(h, v1)
        h = xxh64_merge(h, v2)
        h = xxh64_merge(h, v3)
        h = xxh64_merge(h, v4)
    else:
        h = P5
    h += np.uint64(n)
    while i + 8 <= n:
        h ^= xxh64_round(np.uint64(0), read64(b, s + i))
        h = rotl(h, 27) * P1 + P4
        i += 8
    if i + 4 <= n:
        h ^= read32(b, s + i) * P1
        h = rotl(h, 23) * P2 + P3
        i += 4
    while i < n:
        h ^= np.uint64(b[s + i]) * P5
        h = rotl(h, 11) * P1
        i += 1
    h ^= h >> np.uint64(33)
    h *= P2
    h ^= h >> np.uint64(29)
    h *= P3
    h ^= h >> np.uint64(32)
    return h


@nb.njit(cache=True, inline="always")
def decode_at(data, i):
    """(code point, its length) of the UTF-8 sequence starting at data[i] (valid, surrogates allowed)."""
    b = np.int32(data[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int32(data[i + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int32(data[i + 1]) & 0x3F) << 6) | (np.int32(data[i + 2]) & 0x3F), 3
    return (((b & 0x07) << 18) | ((np.int32(data[i + 1]) & 0x3F) << 12) | ((np.int32(data[i + 2]) & 0x3F) << 6)
            | (np.int32(data[i + 3]) & 0x3F)), 4


@nb.njit(cache=True, inline="always")
def encode_at(out, p, c):
    """Write code point c as UTF-8 at out[p]; returns the position after it."""
    if c < 0x80:
        out[p] = c
        return p + 1
    if c < 0x800:
        out[p] = 0xC0 | (c >> 6)
        out[p + 1] = 0x80 | (c & 0x3F)
        return p + 2
    if c < 0x10000:
        out[p] = 0xE0 | (c >> 12)
        out[p + 1] = 0x80 | ((c >> 6) & 0x3F)
        out[p + 2] = 0x80 | (c & 0x3F)
        return p + 3
    out[p] = 0xF0 | (c >> 18)
    out[p + 1] = 0x80 | ((c >> 12) & 0x3F)
    out[p + 2] = 0x80 | ((c >> 6) & 0x3F)
    out[p + 3] = 0x80 | (c & 0x3F)
    return p + 4


@nb.njit(cache=True, nogil=True)
def sigma_is_final(data, start, stop, i, n_sigma, props):
    """Python's final-sigma test for the 'Σ' at data[i:i+n_sigma] in the text data[start:stop]."""
    j = i  # left: skip case-ignorable characters, then is the character cased?
    cased_before = False
    while j > start:
        j -= 1
        while j > start and (data[j] & 0xC0) == 0x80:
            j -= 1
        c, _ = decode_at(data, j)
        pr = props[c]
        if pr & IGNORABLE:
            continue
        cased_before = (pr & CASED) != 0
        break
    if not cased_before:
        return False
    j = i + n_sigma  # right: skip case-ignorable characters; not final before a cased one
    while j < stop:
        c, m = decode_at(data, j)
        pr = props[c]
        if pr & IGNORABLE:
            j += m
            continue
        return (pr & CASED) == 0
    return True


# str.split()'s ASCII whitespace (\x1c-\x1f are whitespace to Python too) to a space, A-Z to a-z
ASCII_KEY = np.array([32 if chr(c).isspace() else c + 32 if 65 <= c <= 90 else c for c in range(128)], dtype=np.uint8)


@nb.njit(cache=True, nogil=True, inline="always")
def key_byte(b):
    """A byte of UTF-8 mapped as `ASCII_KEY` maps it (whitespace to a space, A-Z to a-z); bytes >= 0x80 as they are.

    Arithmetic rather than a table look-up, so that the loop over a text's bytes vectorises.
    """
    upper = np.uint8(b - np.uint8(65)) < np.uint8(26)
    space = (np.uint8(b - np.uint8(9)) < np.uint8(5)) | (np.uint8(b - np.uint8(28)) < np.uint8(5))
    return np.uint8(32) if space else (b | np.uint8(32) if upper else b)


@nb.njit(cache=True, nogil=True)
def key_as_is(data, start, stop, buf, lower, props):
    """Map the text data[start:stop] byte for byte into buf (`key_byte`) and say whether that
    is already its key: 1 yes, 0 no (a run of spaces, a leading or trailing space, a code
    point that lowercases to another or is whitespace), -1 a non-ASCII text and no tables
    (`lower` empty).

    The common text (single spaces, any case, no non-ASCII character that changes) needs no
    write position carried from byte to byte: three simple loops that vectorise, several
    times faster than the general loop of `hash_texts`.
    """
    size = stop - start
    if size == 0:
        return 1
    src = data[start:stop]
    for j in range(size):
        buf[j] = key_byte(src[j])
    high = np.uint8(0)
    for j in range(size):
        high |= src[j]
    runs = np.uint8(buf[0] == 32) | np.uint8(buf[size - 1] == 32)
    for j in range(1, size):
        runs |= np.uint8(buf[j] == 32) & np.uint8(buf[j - 1] == 32)
    if runs:
        return 0
    if high < 0x80:
        return 1
    if len(lower) == 0:
        return -1
    i = 0
    while i < size:  # the non-ASCII code points: each must be its own key
        if src[i] < 0x80:
            i += 1
            continue
        c, m = decode_at(src, i)
        if (props[c] & SPACE) or lower[c] != c or c == CAPITAL_I_DOT:
            return 0
        i += m
    return 1


@nb.njit(cache=True, nogil=True)
def hash_texts(data, offsets, ascii_key, lower, props, sigma_ready):
    """(uint64 XXH64 of each text's key, 0, how many keys are empty), texts
    data[offsets[k]:offsets[k+1]] (UTF-8); or (partial, 1, -) when a non-ASCII character
    meets no tables (`lower` empty), (partial, 2, -) when a 'Σ' meets no final-sigma bits
    (`sigma_ready` false). An empty key is a blank text (nothing but whitespace, or nothing).

    A text whose byte-for-byte mapping is already its key (`key_as_is`) is hashed from
    that; any other goes through the general loop: whitespace is written as one space and
    the write position only moves on past a space that does not follow one (no branch on
    the byte's class); a leading space never moves it and a trailing one is dropped at the end.
    """
    n = len(offsets) - 1
    out = np.empty(n, dtype=np.uint64)
    longest = 0
    for k in range(n):
        longest = max(longest, offsets[k + 1] - offsets[k])
    buf = np.empty(2 * longest + 8, dtype=np.uint8)  # a key is at most 1.5x its text's bytes
    blank = 0
    for k in range(n):
        start, stop = offsets[k], offsets[k + 1]
        as_is = key_as_is(data, start, stop, buf, lower, props)
        if as_is == 1:
            out[k] = xxh64(buf, np.int64(0), stop - start)
            blank += stop == start
            continue
        if as_is == -1:
            return out, 1, blank
        p = 0
        after_space = 1  # 1 after whitespace (or at the start): a space here is not written
        i = start
        while i < stop:
            b = data[i]
            if b < 0x80:
                v = ascii_key[b]
                space = np.int64(v == 32)
                buf[p] = v
                p += 1 - (space & after_space)
                after_space = space
                i += 1
                continue
            if len(lower) == 0:
                return out, 1, blank
            c, m = decode_at(data, i)
            i += m
            if props[c] & SPACE:
                buf[p] = 32
                p += 1 - after_space
                after_space = 1
                continue
            after_space = 0
            if c == CAPITAL_I_DOT:  # 'i' and COMBINING DOT ABOVE
                buf[p] = 105
                p = encode_at(buf, p + 1, 0x307)
            elif c == CAPITAL_SIGMA:
                if not sigma_ready:
                    return out, 2, blank
                p = encode_at(buf, p, FINAL_SIGMA if sigma_is_final(data, start, stop, i - m, m, props) else SMALL_SIGMA)
            else:
                p = encode_at(buf, p, lower[c])
        if p > 0 and buf[p - 1] == 32 and after_space:
            p -= 1
        out[k] = xxh64(buf, np.int64(0), p)  # not the literal 0: that would be a second signature
        blank += p == 0
    return out, 0, blank


@nb.njit(cache=True, nogil=True)
def hash_slices(data, offsets):
    """uint64 XXH64 of each data[offsets[k]:offsets[k+1]], as they are."""
    n = len(offsets) - 1
    out = np.empty(n, dtype=np.uint64)
    for k in range(n):
        out[k] = xxh64(data, offsets[k], offsets[k + 1] - offsets[k])
    return out


def bytes_hashes(data, offsets: np.ndarray) -> np.ndarray:
    """uint64 XXH64 (seed 0) of each byte string in `data` cut at `offsets` (N+1), e.g. id keys."""
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    if not buf.flags.writeable:  # the key kernel's buffer type: `xxh64` is compiled once, not per type
        buf = buf.copy()
    return hash_slices(buf, np.asarray(offsets, dtype=np.int64))


def tables(level: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's tables: 0 none (ASCII texts), 1 lowercase and whitespace, 2 also final sigma."""
    if level == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint8)
    return unicode_tables(sigma=level == 2)


TABLES_NEEDED = [0]  # the highest level this process has needed: made once, then passed to every call


def hash_utf8(data, offsets: np.ndarray) -> np.ndarray:
    """uint64 hash of the key of each text in `data` (UTF-8 bytes, texts back to back) cut at `offsets` (N+1)."""
    return hash_utf8_blanks(data, offsets)[0]


def hash_utf8_blanks(data, offsets: np.ndarray) -> tuple[np.ndarray, int]:
    """`hash_utf8`, and how many of the texts are blank (`not text.strip()`: their key is empty)."""
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    off = np.asarray(offsets, dtype=np.int64)
    while True:
        level = TABLES_NEEDED[0]
        hashes, missing, blank = hash_texts(buf, off, ASCII_KEY, *tables(level), level == 2)
        if not missing:
            return hashes, int(blank)
        TABLES_NEEDED[0] = max(level, missing)


def text_hashes(texts: list[str]) -> np.ndarray:
    """uint64 hash of each text's normalised form, `" ".join(text.split()).lower()` (exact duplicates)."""
    encoded = [t.encode("utf-8", errors="surrogatepass") for t in texts]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(texts)), out=offsets[1:])
    return hash_utf8(b"".join(encoded), offsets)
