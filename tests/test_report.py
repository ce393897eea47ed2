"""The HTML report: every section whose data exists (and no other), escaped text, no network,
and a page that a real browser (headless Chromium) renders without console errors."""

from __future__ import annotations

import html
import json
import random
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from contextsort import Config, run
from contextsort.corpus import DocStore
from contextsort.metrics import STEPS_FILE
from contextsort.report import ReportError, ReportUnavailable, RunView, write_report

from conftest import write_jsonl

SECTIONS = ("summary", "order", "map", "read", "dedup", "contexts", "probe")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """Section ids, resource attributes and tags of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[str] = []
        self.resources: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if tag == "section" and k == "id":
                self.sections.append(v)
            if k in ("src", "href", "srcset", "action", "poster", "data"):
                self.resources.append((tag, k, v or ""))


@pytest.fixture(scope="module")
def bbc_packed(tmp_path_factory, bbc_path) -> Path:
    """A labelled, packed run on 300 BBC articles (60 per topic)."""
    src = tmp_path_factory.mktemp("bbc300")
    for topic in sorted(p for p in bbc_path.iterdir() if p.is_dir()):
        (src / topic.name).mkdir()
        for f in sorted(topic.glob("*.txt"))[:60]:
            shutil.copy(f, src / topic.name / f.name)
    cfg = Config()
    cfg.pack.context_length = 512
    out = tmp_path_factory.mktemp("bbcrun") / "run"
    run([src], out, cfg)
    return out


def marked_up_docs(bbc_path: Path, per_topic: int = 50) -> list[dict]:
    """BBC articles without their label, each with markup in its text and id; an exact and a
    near duplicate (one sentence dropped) planted."""
    docs = []
    for topic in sorted(p for p in bbc_path.iterdir() if p.is_dir()):
        for f in sorted(topic.glob("*.txt"))[:per_topic]:
            text = f.read_bytes().decode("utf-8", errors="replace")
            docs.append({"id": f"doc<{topic.name}/{f.stem}>", "text": f"<b>Story</b> & <script>alert(1)</script> {text}"})
    docs.append({"id": "exact<copy>", "text": docs[5]["text"]})
    sentences = docs[6]["text"].split(". ")
    docs.append({"id": "near<copy>", "text": ". ".join(sentences[:-2] + sentences[-1:])})
    return docs


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, bbc_path) -> Path:
    """No labels, no packing, float16 embeddings."""
    d = tmp_path_factory.mktemp("plain")
    write_jsonl(d / "docs.jsonl", marked_up_docs(bbc_path))
    cfg = Config()
    cfg.input.label_field = None
    cfg.embed.dtype = "float16"
    out = d / "run"
    run([d / "docs.jsonl"], out, cfg)
    return out


@pytest.fixture(scope="module")
def bbc_report(bbc_packed) -> str:
    return write_report(bbc_packed).read_text(encoding="utf-8")


def test_every_section_with_data_is_there(bbc_packed, bbc_report):
    page = Page(bbc_report)
    assert page.sections == [s for s in SECTIONS if s != "probe"]  # no probe.json in this run
    manifest = json.loads((bbc_packed / "manifest.json").read_text())
    c = manifest["counts"]
    for key in ("records_read", "kept", "duplicates", "rejected"):
        assert f'<div class="num">{c[key]:,}</div>' in bbc_report
    assert 'aria-label="label transition heatmap"' in bbc_report  # labels exist: the heatmap and the label column
    assert "<th>label</th>" in bbc_report
    info = json.loads((bbc_packed / "packed" / "pack.json").read_text())
    assert f"<td>contexts</td><td>{info['counts']['contexts']:,}</td>" in bbc_report
    # split documents counted from the packed index agree with pack.json
    assert f"{info['metrics']['documents_split']:,} documents are split across contexts" in bbc_report
    # the reading windows start at the first document of the order, shown with its id and text
    store, order = DocStore(bbc_packed / "store"), np.load(bbc_packed / "order.npy")
    first = store.record(int(order[0]))["id"]
    assert f"<code>{first}</code>" in bbc_report
    assert html.escape(" ".join(store.text(int(order[0])).split())[:60]) in bbc_report


def test_sections_without_data_are_left_out_and_text_is_escaped(plain_run):
    text = write_report(plain_run).read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == ["summary", "order", "map", "read", "dedup"]
    assert "label transition heatmap" not in text and "<th>label</th>" not in text
    # every document holds <script> and <b> in its text and '<' in its id: none may reach the page raw
    assert "script" not in page.tags and "<b>Story" not in text and "<0>" not in text
    assert "&lt;b&gt;Story" in text and "&lt;script&gt;alert(" in text and "doc&lt;" in text
    # the planted near duplicate is one of the removed pairs shown, beside the document it copies
    assert "removed: <code>near&lt;copy&gt;</code>" in text


def test_nothing_is_fetched_over_the_network(bbc_report):
    page = Page(bbc_report)
    assert page.resources, "the page embeds its plots"
    for tag, attr, value in page.resources:
        assert value.startswith(("data:", "#")), (tag, attr, value[:80])
    assert "link" not in page.tags and "iframe" not in page.tags and "script" not in page.tags
    assert "url(" not in bbc_report and "@import" not in bbc_report


def test_probe_results_are_shown_when_probe_json_exists(plain_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(plain_run, run_dir)
    probe = {"standard": {"loss": 3.25, "gain": 0.011}, "ordered": {"loss": 3.18, "gain": 0.042},
             "gain_difference": {"mean": 0.031, "ci95": [0.012, 0.05]}, "config": {"steps": 400, "model": "tiny<gpt>"}}
    (run_dir / "probe.json").write_text(json.dumps(probe))
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert Page(text).sections[-1] == "probe"
    probe_html = text[text.index('<section id="probe">'):]
    for value in ("3.25", "3.18", "0.0420", "0.0310", "0.0120", "400", "tiny&lt;gpt&gt;"):
        assert value in probe_html


def test_interrupted_run_gets_a_report_of_what_exists(plain_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(plain_run, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    del manifest["counts"], manifest["metrics"]  # as if killed after dedup
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    (run_dir / "order.npy").unlink()
    text = write_report(run_dir, tmp_path / "r.html").read_text(encoding="utf-8")
    assert Page(text).sections == ["summary", "dedup"]
    assert "has not finished" in text


def test_missing_matplotlib_is_a_clear_error(plain_run, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ReportUnavailable, match=r"pip install 'contextsort\[report\]'"):
        write_report(plain_run, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_cli_report(plain_run, tmp_path, capsys):
    from contextsort.cli import main

    out = tmp_path / "x.html"
    assert main(["report", str(plain_run), "-o", str(out)]) == 0
    assert Page(out.read_text(encoding="utf-8")).sections[0] == "summary"
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a contextsort run" in capsys.readouterr().err
    with pytest.raises(ReportError):
        write_report(tmp_path)


# -- in a real browser ------------------------------------------------------------------


def render(html_file: Path, out_dir: Path, height: int = 3000) -> tuple[list[str], list[str], np.ndarray]:
    """Load a page in headless Chromium: (console messages, URLs the page requested, screenshot pixels)."""
    import matplotlib.image

    shot, netlog = out_dir / "shot.png", out_dir / "net.json"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           f"--user-data-dir={out_dir / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--log-net-log={netlog}", f"--window-size=1280,{height}", f"--screenshot={shot}", html_file.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert shot.exists(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    # requests the page made carry its (opaque, file://) origin "null"; the browser's own do not
    fetched = [e["params"].get("url", "") for e in log["events"]
               if names.get(e["type"]) == "URL_REQUEST_START_JOB" and e.get("params", {}).get("initiator") == "null"]
    return console, fetched, matplotlib.image.imread(shot)


def non_blank(pixels: np.ndarray) -> float:
    """Share of pixels that differ from the most common colour."""
    rgb = (pixels[..., :3] * 255).astype(np.uint32).reshape(-1, 3)
    counts = np.bincount((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2])
    return 1.0 - counts.max() / len(rgb)


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: apt-get install -y chromium")


@needs_chromium
def test_browser_check_catches_errors_and_fetches(tmp_path):
    """The harness itself can fail: a page with a script error and a remote image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><h1>x</h1><script>nothing_here();</script><img src="https://example.invalid/a.png"></body></html>')
    console, fetched, pixels = render(bad, tmp_path, height=400)
    assert any("nothing_here" in line for line in console)
    assert any(u.startswith("https://example.invalid/") for u in fetched)
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    assert non_blank(render(blank, tmp_path, height=400)[2]) == 0.0


