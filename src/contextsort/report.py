"""The HTML report of a run: one self-contained page that shows a person what the order did.

Built from the run directory's artifacts only (manifest, store, embeddings, kNN lists,
dup_of, order, packed/, probe.json), so it reads runs of either engine, with or without
labels or packing, and runs that were interrupted and resumed; a section whose artifacts
are missing is left out. Plots are PNGs embedded as data URIs (matplotlib, the optional
`report` extra); nothing is fetched over the network. Plots sample and tables show a
fixed number of rows, so the page stays well under 5 MB at millions of documents.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .corpus import DocStore
from .errors import ContextsortError, DependencyMissing
from .graph import Graph, graph_from_knn, restrict_knn
from .metrics import STEPS_FILE, adjacent_similarities_along, label_agreement, order_digest, path_bound, path_edge_weights
from .rowfile import RowFile

PLOT_SAMPLE = 200_000  # pairs or documents drawn for a histogram
MAP_SAMPLE = 4_000  # documents in the 2-D map
MAP_STRETCH = 40  # consecutive documents drawn as a path on the map
WINDOW = 12  # documents per window of "Read the order"
WINDOWS = 4
EXCERPT = 150  # characters of a document shown in the order windows
PAIR_EXCERPT = 400  # characters of each side of a dedup pair
PAIRS = 6  # dedup pairs shown above and below the threshold
MAX_LABELS = 12  # labels in the transition heatmap (the rest are "other")
MAX_REASONS = 20  # reject reasons listed
CONTEXT_SAMPLE = 50_000  # contexts measured for the per-context plots
CHUNK = 65_536  # rows of the embeddings read at once


class ReportError(ContextsortError):
    """The directory is not a contextsort run (no manifest.json) or the output cannot be written."""


class ReportUnavailable(ReportError, DependencyMissing):
    """matplotlib is missing: the run itself is fine, only the report cannot be drawn."""


def write_report(run_dir: str | Path, out: str | Path | None = None, seed: int = 0) -> Path:
    """Write the HTML report of `run_dir` to `out` (default RUN_DIR/report.html); return its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise ReportError(f"{run_dir}: not a contextsort run (no manifest.json)")
    matplotlib = load_matplotlib()
    run = RunView(run_dir, json.loads((run_dir / "manifest.json").read_text()), seed)
    sections = [
        ("summary", "Summary", summary_section),
        ("order", "The order", order_section),
        ("map", "A map", map_section),
        ("read", "Read the order", read_section),
        ("dedup", "Dedup", dedup_section),
        ("contexts", "Contexts", contexts_section),
        ("probe", "Probe", probe_section),
    ]
    parts = []
    with matplotlib.rc_context(STYLE):  # the report's style, without changing the caller's rcParams
        for anchor, title, build in sections:
            body = build(run)
            if body is not None:
                parts.append((anchor, title, body))
    page = render_page(run, parts)
    path = Path(out) if out is not None else run_dir / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        raise ReportError(f"{path}: cannot write the report: {e}") from None
    return path


STYLE = {
    "figure.dpi": 100, "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25, "svg.hashsalt": "contextsort",
    "axes.titley": 1.0,  # a fixed title position: placing it automatically measured every tick label
}


def load_matplotlib():
    """matplotlib (its object-oriented API and the Agg canvas; pyplot is never imported), or ReportUnavailable."""
    try:
        import matplotlib
    except ImportError:
        raise ReportUnavailable(
            "the HTML report needs matplotlib: pip install 'contextsort[report]' "
            "(then: contextsort report RUN_DIR)"
        ) from None
    return matplotlib


def new_figure(size: tuple[float, float], margins: tuple[float, float, float, float], ncols: int = 1, gap: float = 0.0):
    """A figure of `size` inches with `ncols` axes side by side; returns (figure, axes or the one axes).

    margins (left, bottom, right, top) and the gap between axes are in inches, fixed: a layout
    engine (constrained layout) measured every label's extent and took half of the drawing time.
    """
    from matplotlib.figure import Figure

    w, h = size
    left, bottom, right, top = margins
    fig = Figure(figsize=size)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    width = (w - left - right - gap * (ncols - 1)) / ncols
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, wspace=gap / width)
    return fig, (axes[0] if ncols == 1 else axes)


