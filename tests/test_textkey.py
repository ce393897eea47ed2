"""The exact-duplicate hash (textkey.py): the numba kernel against Python's own definition.

The definition is xxh64 (the `xxhash` package) of the UTF-8 of `" ".join(t.split()).lower()`;
the kernel must give it for every text, including non-ASCII whitespace, \\x1c-\\x1f, NUL,
CRLF, combining characters, 'İ' (lowercased to two code points), 'ẞ', the final-sigma
rule of 'Σ' and lone surrogates, and for every code point of Unicode in those contexts.
"""

from __future__ import annotations

import numpy as np
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from contextsort.textkey import hash_utf8, text_hashes, xxh64


def reference(t: str) -> int:
    return xxhash.xxh64_intdigest(" ".join(t.split()).lower().encode("utf-8", "surrogatepass"))


EDGE_TEXTS = [
    "", " ", "\t\n", "a", "A  B", " lead and trail ", "CRLF\r\nline\r\n", "nul\x00in\x00side", "x\x1cy\x1dz\x1e\x1fw",
    "nbsp\u00a0nel\u0085ogham\u1680em\u2003ls\u2028ps\u2029nnbsp\u202fmm\u205fideo\u3000end",
    "zwsp\u200bnot space", "comb\u0301ined e\u0301 \u0301lead", "İstanbul İ", "STRASSE ẞ ß", "ΟΔΟΣ ΟΔΟΣ. Σ ΑΣ'Α ΑΣʰ Σ\u0301",
    "aΣ", "Σa", " Σ ", "ʰΣ", "AʰΣ", "A'Σ'", "ΑΣ\u00a0x", "ΑΣ\u3000", "Ⱥ Ⱦ ȺȾ", "ǅ ǈ ǋ", "\U00010400\U0001e900", "😀 ÀB",
    "lone \ud800 surrogate \udfff", "KELVIN \u212a OHM \u2126", "I\u0307 \u0130\u0307",
]


def test_edge_texts_match_the_definition():
    assert text_hashes(EDGE_TEXTS).tolist() == [reference(t) for t in EDGE_TEXTS]


def test_texts_that_differ_only_in_spacing_and_case_share_a_hash_and_others_do_not():
    same = ["Hello World", "  hello\u00a0\tWORLD\r\n", "HELLO\u3000world"]
    h = text_hashes(same + ["Hello Worlds", "HelloWorld"])
    assert len(set(h[:3].tolist())) == 1 and len(set(h.tolist())) == 3


def test_every_code_point_in_final_sigma_and_space_contexts():
    """Each code point c (surrogates too) in 'AcΣ cΣ c ΣcA': its lowercase, whether it is space,
    cased or case-ignorable, as Python's str.lower and str.split see it."""
    texts = [f"A{c}\u03a3 {c}\u03a3 {c} \u03a3{c}A" for c in map(chr, range(0x110000))]
    got = text_hashes(texts)
    want = np.fromiter(map(reference, texts), dtype=np.uint64, count=len(texts))
    bad = np.flatnonzero(got != want)
    assert len(bad) == 0, [hex(int(c)) for c in bad[:10]]


TRICKY = "aZ \t\n\r\x00\x0b\x1c\x1f\x85\xa0\u1680\u2028\u3000\u200b'.^\u0301\u0307\u02b0İẞßΣσςΑ\u212aǅȺ\U0001f600\ud800"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(TRICKY, max_size=16), max_size=10))
def test_random_texts_match_the_definition(texts):
    assert text_hashes(texts).tolist() == [reference(t) for t in texts]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=7), st.binary(max_size=200))
def test_kernel_hash_is_xxh64(before, data):
    # bytes before the start and past the end must not count
    buf = np.frombuffer(before + data + b"\xff" * 8, dtype=np.uint8).copy()
    assert int(xxh64(buf, len(before), len(data))) == xxhash.xxh64_intdigest(data)


def test_hash_utf8_takes_arrow_buffers():
    import pyarrow as pa

    from contextsort.arrow_ingest import string_buffers

    texts = ["First  ONE", "ΑΣ", "", "Third\u00a0one"] * 3
    arr = pa.array(texts, pa.large_string()).slice(2, 7)  # an offset into the buffers
    data, offsets = string_buffers(arr)
    assert hash_utf8(data, offsets).tolist() == [reference(t) for t in texts[2:9]]