@needs_chromium
def test_report_renders_in_chromium(bbc_packed, bbc_report, tmp_path):
    console, fetched, pixels = render(bbc_packed / "report.html", tmp_path)
    assert console == []
    assert fetched == []
    assert pixels.shape[:2] == (3000, 1280)
    assert non_blank(pixels) > 0.1  # header, cards, plots and tables drawn (a blank page: 0)


def test_contexts_read_back_from_parquet_only_boundary_packing(bbc_packed, tmp_path):
    from contextsort import pack_run

    run_dir = tmp_path / "run"
    shutil.copytree(bbc_packed, run_dir)
    pack_run(run_dir, context_length=1024, mode="boundary", formats=["parquet"])
    info = json.loads((run_dir / "packed" / "pack.json").read_text())
    assert list(info["files"]) == ["parquet"]
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "contexts" in Page(text).sections
    assert "<td>mode</td><td>boundary</td>" in text
    assert f"{info['metrics']['documents_split']:,} documents are split across contexts" in text


@pytest.mark.parametrize("n", [1, 12, 13, 40, 2062, 10**6])
def test_reading_windows_stay_inside_the_order_and_never_overlap(n):
    from contextsort.report import WINDOW, window_starts

    rng = np.random.default_rng(n)
    steps = np.where(rng.random(max(0, n - 1)) < 0.01, 0.0, 0.5)
    for given in (None, steps):
        wins = window_starts(n, given)
        starts = [s for s, _ in wins]
        assert starts == sorted(starts) and starts[0] >= 0
        assert all(s + min(n, WINDOW) <= n for s in starts)
        assert all(b >= a + WINDOW for a, b in zip(starts, starts[1:]))
        for s, why in wins:
            if why:  # the window said to be around a jump holds one
                assert (given[max(0, s - 1):s + WINDOW - 1] == 0).any()