def log_y(ax) -> None:
    """A log y axis labelled 1, 10, 100... in plain text (the default 10^n labels go through the slow mathtext parser)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


# --------------------------------------------------------------------------------------
# the run's artifacts, loaded on first use
# --------------------------------------------------------------------------------------


@dataclass
class RunView:
    """Read access to a run directory; each artifact is loaded once, when first needed."""

    dir: Path
    manifest: dict
    seed: int = 0

    def has(self, *names: str) -> bool:
        return all((self.dir / n).exists() for n in names)

    def load(self, name: str) -> np.ndarray:
        return np.load(self.dir / name, mmap_mode="r")

    @cached_property
    def store(self) -> DocStore | None:
        return DocStore(self.dir / "store") if self.has("store/text.idx.npy", "store/label_names.json") else None

    @cached_property
    def emb(self) -> RowFile | None:
        """The embeddings, rows read on demand (`RowFile.take`): read through a memory map, every
        page the cosines below touch would stay in the RSS (1 GB at 1M documents)."""
        return RowFile(self.dir / "embeddings.npy") if self.has("embeddings.npy") else None

    @cached_property
    def valid(self) -> np.ndarray | None:
        if self.has("embed_valid.npy"):
            return np.load(self.dir / "embed_valid.npy")
        return None if self.emb is None else np.ones(self.emb.shape[0], dtype=bool)

    @cached_property
    def order(self) -> np.ndarray | None:
        return np.load(self.dir / "order.npy").astype(np.int64) if self.has("order.npy") else None

    @cached_property
    def dup_of(self) -> np.ndarray | None:
        return np.load(self.dir / "dup_of.npy").astype(np.int64) if self.has("dup_of.npy") else None

    @property
    def id_field(self) -> str:
        return ((self.manifest.get("config") or {}).get("input") or {}).get("id_field") or "id"

    @property
    def threshold(self) -> float | None:
        st = (self.manifest.get("stages") or {}).get("dedup") or {}
        cfg = ((self.manifest.get("config") or {}).get("dedup") or {}).get("threshold")
        return st.get("threshold", cfg)

    @property
    def labelled(self) -> bool:
        return self.store is not None and self.store.label_codes is not None

    def doc_id(self, i: int) -> str:
        rec = self.store.record(int(i))
        return str(rec.get(self.id_field, int(i)))

    def excerpt(self, i: int, chars: int) -> str:
        text = " ".join(self.store.text(int(i))[: chars * 2].split())
        return text[:chars] + ("…" if len(text) > chars else "")

    def cosines(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity of the document pairs (a[i], b[i]) (embeddings are unit norm)."""
        out = np.empty(len(a), dtype=np.float64)
        for s in range(0, len(a), CHUNK):
            m = len(a[s:s + CHUNK])
            rows = np.asarray(self.emb.take(np.concatenate([a[s:s + CHUNK], b[s:s + CHUNK]])), dtype=np.float32)
            out[s:s + CHUNK] = np.einsum("ij,ij->i", rows[:m], rows[m:])
        return out

    def along(self, order: np.ndarray) -> np.ndarray:
        """Cosine of each consecutive pair along `order` (the metrics stage's figures, read the same way)."""
        return adjacent_similarities_along(self.emb, order, CHUNK)

    @cached_property
    def measured_steps(self) -> dict | None:
        """The metrics stage's per-step arrays (`STEPS_FILE`) when they were measured on this
        very order with this seed (else None: recomputed from the artifacts)."""
        if self.order is None or not self.has(STEPS_FILE):
            return None
        try:
            with np.load(self.dir / STEPS_FILE) as z:
                if str(z["order_digest"]) != order_digest(self.order) or int(z["seed"]) != self.seed:
                    return None
                return {k: z[k] for k in ("adjacent", "adjacent_random", "steps", "steps_random")}
        except (OSError, KeyError, ValueError):  # unreadable, or written by another version
            return None

    @cached_property
    def adjacent(self) -> np.ndarray | None:
        """Cosine of consecutive documents along the order."""
        if self.measured_steps is not None:
            return self.measured_steps["adjacent"]
        return None if self.emb is None or self.order is None else self.along(self.order)

    @cached_property
    def random_order(self) -> np.ndarray | None:
        return None if self.order is None else np.random.default_rng(self.seed).permutation(self.order)

    @cached_property
    def random_adjacent(self) -> np.ndarray | None:
        """The same measure for a random order of the same documents (the Standard baseline)."""
        if self.measured_steps is not None:
            return self.measured_steps["adjacent_random"]
        return None if self.adjacent is None else self.along(self.random_order)

    @cached_property
    def graph(self) -> tuple[Graph, np.ndarray] | None:
        """The traversal graph of the kept documents and the order in its node numbering."""
        if self.order is None or self.dup_of is None or not self.has("knn_ids.npy", "knn_sims.npy"):
            return None
        keep = (self.dup_of < 0) & (self.valid if self.valid is not None else True)
        ids, sims = restrict_knn(self.load("knn_ids.npy"), self.load("knn_sims.npy"), self.dup_of, keep)
        node = np.full(len(keep), -1, dtype=np.int64)
        node[keep] = np.arange(int(keep.sum()))
        local = node[self.order]
        if (local < 0).any():  # the order holds documents that dedup removed: artifacts of different runs
            return None
        return graph_from_knn(ids, sims), local

    @cached_property
    def steps(self) -> np.ndarray | None:
        """Graph weight of each step of the order (0 = a jump)."""
        if self.measured_steps is not None:
            return self.measured_steps["steps"]
        return None if self.graph is None else path_edge_weights(*self.graph)

    @cached_property
    def random_path_weight(self) -> float | None:
        """path_weight of the random order (`random_order`) on the same graph."""
        if self.measured_steps is not None:
            return float(self.measured_steps["steps_random"].sum())
        if self.graph is None:
            return None
        graph, local = self.graph
        return float(path_edge_weights(graph, np.random.default_rng(self.seed).permutation(local)).sum())

    def dense_knn(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The dense kNN lists that dedup used."""
        if self.has("dedup_ids.npy", "dedup_sims.npy"):
            return self.load("dedup_ids.npy"), self.load("dedup_sims.npy")
        sim = ((self.manifest.get("stages") or {}).get("neighbors") or {}).get("similarity", "dense")
        if sim == "dense" and self.has("knn_ids.npy", "knn_sims.npy"):
            return self.load("knn_ids.npy"), self.load("knn_sims.npy")
        return None


# --------------------------------------------------------------------------------------
# HTML helpers
# --------------------------------------------------------------------------------------


def esc(x: object) -> str:
    """Any value as escaped HTML text."""
    return html.escape(str(x), quote=True)


def fmt(x: object) -> str:
    """Numbers the way a person reads them: thousands separated, 4 significant decimals."""
    if isinstance(x, bool) or x is None:
        return esc(x)
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if x != x or x in (float("inf"), float("-inf")):
            return esc(x)
        if x == int(x) and abs(x) >= 1000:
            return f"{int(x):,}"
        return f"{x:,.4g}" if abs(x) >= 1 else f"{x:.4f}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    return esc(x)


def table(rows: list[list[str]], head: list[str] | None = None, cls: str = "", row_cls: list[str] | None = None) -> str:
    """An HTML table; cells are already-escaped HTML."""
    h = "<tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>" if head else ""
    row_cls = row_cls or [""] * len(rows)
    body = "".join(f'<tr class="{rc}">' + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r, rc in zip(rows, row_cls))
    return f'<table class="{cls}"><thead>{h}</thead><tbody>{body}</tbody></table>'


def kv_table(items: list[tuple[str, object]]) -> str:
    """A two-column table of names and formatted values."""
    return table([[esc(k), fmt(v)] for k, v in items], cls="kv")


PNG_COMPRESS_LEVEL = 1  # zlib level: half the encoding time of the default 6, for about 10% more bytes


def figure(fig, alt: str) -> str:
    """The figure as an embedded PNG, drawn on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf, metadata={"Software": None}, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def note(text: str) -> str:
    """A grey explanatory paragraph; `text` is HTML."""
    return f'<p class="note">{text}</p>'


BAR_PX = 300  # width of the longest bar of an HTML bar chart


def bar_chart(title: str, rows: list[tuple[str, float, str]], colours: list[str] | None = None) -> str:
    """Horizontal bars (name, value, value as text) as an HTML table: no plot to draw for a few numbers."""
    top = max((v for _, v, _ in rows), default=0.0) or 1.0
    colours = colours or ["#4c72b0"] * len(rows)
    body = [[esc(name), f'<span class="hbar" style="width:{max(0.0, v) / top * BAR_PX:.0f}px;background:{c}"></span>{esc(text)}']
            for (name, v, text), c in zip(rows, colours)]
    return f"<h3>{esc(title)}</h3>" + table(body, cls="bars")


def heatmap(m: np.ndarray, ticks: list[str], caption: str) -> str:
    """A matrix of shares in [0, 1] as an HTML table, each cell shaded white to dark blue (rows: `ticks`, columns too)."""
    light, dark = np.array([247, 251, 255]), np.array([8, 48, 107])
    head = "<tr><th>this ↓ · next →</th>" + "".join(f"<th>{esc(t)}</th>" for t in ticks) + "</tr>"
    rows = []
    for t, row in zip(ticks, m):
        cells = []
        for v in row:
            r, g, b = (light + (dark - light) * min(1.0, max(0.0, float(v)))).round().astype(int)
            cells.append(f'<td style="background:rgb({r},{g},{b});color:{"#fff" if v > 0.55 else "#222"}">{v:.2f}</td>')
        rows.append(f"<tr><th>{esc(t)}</th>{''.join(cells)}</tr>")
    return (f'<table class="heat" aria-label="{esc(caption)}"><caption>{esc(caption)}: label of a document (rows), '
            f"label of the next document (columns)</caption><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")


def flatten(d: object, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if isinstance(d, dict):
        out: dict[str, object] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


# --------------------------------------------------------------------------------------
# 1. summary
# --------------------------------------------------------------------------------------


def reject_reasons(run: RunView) -> list[tuple[str, int, str]]:
    """(reason with its particulars blanked, count, one example source:line), most frequent first."""
    found: dict[str, list] = {}
    if run.has("rejects.jsonl"):
        with open(run.dir / "rejects.jsonl", encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                key = normalise_reason(str(r.get("reason", "")))
                where = str(r.get("source", "")) + (f":{r['line']}" if r.get("line") else "")
                hit = found.setdefault(key, [0, where])
                hit[0] += 1
    if run.valid is not None and run.dup_of is not None:
        bad = int((~run.valid & (run.dup_of < 0)).sum())
        if bad:
            found["embedding is zero or NaN"] = [bad, "embeddings.npy"]
    return sorted(((k, v[0], v[1]) for k, v in found.items()), key=lambda t: (-t[1], t[0]))


def normalise_reason(reason: str) -> str:
    """Group reasons that differ only in particulars: quoted values, numbers, (where seen)."""
    reason = re.sub(r"\([^)]*\)", "", reason)
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason)
    reason = re.sub(r"(?<![\w-])\d+(?![\w-])", "N", reason)
    return " ".join(reason.split())


def config_changes(config: dict) -> list[tuple[str, object, object]]:
    """(option, value, default) for every option that differs from the defaults."""
    from .config import Config

    default = flatten(Config().to_dict())
    given = flatten(config)
    return [(k, given[k], default.get(k, "(none)")) for k in given if default.get(k, object()) != given[k]]


def counts_of(run: RunView) -> dict:
    """Counts from the manifest, or from the stages for a run that has not finished."""
    c = dict(run.manifest.get("counts") or {})
    st = run.manifest.get("stages") or {}
    if "records_read" not in c and "ingest" in st:
        c["records_read"] = st["ingest"].get("records_read")
        c["rejected"] = st["ingest"].get("rejected")
        if run.dup_of is not None:
            c["duplicates"] = int((run.dup_of >= 0).sum())
        if run.order is not None:
            c["kept"] = int(len(np.unique(run.order)))
    return c


def summary_section(run: RunView) -> str:
    m = run.manifest
    c = counts_of(run)
    names = [("records_read", "read"), ("kept", "kept"), ("duplicates", "duplicates"), ("rejected", "rejected"),
             ("coverage", "coverage (kept / read)"), ("output_rows", "rows written")]
    cards = "".join(
        f'<div class="card"><div class="num">{fmt(c[k])}</div><div>{esc(label)}</div></div>'
        for k, label in names if c.get(k) is not None
    )
    adds = c.get("adds_up")
    parts = [f'<div class="cards">{cards}</div>']
    if adds is not None:
        parts.append(note("kept + duplicates + rejected = read: " + ("<b>adds up</b>" if adds else '<b class="bad">DOES NOT ADD UP</b>')))
    else:
        parts.append(note("the run has not finished: counts come from the stages done so far"))
    reasons = reject_reasons(run)
    if reasons:
        rows = [[esc(r), fmt(n), f"<code>{esc(ex)}</code>"] for r, n, ex in reasons[:MAX_REASONS]]
        more = len(reasons) - MAX_REASONS
        parts.append("<h3>Rejected, by reason</h3>" + table(rows, ["reason", "records", "first example"])
                     + (note(f"and {more} more reasons (rejects.jsonl)") if more > 0 else ""))
    metrics = m.get("metrics") or {}
    head = []
    a = metrics.get("adjacent_similarity")
    if a:
        head.append(("adjacent_similarity (ordered / random)", f"{a['ordered']:.4f} / {a['random']:.4f}"))
    pw = metrics.get("path_weight")
    if pw:
        head.append(("path_weight / path_bound", f"{pw['sum']:,.1f} / {pw['bound']:,.1f} = {pw['ratio']:.3f}"))
    la = metrics.get("label_agreement")
    if la:
        head.append(("label_agreement (ordered / random, lift)", f"{la['ordered']:.4f} / {la['random']:.4f}, {la['lift']:.2f}×"))
    if head:
        parts.append("<h3>Measures</h3>" + kv_table(head))
    records = {k: v for k, v in (m.get("stages") or {}).items() if isinstance(v, dict) and v.get("seconds") is not None}
    cols = []
    if records:
        total = m.get("seconds_total")

        def busy(v: dict) -> str:  # cores kept busy (this process's CPU seconds over wall seconds)
            cpu, secs = v.get("cpu_seconds"), v["seconds"]
            return f", {cpu / secs:.1f} cores" if cpu is not None and secs > 0.05 else ""

        cols.append(bar_chart("stage times" + (f" (run total {total:.1f}s)" if total else ""),
                              [(k, v["seconds"], f"{v['seconds']:.2f}s{busy(v)}") for k, v in records.items()]))
    changes = config_changes(m.get("config") or {})
    side = ("<h3>Config that differs from the defaults</h3>"
            + (table([[f"<code>{esc(k)}</code>", fmt(v), fmt(d)] for k, v, d in changes], ["option", "value", "default"])
               if changes else note("every option at its default")))
    versions = m.get("versions") or {}
    if versions:
        side += "<h3>Versions</h3>" + kv_table(list(versions.items()))
    inputs = m.get("inputs") or []
    if inputs:
        side += "<h3>Inputs</h3>" + "".join(f"<div><code>{esc(p)}</code></div>" for p in inputs[:10])
        if len(inputs) > 10:
            side += note(f"and {len(inputs) - 10} more")
    cols.append(side)
    parts.append('<div class="grid">' + "".join(f"<div>{x}</div>" for x in cols) + "</div>")
    return "".join(parts)


# --------------------------------------------------------------------------------------
# 2. the order
# --------------------------------------------------------------------------------------


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of each run of `window` consecutive values (len(x) - window + 1 of them)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    return (c[window:] - c[:-window]) / window


def order_section(run: RunView) -> str | None:
    s = run.adjacent
    if s is None or len(s) == 0:
        return None
    rng = np.random.default_rng(run.seed)
    r = run.random_adjacent
    n = len(s)
    steps = run.steps
    distinct = len(np.unique(run.order))
    rows = (f"{len(run.order):,} documents in the order" if distinct == len(run.order)
            else f"{len(run.order):,} rows in the order for {distinct:,} documents (this order repeats documents)")
    parts = [note(
        f"{rows}. Mean cosine similarity of consecutive documents: "
        f"<b>{s.mean():.4f}</b> (a random order of the same documents: {r.mean():.4f})."
        + (f" {int((steps == 0).sum()):,} steps are jumps (no edge of the kNN graph)." if steps is not None else "")
    )]
    # rolling mean along the order, jumps as ticks
    fig, ax = new_figure((10.5, 3.0), (0.65, 0.85, 0.15, 0.3))
    window = max(1, n // 100)
    roll = rolling_mean(s, window)
    x = np.arange(len(roll)) + window / 2
    stride = max(1, len(roll) // 3000)
    if n <= 20_000:
        ax.scatter(np.arange(n), s, s=2, color="#b0b0b0", alpha=0.5, linewidths=0, label="each pair", rasterized=True)
    ax.plot(x[::stride], roll[::stride], color="#1f5fa8", lw=1.4, label=f"rolling mean ({window:,} pairs)")
    ax.axhline(r.mean(), color="#c44e52", ls="--", lw=1, label=f"random order mean {r.mean():.3f}")
    if steps is not None:
        jumps = np.flatnonzero(steps == 0)
        if len(jumps) > 4000:
            jumps = np.sort(rng.choice(jumps, 4000, replace=False))
        lo = min(float(s.min()), float(r.mean())) - 0.05
        ax.vlines(jumps, lo, lo + 0.04, color="#dd8452", lw=0.6, label="jump (no graph edge)")
    ax.set_xlabel("position in the order")
    ax.set_ylabel("cosine to the previous document")
    ax.set_title("similarity of consecutive documents along the order")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), fontsize=7.5, ncol=4, frameon=False, markerscale=4)
    parts.append(figure(fig, "similarity of consecutive documents along the order, with jumps marked"))

    cols = []
    fig, ax = new_figure((5.2, 3.0), (0.75, 0.45, 0.15, 0.3))
    k = min(n, PLOT_SAMPLE)
    pick = rng.choice(n, k, replace=False) if n > k else slice(None)
    bins = np.linspace(min(s.min(), r.min()), max(s.max(), r.max()) + 1e-9, 60)
    ax.hist(r[pick], bins=bins, alpha=0.6, color="#c44e52", label="random pairs", histtype="stepfilled")
    ax.hist(s[pick], bins=bins, alpha=0.6, color="#1f5fa8", label="consecutive in the order", histtype="stepfilled")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("pairs")
    ax.set_title("consecutive pairs vs random pairs")
    ax.legend(fontsize=7)
    cols.append(figure(fig, "histogram of consecutive-pair similarity beside random pairs"))

    if steps is not None:
        pw = float(steps.sum())
        measured = (run.manifest.get("metrics") or {}).get("path_weight") or {}
        if measured.get("bound") and abs(measured.get("sum", -1.0) - pw) <= 1e-6 * max(1.0, abs(pw)):
            bound = float(measured["bound"])  # the metrics stage's, on this same graph (costly at 1M)
        else:
            bound = path_bound(run.graph[0]) if run.graph is not None else 0.0
        rand = run.random_path_weight
        title = f"path_weight: {pw / bound:.3f} of the bound" if bound else "path_weight"
        cols.append(bar_chart(title, [("random order", rand, f"{rand:,.1f}"), ("this order", pw, f"{pw:,.1f}"),
                                      ("path_bound", bound, f"{bound:,.1f}")], ["#c44e52", "#1f5fa8", "#8c8c8c"])
                    + note("sum of graph similarities along the path (jumps count 0)"))
    parts.append('<div class="grid">' + "".join(f"<div>{x}</div>" for x in cols) + "</div>")

    if run.labelled:
        parts.append(label_part(run))
    return "".join(parts)


def label_part(run: RunView) -> str:
    codes = np.asarray(run.store.label_codes, dtype=np.int64)[run.order]
    names = run.store.label_names
    la = label_agreement(codes, np.arange(len(codes)), seed=run.seed)
    freq = np.bincount(codes[codes >= 0], minlength=len(names))
    top = np.argsort(-freq, kind="stable")[:MAX_LABELS]
    top = top[freq[top] > 0]
    remap = np.full(len(names) + 1, len(top), dtype=np.int64)  # last slot: "other" (and no label)
    remap[top] = np.arange(len(top))
    c = remap[np.where(codes >= 0, codes, len(names))]
    k = len(top) + int((c == len(top)).any())
    m = np.bincount(c[:-1] * k + c[1:], minlength=k * k).reshape(k, k).astype(np.float64)
    m /= np.maximum(m.sum(axis=1, keepdims=True), 1)
    tick = [str(names[t]) for t in top] + (["other"] if k > len(top) else [])
    text = ("<h3>Labels</h3>" + kv_table([
        ("label_agreement, this order", la["ordered"]), ("label_agreement, random order", la["random"]),
        ("lift", la["lift"]), ("labels", len(names))])
        + note("label_agreement: the share of consecutive documents with the same label. "
               "A strong diagonal in the heatmap means the order keeps topics together."))
    return '<div class="grid"><div>' + text + "</div><div>" + heatmap(m, [t[:18] for t in tick], "label transition heatmap") + "</div></div>"


# --------------------------------------------------------------------------------------
# 3. a map
# --------------------------------------------------------------------------------------


def map_section(run: RunView) -> str | None:
    if run.emb is None or run.order is None or len(run.order) < 3:
        return None
    rng = np.random.default_rng(run.seed)
    n = len(run.order)
    stretch_len = min(MAP_STRETCH, n)
    start = (n - stretch_len) // 2
    stretch = np.arange(start, start + stretch_len)
    others = np.setdiff1d(rng.choice(n, min(n, MAP_SAMPLE), replace=False), stretch)
    pos = np.concatenate([others, stretch])
    x = np.asarray(run.emb.take(run.order[pos]), dtype=np.float32)
    xy, method = project(x, run.seed)
    panels = 2 if run.labelled else 1
    fig, axes = new_figure((5.6 * panels, 4.9), (0.15, 0.15, 0.15 if run.labelled else 0.75, 0.55), ncols=panels, gap=0.85)
    axes = list(axes) if panels > 1 else [axes]
    ax = axes[0]
    sc = ax.scatter(xy[: len(others), 0], xy[: len(others), 1], c=pos[: len(others)], cmap="viridis", s=6,
                    alpha=0.75, linewidths=0, rasterized=True)
    p = xy[len(others):]
    ax.plot(p[:, 0], p[:, 1], "-", color="#d62728", lw=1.1, alpha=0.9)
    ax.scatter(p[:, 0], p[:, 1], color="#d62728", s=14, zorder=3, label=f"positions {start:,}–{start + stretch_len - 1:,}")
    ax.annotate("start", p[0], xytext=(6, 6), textcoords="offset points", fontsize=8, color="#d62728")
    ax.annotate("end", p[-1], xytext=(6, -10), textcoords="offset points", fontsize=8, color="#d62728")
    fig.colorbar(sc, ax=ax, label="position in the order", fraction=0.05, pad=0.02)
    ax.set_title("coloured by position in the order")
    ax.legend(loc="lower right", fontsize=7)
    if run.labelled:
        ax = axes[1]
        codes = np.asarray(run.store.label_codes, dtype=np.int64)[run.order[pos]]
        names = run.store.label_names
        freq = np.bincount(codes[codes >= 0], minlength=len(names))
        top = [int(t) for t in np.argsort(-freq, kind="stable")[:10] if freq[t] > 0]
        cmap = colormap("tab10")
        rest = ~np.isin(codes, top)
        if rest.any():
            ax.scatter(xy[rest, 0], xy[rest, 1], s=6, color="#c8c8c8", linewidths=0, label="other", rasterized=True)
        for k, t in enumerate(top):
            hit = codes == t
            ax.scatter(xy[hit, 0], xy[hit, 1], s=6, color=cmap(k), linewidths=0, label=str(names[t])[:24], rasterized=True)
        ax.set_title("coloured by label")
        ax.legend(loc="best", fontsize=7, markerscale=2.5)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.suptitle(f"{method} of {len(pos):,} documents", fontsize=10)
    return note("Nearby points are similar documents (a 2-D projection of the embeddings). Where colours form "
                "patches, the order visits a region and stays there; the red line is a stretch of consecutive "
                "documents.") + figure(fig, "2-D projection of a sample of the embeddings, coloured by position in the order")


def project(x: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D projection: UMAP when installed, else PCA (SVD of the centred sample)."""
    try:
        import umap
    except ImportError:
        umap = None
    if umap is not None and len(x) > 20:
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), "UMAP"
    from threadpoolctl import threadpool_limits

    xc = (x - x.mean(axis=0)).astype(np.float64)
    with threadpool_limits(1):  # a d x d eigenproblem: BLAS threads only add contention
        _, vecs = np.linalg.eigh(xc.T @ xc)
    return xc @ vecs[:, ::-1][:, :2], "PCA"


# --------------------------------------------------------------------------------------
# 4. read the order
# --------------------------------------------------------------------------------------


def window_starts(n: int, steps: np.ndarray | None = None) -> list[tuple[int, str]]:
    """(start, why) of the windows: spread evenly over the order, plus one around the jump
    nearest the middle (to show where the walk left a region); windows never overlap."""
    if n <= WINDOW:
        return [(0, "")]
    found = {int(f * (n - WINDOW)): "" for f in np.linspace(0, 1, WINDOWS)[:-1]}
    if steps is not None and (steps == 0).any():
        jumps = np.flatnonzero(steps == 0) + 1  # positions that start after a jump
        j = int(jumps[np.argmin(np.abs(jumps - n // 2))])
        found[min(max(0, j - WINDOW // 2), n - WINDOW)] = " (around a jump)"
    out: list[tuple[int, str]] = []
    for start in sorted(found):
        if out and start < out[-1][0] + WINDOW:
            if found[start]:  # the jump window replaces the plain one it overlaps
                out[-1] = (start, found[start])
            continue
        out.append((start, found[start]))
    return out


def read_section(run: RunView) -> str | None:
    if run.order is None or run.store is None:
        return None
    n = len(run.order)
    s, steps = run.adjacent, run.steps
    parts = [note("Consecutive documents as they are written. <i>cosine</i>: similarity to the previous document; "
                  "a <span class=\"jump\">jump</span> row starts where the walk found no unvisited neighbour "
                  "and jumped to a new region.")]
    for a, why in window_starts(n, steps):
        rows, kinds = [], []
        for p in range(a, min(n, a + WINDOW)):
            i = int(run.order[p])
            if p == 0 or s is None:
                sim = "—"
            else:
                v = float(s[p - 1])
                sim = f'<span class="bar" style="width:{max(0.0, v) * 60:.0f}px"></span>{v:.3f}'
            jump = steps is not None and p > 0 and steps[p - 1] == 0
            label = esc(run.store.label(i)) if run.labelled else ""
            row = [fmt(p), f"<code>{esc(run.doc_id(i))}</code>"] + ([label] if run.labelled else [])
            row += [sim + (' <span class="jump">jump</span>' if jump else ""), esc(run.excerpt(i, EXCERPT))]
            rows.append(row)
            kinds.append("jumprow" if jump else "")
        head = ["position", "id"] + (["label"] if run.labelled else []) + ["cosine", f"first {EXCERPT} characters"]
        parts.append(f"<h3>positions {a:,}–{min(n, a + WINDOW) - 1:,}{why}</h3>" + table(rows, head, cls="docs", row_cls=kinds))
    return "".join(parts)


# --------------------------------------------------------------------------------------
# 5. dedup
# --------------------------------------------------------------------------------------


def dedup_section(run: RunView) -> str | None:
    dup_of = run.dup_of
    if dup_of is None or run.store is None or run.emb is None:
        return None
    thr = run.threshold
    removed = np.flatnonzero(dup_of >= 0)
    rep = dup_of[removed]
    exact = run.store.text_hash[removed] == run.store.text_hash[rep]
    cos = run.cosines(removed, rep)
    thr_txt = f"{thr:g}" if thr is not None and thr <= 1 else "off (exact duplicates only)"
    items = [("threshold (dense cosine)", thr_txt), ("documents removed as duplicates", len(removed)),
             ("of which exact (same normalised text)", int(exact.sum())), ("near-duplicates", int((~exact).sum()))]
    if thr is not None and thr <= 1:
        chained = int(((cos < thr) & ~exact).sum())
        if chained:
            items.append(("near-duplicates below the threshold to their kept document (chained through another)", chained))
    parts = []
    cols = [kv_table(items)]
    if len(removed):
        sizes = np.bincount(np.bincount(rep)[np.unique(rep)] + 1)
        rows = [[fmt(sz), fmt(int(cnt))] for sz, cnt in enumerate(sizes) if cnt]
        cols[0] += "<h3>Duplicate groups</h3>" + table(rows, ["group size (kept + removed)", "groups"])
    knn = run.dense_knn()
    below = None
    if knn is not None:
        ids, sims = np.asarray(knn[0]), np.asarray(knn[1])
        keep = dup_of < 0
        if run.valid is not None:
            keep &= run.valid
        best = np.where(ids >= 0, sims, -np.inf).max(axis=1) if ids.shape[1] else np.full(len(ids), -np.inf)
        top = best[np.isfinite(best)]
        if len(top):
            rng = np.random.default_rng(run.seed)
            if len(top) > PLOT_SAMPLE:
                top = rng.choice(top, PLOT_SAMPLE, replace=False)
            fig, ax = new_figure((5.2, 2.8), (0.75, 0.45, 0.15, 0.3))
            ax.hist(top, bins=60, color="#4c72b0", histtype="stepfilled")
            if thr is not None and thr <= 1:
                ax.axvline(thr, color="#c44e52", ls="--", lw=1.2, label=f"threshold {thr:g}")
                ax.legend(fontsize=7)
            log_y(ax)
            ax.set_xlabel("cosine to the nearest neighbour")
            ax.set_ylabel("documents (log)")
            ax.set_title("each document's nearest neighbour (dense kNN)")
            cols.append(figure(fig, "histogram of nearest-neighbour similarity with the dedup threshold"))
        below = pairs_below(ids, sims, keep, thr if thr is not None and thr <= 1 else 1.0)
    parts.append('<div class="grid">' + "".join(f"<div>{x}</div>" for x in cols) + "</div>")
    near = np.flatnonzero(~exact)
    if len(near):
        pick = near[np.argsort(cos[near], kind="stable")[:PAIRS]]
        parts.append("<h3>Removed: the near-duplicates least similar to the document they duplicate</h3>"
                     + note("If these are distinct articles, the threshold is too low.")
                     + pair_table(run, [(int(removed[q]), int(rep[q]), float(cos[q])) for q in pick], "removed", "kept"))
    if below:
        parts.append("<h3>Kept: the most similar pairs below the threshold</h3>"
                     + note("If these are rewrites of one text, the threshold is too high.")
                     + pair_table(run, below, "kept", "kept"))
    return "".join(parts)


def pairs_below(ids: np.ndarray, sims: np.ndarray, keep: np.ndarray, thr: float) -> list[tuple[int, int, float]]:
    """The most similar kNN pairs of kept documents under the threshold, each pair once."""
    src = np.repeat(np.arange(len(ids)), ids.shape[1])
    dst = ids.reshape(-1)
    val = sims.reshape(-1).astype(np.float64)
    ok = (dst >= 0) & (val < thr) & (src != dst)
    src, dst, val = src[ok], dst[ok], val[ok]
    ok = keep[src] & keep[dst]
    src, dst, val = src[ok], dst[ok], val[ok]
    if len(val) > 8 * PAIRS:
        part = np.argpartition(-val, 8 * PAIRS)[: 8 * PAIRS]
        src, dst, val = src[part], dst[part], val[part]
    out, seen = [], set()
    for q in np.argsort(-val, kind="stable"):
        a, b = sorted((int(src[q]), int(dst[q])))
        if (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b, float(val[q])))
        if len(out) == PAIRS:
            break
    return out


def pair_table(run: RunView, pairs: list[tuple[int, int, float]], left: str, right: str) -> str:
    rows = []
    for a, b, sim in pairs:
        cell = []
        for i, what in ((a, left), (b, right)):
            label = f" · {esc(run.store.label(i))}" if run.labelled else ""
            cell.append(f'<div class="who">{what}: <code>{esc(run.doc_id(i))}</code>{label}</div>{esc(run.excerpt(i, PAIR_EXCERPT))}')
        rows.append([f"{sim:.4f}", *cell])
    return table(rows, ["cosine", left, right], cls="pairs")


# --------------------------------------------------------------------------------------
# 6. contexts
# --------------------------------------------------------------------------------------


def context_index(run: RunView, info: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(real tokens per context, piece pointer [C+1], order position of each piece), in written order."""
    files = info.get("files") or {}
    for fmt_ in ("megatron", "numpy"):
        npz = [run.dir / "packed" / f for f in files.get(fmt_, []) if f.endswith(".npz")]
        if npz and all(p.exists() for p in npz):
            lengths, counts, positions = [], [], []
            for p in sorted(npz):
                with np.load(p) as z:
                    lengths.append(z["length"])
                    counts.append(np.diff(z["doc_offsets_ptr"]))
                    positions.append(z["doc_positions"])
            return join_index(lengths, counts, positions)
    pq = [run.dir / "packed" / f for f in files.get("parquet", [])]
    if pq and all(p.exists() for p in pq):
        import pyarrow.parquet as papq

        lengths, counts, positions = [], [], []
        for p in sorted(pq):
            t = papq.read_table(p, columns=["length", "doc_positions"])
            col = t.column("doc_positions").combine_chunks()
            lengths.append(t.column("length").to_numpy())
            counts.append(np.diff(col.offsets.to_numpy()))
            positions.append(col.values.to_numpy())
        return join_index(lengths, counts, positions)
    return None


def join_index(lengths: list, counts: list, positions: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the per-shard context indexes into one (lengths, pointer, positions)."""
    counts = np.concatenate(counts).astype(np.int64)
    ptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return np.concatenate(lengths).astype(np.int64), ptr, np.concatenate(positions).astype(np.int64)


def per_context_mean(values: np.ndarray, ptr: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Mean of values[p] over the links p -> p+1 inside each context (NaN for a single-document context)."""
    ctx = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    inside = (ctx[1:] == ctx[:-1]) & (positions[1:] == positions[:-1] + 1)
    where = ctx[:-1][inside]
    total = np.bincount(where, weights=values[positions[:-1][inside]], minlength=len(ptr) - 1)
    count = np.bincount(where, minlength=len(ptr) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def contexts_section(run: RunView) -> str | None:
    if not run.has("packed/pack.json"):
        return None
    info = json.loads((run.dir / "packed" / "pack.json").read_text())
    c, m = info.get("counts", {}), info.get("metrics", {})
    L = int(info["context_length"])
    items = [("context length", L), ("mode", info.get("mode")), ("shuffled", info.get("shuffled")),
             ("contexts", c.get("contexts")), ("tokens in contexts", c.get("context_tokens")),
             ("padding tokens", c.get("padding_tokens")), ("waste (padding share)", m.get("waste")),
             ("documents per context (mean)", m.get("documents_per_context")),
             ("documents split across contexts", m.get("documents_split")),
             ("share of documents split", m.get("documents_split_share")),
             ("short documents split (would have fit)", m.get("short_documents_split")),
             ("within-context adjacent similarity", m.get("within_context_adjacent_similarity")),
             ("within-context pairwise similarity", m.get("within_context_pairwise_similarity"))]
    ac = m.get("across_contexts") or {}
    for k, label in (("written", "as written"), ("unshuffled", "before shuffling"), ("random", "random pairs")):
        if k in ac:
            items.append((f"consecutive contexts, {label}", ac[k]))
    items = [(k, v) for k, v in items if v is not None]
    half = (len(items) + 1) // 2
    parts = ['<div class="grid"><div>' + kv_table(items[:half]) + "</div><div>" + kv_table(items[half:])
             + note("Consecutive contexts as written should be no more alike than random pairs: "
                    "training must not see related contexts back to back.") + "</div></div>"]
    idx = context_index(run, info)
    if idx is None:
        return "".join(parts)
    lengths, ptr, positions = idx
    C = len(lengths)
    rng = np.random.default_rng(run.seed)
    sample = np.sort(rng.choice(C, CONTEXT_SAMPLE, replace=False)) if C > CONTEXT_SAMPLE else np.arange(C)
    docs = np.diff(ptr)[sample]
    fig, axes = new_figure((10.5, 2.8), (0.75, 0.45, 0.15, 0.4), ncols=3 if run.adjacent is not None else 2, gap=0.6)
    axes[0].hist(docs, bins=np.arange(docs.max() + 2) - 0.5 if docs.max() < 60 else 60, color="#4c72b0", histtype="stepfilled")
    axes[0].set_xlabel("documents (or pieces) per context")
    axes[0].set_ylabel("contexts")
    axes[1].hist(L - lengths[sample], bins=40, color="#8c8c8c", histtype="stepfilled")
    log_y(axes[1])
    axes[1].set_xlabel(f"padding tokens per context (of {L:,})")
    if run.adjacent is not None:
        real = per_context_mean(run.adjacent, ptr, positions)[sample]
        shuf = per_context_mean(run.random_adjacent, ptr, positions)[sample]
        ok = ~np.isnan(real)
        if ok.any():
            bins = np.linspace(min(real[ok].min(), shuf[ok].min()), 1, 40)
            axes[2].hist(shuf[ok], bins=bins, alpha=0.6, color="#c44e52", label=f"shuffled neighbours, mean {shuf[ok].mean():.3f}", histtype="stepfilled")
            axes[2].hist(real[ok], bins=bins, alpha=0.6, color="#1f5fa8", label=f"this order, mean {real[ok].mean():.3f}", histtype="stepfilled")
            axes[2].legend(fontsize=7)
        axes[2].set_xlabel("mean cosine of neighbours inside a context")
    fig.suptitle(f"{len(sample):,} contexts" + (" (a sample)" if C > len(sample) else ""), fontsize=9)
    split = int((np.bincount(positions) > 1).sum())
    parts.append(note(f"{split:,} documents are split across contexts (read back from the packed index). "
                      "Shuffled neighbours: the same contexts filled from a random order of the same documents."))
    parts.append(figure(fig, "per-context documents, padding and coherence"))
    return "".join(parts)


# --------------------------------------------------------------------------------------
# 7. probe
# --------------------------------------------------------------------------------------


def probe_section(run: RunView) -> str | None:
    if not run.has("probe.json"):
        return None
    probe = json.loads((run.dir / "probe.json").read_text())
    parts = []
    arms = [k for k in ("standard", "ordered") if isinstance(probe.get(k), dict)]
    if arms:
        flat = {a: flatten(probe[a]) for a in arms}
        keys = list(dict.fromkeys(k for a in arms for k in flat[a]))
        rows = [[f"<code>{esc(k)}</code>"] + [fmt(flat[a].get(k, "")) for a in arms] for k in keys]
        parts.append(table(rows, ["measure", *arms]))
    gd = probe.get("gain_difference")
    if isinstance(gd, dict):
        ci = gd.get("ci95")
        parts.append("<h3>Gain difference (ordered − standard)</h3>" + kv_table(
            [("mean", gd.get("mean"))] + ([("95% interval", ci)] if ci is not None else [])
            + [(k, v) for k, v in flatten(gd).items() if k not in ("mean", "ci95")]))
    rest = {k: v for k, v in probe.items() if k not in ("standard", "ordered", "gain_difference")}
    if rest:
        parts.append("<h3>Probe settings</h3>" + kv_table(list(flatten(rest).items())))
    return "".join(parts) or None


# --------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#f6f7f9}
header{background:#1f3b5c;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:20px} header .sub{opacity:.8;font-size:13px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 28px;z-index:1}
nav a{margin-right:16px;color:#1f5fa8;text-decoration:none;font-weight:600}
main{max-width:1180px;margin:0 auto;padding:8px 28px 40px}
section{background:#fff;border:1px solid #e2e4e8;border-radius:6px;padding:10px 20px 16px;margin:16px 0}
h2{font-size:18px;margin:6px 0 10px;color:#1f3b5c} h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;margin:4px 0 8px;font-size:13px}
th,td{border-bottom:1px solid #e6e6e6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
table.kv td:first-child{color:#555} table.kv td:last-child{text-align:right;font-variant-numeric:tabular-nums}
table.docs{width:100%;table-layout:fixed}
table.docs th:nth-child(1){width:64px} table.docs th:nth-child(2){width:190px} table.docs td:nth-child(2){overflow-wrap:anywhere}
table.docs td{font-size:12.5px} table.docs th:last-child{width:54%}
table.pairs{width:100%;table-layout:fixed} table.pairs td{font-size:12.5px} table.pairs th:first-child{width:60px}
tr.jumprow td{background:#fdf3ec}
.who{font-size:11.5px;color:#555;margin-bottom:2px}
.bar{display:inline-block;height:8px;background:#1f5fa8;opacity:.55;margin-right:4px;vertical-align:middle}
table.bars td{border:0;padding:2px 8px 2px 0} .hbar{display:inline-block;height:14px;margin-right:6px;vertical-align:middle}
table.heat td{text-align:center;font-size:12px;min-width:44px} table.heat caption{caption-side:bottom;color:#555;font-size:12px}
.jump{background:#dd8452;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}
.card{background:#f0f4fa;border-radius:6px;padding:8px 14px;min-width:110px}
.card .num{font-size:20px;font-weight:700;color:#1f3b5c}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:18px;align-items:start}
.plot{max-width:100%;height:auto}
.note{color:#555;font-size:13px;margin:4px 0 8px} .bad{color:#c0392b}
code{font-size:12px;background:#f3f3f3;padding:0 3px;border-radius:3px}
"""


def render_page(run: RunView, sections: list[tuple[str, str, str]]) -> str:
    m = run.manifest
    cfg = m.get("config") or {}
    order_name = ((m.get("stages") or {}).get("order") or {}).get("algorithm") or (cfg.get("order") or {}).get("algorithm", "")
    sim = ((m.get("stages") or {}).get("neighbors") or {}).get("similarity") or (cfg.get("similarity") or {}).get("similarity", "")
    embedder = ((m.get("stages") or {}).get("embed") or {}).get("embedder") or (cfg.get("embed") or {}).get("embedder", "")
    sub = f"order <b>{esc(order_name)}</b> · graph <b>{esc(sim)}</b> · embedder <b>{esc(embedder)}</b> · contextsort {esc(m.get('contextsort', ''))}"
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(f'<section id="{a}"><h2>{esc(t)}</h2>{b}</section>' for a, t, b in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>contextsort report: {esc(run.dir.name)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>contextsort report · {esc(run.dir.name)}</h1><div class=\"sub\">{sub}</div></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
