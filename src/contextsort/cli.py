"""Command line: `contextsort run`, `contextsort demo`, `contextsort pack`."""

from __future__ import annotations

import argparse
import sys
import time

from .config import Config


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    d = Config()
    g = p.add_argument_group("input")
    g.add_argument("--text-field", default=d.input.text_field, help="field holding the document text (default: %(default)s)")
    g.add_argument("--id-field", default=d.input.id_field, help="field holding the document id; missing ids get their position (default: %(default)s)")
    g.add_argument("--label-field", default=d.input.label_field, help="optional field with a label, used for label_agreement (default: %(default)s)")
    g.add_argument("--strict", action="store_true", help="stop at the first bad record (exit 2) instead of rejecting it")
    g = p.add_argument_group("pipeline")
    g.add_argument("--embedder", default=d.embed.embedder, help="embedder spec: wordllama, tfidf[:DIM], sentence-transformers:MODEL, contriever[:MODEL], model2vec:PATH (default: %(default)s)")
    g.add_argument("--device", default=d.embed.device, choices=["auto", "cpu", "cuda"], help="where neural embedders run; fp16 on GPU (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.embed.batch_size, help="documents per embedding batch (default: the embedder's: 512 wordllama, 32 neural on CPU, 256 on GPU)")
    g.add_argument("--embed-dtype", default=d.embed.dtype, choices=["float32", "float16"], help="dtype of the embeddings file in the run directory (default: %(default)s)")
    g.add_argument("--k", type=int, default=d.knn.k, help="neighbours per document (default: %(default)s, as in the paper)")
    g.add_argument("--index", default=d.knn.index, choices=["auto", "flat", "ivf", "hnsw", "ivfpq"], help="FAISS index (default: %(default)s: exact below 50k documents, IVF above)")
    g.add_argument("--nprobe", type=int, default=None, help="IVF lists probed per query (default: chosen from N)")
    g.add_argument("--similarity", default=d.similarity.similarity, choices=["dense", "lexical", "hybrid"],
                   help="signal of the traversal graph: embedding cosine, TF-IDF/BM25 cosine, or both (default: %(default)s; dedup always uses the dense cosine)")
    g.add_argument("--hybrid-weight", type=float, default=d.similarity.hybrid_weight, help="dense share of the hybrid score, 0..1 (default: %(default)s)")
    g.add_argument("--lexical", default=d.similarity.lexical, choices=["tfidf", "bm25"], help="lexical term weighting (default: %(default)s)")
    g.add_argument("--lexical-method", default=d.similarity.lexical_method, choices=["auto", "exact", "pruned"],
                   help="lexical kNN: exact blocked products, or pruned candidates + exact rescoring (default: %(default)s: exact up to 10k documents)")
    g.add_argument("--dedup-threshold", type=float, default=d.dedup.threshold, help="cosine at or above which documents are near-duplicates (default: %(default)s; >1 disables)")
    g.add_argument("--no-exact-dedup", action="store_true", help="do not remove exact (normalised-text) duplicates")
    g.add_argument("--order", default=d.order.algorithm, help="ordering algorithm: paper, release, edge, improved, random, cluster, knn (default: %(default)s; see README 'Orderings')")
    g.add_argument("--clusters", type=int, default=d.order.clusters, help="--order cluster: number of k-means clusters (default: sqrt(N))")
    g.add_argument("--knn-neighbors", type=int, default=d.order.knn_neighbors, help="--order knn: retrieved neighbours written after each document (default: all k)")
    g.add_argument("--seed", type=int, default=d.seed)
    g = p.add_argument_group("scale-out (see README: Scale-out)")
    g.add_argument("--engine", default=d.engine.name, choices=["local", "ray"], help="local: this process; ray: partitioned kNN/dedup/traversal as Ray tasks, embedding with Ray Data (default: %(default)s)")
    g.add_argument("--ray-address", default=d.engine.ray_address, help="Ray cluster to join: 'auto' or HOST:PORT (default: start a local Ray)")
    g.add_argument("--workers", type=int, default=d.engine.workers, help="CPUs / embedding actors to use with --engine ray (default: all)")
    g.add_argument("--partitions", type=int, default=d.engine.partitions, help="k-means partitions with --engine ray (default: 0 = max(workers, N/1M))")
    g.add_argument("--spill", type=int, default=d.engine.spill, help="neighbouring partitions each partition also searches, for border documents (default: %(default)s)")
    g = p.add_argument_group("output")
    g.add_argument("--format", default=",".join(d.output.formats), help="comma-separated output formats (default: %(default)s)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty directory that is not a contextsort run")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or stage log")


def _add_pack_options(p: argparse.ArgumentParser, required: bool = False) -> None:
    d = Config().pack
    g = p.add_argument_group("training contexts" + ("" if required else " (packed when --context-length is given)"))
    g.add_argument("--context-length", "-L", type=int, default=8192 if required else None,
                   help="tokens per context (the paper: 8192)" + (" (default: %(default)s)" if required else ""))
    g.add_argument("--tokenizer", default=d.tokenizer,
                   help="llama2 (offline, default) | path to tokenizer.json | tiktoken:cl100k_base | hf:NAME")
    g.add_argument("--pack-mode", default=d.mode, choices=["concat", "boundary"],
                   help="concat: cut every L tokens (the paper); boundary: cut between documents at weak links (default: %(default)s)")
    g.add_argument("--pack-format", default=",".join(d.formats),
                   help="comma-separated: megatron, parquet, numpy (default: %(default)s)")
    g.add_argument("--bos", action="store_true", help="put BOS before each document (EOS follows each always)")
    g.add_argument("--drop-last", action="store_true", help="drop the last context if it is not full")
    g.add_argument("--no-shuffle", action="store_true", help="keep contexts in stream order (training needs them shuffled)")
    g.add_argument("--pack-seed", type=int, default=None, help="seed of the context shuffle (default: --seed)")
    g.add_argument("--shard-size", default=d.shard_size, help="max tokens bytes per shard file, e.g. 1GB (default: one shard)")
    g.add_argument("--pad-id", type=int, default=None, help="padding token id (default: the tokenizer's pad, else EOS)")
    g.add_argument("--pad-weight", type=float, default=d.pad_weight, help="boundary mode: cost of padding, per L tokens (default: %(default)s)")
    g.add_argument("--split-cost", type=float, default=d.split_cost, help="boundary mode: cost of splitting a document (default: %(default)s)")
    g.add_argument("--min-split", type=int, default=None, help="boundary mode: never split documents shorter than this (default: L/4)")


def pack_config_from_args(a: argparse.Namespace):
    from .config import PackConfig
    from .pack import parse_size

    pc = PackConfig()
    pc.context_length = a.context_length
    pc.tokenizer = a.tokenizer
    pc.mode = a.pack_mode
    pc.formats = list(dict.fromkeys(f.strip() for f in a.pack_format.split(",") if f.strip()))
    pc.bos = a.bos
    pc.drop_last = a.drop_last
    pc.shuffle = not a.no_shuffle
    pc.seed = a.pack_seed
    parse_size(a.shard_size)  # fail early on a bad size
    pc.shard_size = a.shard_size
    pc.pad_id = a.pad_id
    pc.pad_weight = a.pad_weight
    pc.split_cost = a.split_cost
    pc.min_split = a.min_split
    from .formats.contexts import CONTEXT_FORMATS

    bad = [f for f in pc.formats if f not in CONTEXT_FORMATS]
    if bad:
        raise ValueError(f"unknown --pack-format {bad} (available: {', '.join(CONTEXT_FORMATS)})")
    if pc.context_length is not None and pc.context_length < 2:
        raise ValueError("--context-length must be at least 2")
    return pc


def config_from_args(a: argparse.Namespace) -> Config:
    c = Config()
    c.input.text_field = a.text_field
    c.input.id_field = a.id_field
    c.input.label_field = a.label_field or None
    c.input.strict = a.strict
    c.embed.embedder = a.embedder
    c.embed.device = a.device
    c.embed.batch_size = a.batch_size
    c.embed.dtype = a.embed_dtype
    c.knn.k = a.k
    c.knn.index = a.index
    c.knn.nprobe = a.nprobe
    c.dedup.threshold = a.dedup_threshold
    c.dedup.exact = not a.no_exact_dedup
    from .order import ORDERS

    if a.order not in ORDERS:
        raise ValueError(f"unknown --order '{a.order}' (available: {', '.join(sorted(ORDERS))})")
    c.order.algorithm = a.order
    c.order.clusters = a.clusters
    c.order.knn_neighbors = a.knn_neighbors
    if not 0.0 <= a.hybrid_weight <= 1.0:
        raise ValueError(f"--hybrid-weight must be between 0 and 1, got {a.hybrid_weight}")
    c.similarity.similarity = a.similarity
    c.similarity.hybrid_weight = a.hybrid_weight
    c.similarity.lexical = a.lexical
    c.similarity.lexical_method = a.lexical_method
    c.seed = a.seed
    c.engine.name = a.engine
    c.engine.ray_address = a.ray_address
    c.engine.workers = a.workers
    c.engine.partitions = a.partitions
    c.engine.spill = a.spill
    c.output.formats = [f.strip() for f in a.format.split(",") if f.strip()]
    c.pack = pack_config_from_args(a)
    return c


def summary(result) -> str:
    c = result.counts
    m = result.metrics
    lines = [
        f"run directory     {result.run_dir}",
        f"documents         read {c['records_read']}, kept {c['kept']}, duplicates {c['duplicates']}, rejected {c['rejected']}"
        f" ({'adds up' if c['adds_up'] else 'DOES NOT ADD UP'})",
    ]
    a = m.get("adjacent_similarity")
    if a:
        lines.append(f"adjacent_similarity  ordered {a['ordered']:.4f}   random {a['random']:.4f}")
    la = m.get("label_agreement")
    if la:
        lines.append(f"label_agreement      ordered {la['ordered']:.4f}   random {la['random']:.4f}   lift {la['lift']:.2f}x")
    rep = m.get("repeats")
    if rep:
        lines.append(f"repeats              {rep['rows']} rows for {rep['documents']} documents (not a permutation): each appears {rep['min']}-{rep['max']} times, mean {rep['mean']:.2f}")
    pw = m.get("path_weight")
    if pw:
        lines.append(f"path_weight          {pw['sum']:.1f} (mean {pw['mean']:.4f}/step, {pw['jumps']} jumps), bound {pw['bound']:.1f}, ratio {pw['ratio']:.3f}")
    pk = m.get("pack")
    if pk and "pack" in result.manifest["stages"]:
        lines.append(
            f"packed               {pk['contexts']} contexts of {pk['context_length']} tokens ({pk['mode']}), "
            f"{pk['context_tokens']} tokens, waste {pk.get('waste', 0):.2%}, documents split {pk.get('documents_split_share', 0):.2%}"
        )
        if "within_context_adjacent_similarity" in pk:
            ac = pk.get("across_contexts", {})
            lines.append(
                f"context similarity   within (adjacent docs) {pk['within_context_adjacent_similarity']:.4f}"
                + (f"; consecutive contexts {ac['written']:.4f} (random pairs {ac['random']:.4f})" if ac else "")
            )
    t = {k: v.get("seconds") for k, v in result.manifest["stages"].items()}
    lines.append("stage seconds     " + ", ".join(f"{k} {v}" for k, v in t.items()) + (f"  (reused: {', '.join(result.skipped)})" if result.skipped else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="contextsort", description="Order a pretraining corpus the In-Context Pretraining way.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run the whole pipeline on a corpus")
    p_run.add_argument("inputs", nargs="+", help="JSONL (.gz/.zst), Parquet files or folders (of those, or of .txt files)")
    p_run.add_argument("-o", "--output", required=True, help="run directory (created; rerunning resumes)")
    _add_pipeline_options(p_run)

    _add_pack_options(p_run)

    p_demo = sub.add_parser("demo", help="run the pipeline on the built-in BBC News sample and print a summary")
    p_demo.add_argument("-o", "--output", default="runs/demo", help="run directory (default: %(default)s)")
    _add_pipeline_options(p_demo)
    _add_pack_options(p_demo)

    p_pack = sub.add_parser("pack", help="pack the order of a finished run into shuffled training contexts (RUN_DIR/packed)")
    p_pack.add_argument("run_dir", help="a run directory made by `contextsort run`")
    _add_pack_options(p_pack, required=True)
    p_pack.add_argument("-q", "--quiet", action="store_true", help="no progress bars or stage log")

    p_probe = sub.add_parser("probe", help="train two tiny LMs (random vs. run order) and compare how much a related document helps (RUN_DIR/probe.json)")
    p_probe.add_argument("run_dir", help="a run directory made by `contextsort run`")
    p_probe.add_argument("--seeds", type=int, default=3, help="repetitions, each with its own split and initialisation (default: %(default)s)")
    p_probe.add_argument("--tokens", type=int, default=None, help="training tokens per model (default: one pass over the training documents)")
    p_probe.add_argument("--layers", type=int, default=2, help="transformer layers (default: %(default)s)")
    p_probe.add_argument("--width", type=int, default=128, help="model width (default: %(default)s)")
    p_probe.add_argument("--context-length", "-L", type=int, default=512, help="tokens per training context (default: %(default)s)")
    p_probe.add_argument("--score-tokens", type=int, default=128, help="tokens of each evaluated document scored, <= L/2 (default: %(default)s)")
    p_probe.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default: %(default)s)")
    p_probe.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: the CPUs this process may use)")
    p_probe.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    a = parser.parse_args(argv)
    if a.command == "probe":
        from .probe import ProbeError, ProbeUnavailable, run_probe, summary_line

        try:
            result = run_probe(a.run_dir, seeds=a.seeds, tokens=a.tokens, layers=a.layers, width=a.width, context_length=a.context_length,
                               score_tokens=a.score_tokens, device=a.device, threads=a.threads, progress=not a.quiet)
        except (ProbeError, ProbeUnavailable) as e:
            print(f"contextsort: error: {e}", file=sys.stderr)
            return 2
        print(summary_line(result))
        print(f"details in         {a.run_dir}/probe.json")
        return 0
    return _dispatch(a)


def _dispatch(a: argparse.Namespace) -> int:
    from .corpus import InputError
    from .embed import EmbedderUnavailable
    from .runner import RunError, Runner
    from .sample import SampleUnavailable, bbc_news_path
    from .similarity import SimilarityUnavailable
    from .tokenizer import TokenizerUnavailable

    try:
        if a.command == "pack":
            from .runner import pack_run

            result = pack_run(a.run_dir, pack_config_from_args(a), quiet=a.quiet)
            info = result.run_dir / "packed" / "pack.json"
            print(summary(result))
            print(f"contexts in        {info.parent}/ (see {info.name})")
            return 0
        cfg = config_from_args(a)
        if a.command == "demo":
            inputs = [bbc_news_path()]
        else:
            inputs = a.inputs
        t = time.perf_counter()
        result = Runner(inputs, a.output, cfg, quiet=a.quiet, overwrite=a.overwrite).run()
        print(summary(result))
        if a.command == "demo":
            print(f"total             {time.perf_counter() - t:.2f}s; outputs in {result.run_dir}/ordered.jsonl, removed.jsonl, manifest.json")
        return 0
    except (InputError, RunError, EmbedderUnavailable, SampleUnavailable, SimilarityUnavailable, TokenizerUnavailable, ValueError) as e:
        print(f"contextsort: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("contextsort: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