def test_tables_are_made_when_first_needed_and_the_kernel_reruns(monkeypatch):
    """A process starts with no tables; a non-ASCII text, then a 'Σ', each make the kernel rerun with more."""
    from contextsort import textkey

    monkeypatch.setattr(textkey, "TABLES_NEEDED", [0])
    batches = [["plain ASCII  text", "Two"], ["ascii", "caf\u00e9 \u00a0 CAF\u00c9", "x"], ["ΟΔΟΣ ΟΔΟΣ", "café", "ascii"]]
    levels = []
    for texts in batches:
        assert text_hashes(texts).tolist() == [reference(t) for t in texts]
        levels.append(textkey.TABLES_NEEDED[0])
    assert levels == [0, 1, 2]


def test_final_sigma_properties_kept_on_disk_equal_fresh_ones(tmp_path, monkeypatch):
    from contextsort import textkey

    monkeypatch.setattr(textkey, "TABLE_CACHE_DIR", tmp_path)
    fresh = textkey.make_sigma_props()
    assert ((fresh & textkey.CASED) != 0)[[ord("A"), ord("z"), 0x3A3, 0x130]].all()
    assert ((fresh & textkey.IGNORABLE) != 0)[[ord("'"), ord("."), 0x301, 0x2B0]].all()
    first = textkey.sigma_props()  # made and written
    assert len(list(tmp_path.glob("*.npy"))) == 1
    assert np.array_equal(first, fresh) and np.array_equal(textkey.sigma_props(), fresh)  # read back
    next(tmp_path.glob("*.npy")).write_bytes(b"not a numpy file")
    assert np.array_equal(textkey.sigma_props(), fresh)  # a damaged file is made again


def test_key_byte_is_the_ascii_table_and_leaves_other_bytes():
    """The arithmetic byte map of the fast pass is ASCII_KEY (str.isspace / str.lower) on ASCII and the identity above."""
    from contextsort.textkey import ASCII_KEY, key_byte

    got = [int(key_byte(np.uint8(b))) for b in range(256)]
    assert got[:128] == ASCII_KEY.tolist() and got[128:] == list(range(128, 256))


# texts the fast pass takes as their own key (single spaces, non-ASCII that lowercases to itself)
# beside near misses that must go through the general loop
AS_IS_AND_NEAR = [
    "Plain Upper And lower", "x", "caf\u00e9 \u00a3 \u201cquoted\u201d \u00df \U0001f600", "a b c " * 40 + "end",
    "CAF\u00c9", "a  b", " a", "a ", "a\tb", "a\nb", "a\u00a0b", "\u03a3", "x\u0130", "\u212a", "\u1e9e",
    "\u3000", "", " ", "\u2028", "tail\u0085",
    # runs of whitespace, leading and trailing whitespace: the general loop
    "para one.\n\npara two\n", "  lead", "trail \n ", "a \t\n b", "x\x1c\x1dy", "  ", "\n", "a\n",
    "caf\u00e9\n\n\u00a3  \u201cx\u201d ", "\u00e9  \u00a0", "Z" + " " * 70 + "z" + "\r\n" * 9,
]


def test_texts_that_are_their_own_key_and_near_misses_match_the_definition():
    for texts in (AS_IS_AND_NEAR, AS_IS_AND_NEAR[::-1], [t * 3 for t in AS_IS_AND_NEAR]):
        assert text_hashes(texts).tolist() == [reference(t) for t in texts]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(TRICKY + "abcXYZ   ", max_size=80), max_size=12))
def test_blank_count_is_pythons_strip(texts):
    """hash_utf8_blanks: the hashes, and how many texts `not text.strip()` calls blank (the ingest reject rule)."""
    from contextsort.textkey import hash_utf8_blanks

    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.concatenate(([0], np.cumsum([len(e) for e in encoded]))).astype(np.int64)
    hashes, blank = hash_utf8_blanks(b"".join(encoded), offsets)
    assert hashes.tolist() == [reference(t) for t in texts]
    assert blank == sum(not t.strip() for t in texts)