def test_report_draws_the_metrics_stages_steps_only_for_their_order(bbc_packed, bbc_report, tmp_path):
    """steps.npz (the metrics stage's per-step arrays) equals what the report recomputes from
    the artifacts, the page is the same either way, and a file measured on another order or
    seed is not used."""
    run_dir = tmp_path / "run"
    shutil.copytree(bbc_packed, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    saved = RunView(run_dir, manifest).measured_steps
    assert saved is not None
    (run_dir / STEPS_FILE).unlink()
    fresh = RunView(run_dir, manifest)
    assert fresh.measured_steps is None
    np.testing.assert_array_equal(saved["adjacent"], fresh.adjacent)
    np.testing.assert_array_equal(saved["adjacent_random"], fresh.random_adjacent)
    np.testing.assert_array_equal(saved["steps"], fresh.steps)
    assert float(saved["steps_random"].sum()) == fresh.random_path_weight
    assert len(saved["steps"]) == len(fresh.order) - 1 and (saved["steps"] > 0).any()
    assert write_report(run_dir, tmp_path / "recomputed.html").read_text(encoding="utf-8") == bbc_report
    # measured on another order, or drawn with another seed: recomputed, not used
    shutil.copy(bbc_packed / STEPS_FILE, run_dir / STEPS_FILE)
    assert RunView(run_dir, manifest, seed=1).measured_steps is None
    order = np.load(run_dir / "order.npy")
    np.save(run_dir / "order.npy", order[::-1].copy())
    assert RunView(run_dir, manifest).measured_steps is None
