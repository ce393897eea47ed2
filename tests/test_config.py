"""Config: every option declared once, validated before any work, named as the user wrote it."""

from __future__ import annotations

import json

import pytest

import contextsort
from contextsort.cli import build_parser, config_from_args, main
from contextsort.config import Config, Interval, ListOf, OneOf, Size, Text, api_name
from contextsort.errors import ConfigError

BAD_OPTIONS = [
    (["--dedup-threshold", "-1"], "--dedup-threshold must be a finite number > 0 (> 1 disables dedup), got -1"),
    (["--dedup-threshold", "nan"], "--dedup-threshold must be"),
    (["--k", "0"], "--k must be an integer in [1, 1024], got 0"),
    (["--k", "-1"], "--k must be"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--knn-neighbors", "-1"], "--knn-neighbors must be"),
    (["--shard-size", "0"], "--shard-size must be a size"),
    (["--shard-size", "bogus"], "--shard-size must be a size such as 512MB, 1GB or a number of bytes >= 1, got 'bogus'"),
    (["--nprobe", "-1"], "--nprobe must be an integer >= 1, got -1"),
    (["--pad-weight", "nan"], "--pad-weight must be"),
    (["-L", "10000000000"], "--context-length must be an integer in [2, 4194304], got 10000000000"),
    (["--order", "bogus"], "--order must be one of"),
    (["--format", ""], "--format must be a non-empty comma-separated list"),
    (["--format", "xml"], "--format must be a non-empty comma-separated list"),
    (["--hybrid-weight", "2"], "--hybrid-weight must be a finite number in [0, 1], got 2.0"),
    (["--order", "knn", "--partitions", "4"], "--order knn repeats documents"),
    (["--seed", "-3"], "--seed must be"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_exits_2_naming_it_before_any_work(tmp_path, capsys, args, message):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"text": "hello world"}) + "\n")
    out = tmp_path / "run"
    assert main(["run", str(inp), "-o", str(out), "-q", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # nothing was done


def test_unparseable_number_names_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "x", "-o", str(tmp_path / "r"), "--k", "abc"])
    assert e.value.code == 2 and "--k" in capsys.readouterr().err


def test_api_validates_before_any_work(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"text": "hello world"}) + "\n")
    for bad in ({"k": 0}, {"order": "nope"}, {"dedup_threshold": float("nan")}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            contextsort.run([inp], tmp_path / "run", **bad)
        assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="unknown option 'text_feild' \\(did you mean 'text_field'\\?\\)"):
        contextsort.run([inp], tmp_path / "run", text_feild="content")


def test_api_keyword_options_reach_the_run(tmp_path):
    inp = tmp_path / "in.jsonl"
    from contextsort.sample import bbc_news_path

    files = sorted(bbc_news_path().rglob("*.txt"))[::70][:30]
    rows = [{"content": f.read_text(encoding="utf-8", errors="replace"), "doc": f"d{i}"} for i, f in enumerate(files)]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = contextsort.run([inp], tmp_path / "run", text_field="content", id_field="doc", k=5, order="improved",
                          similarity="dense", format=["jsonl"])
    cfg = res.manifest["config"]
    assert (cfg["input"]["text_field"], cfg["knn"]["k"], cfg["order"]["algorithm"]) == ("content", 5, "improved")
    ids = [json.loads(line)["doc"] for line in (tmp_path / "run" / "ordered.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(r["doc"] for r in rows)
    assert not (tmp_path / "run" / "ordered.parquet").exists()


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown config key knn.kk"):
        Config.from_dict({"knn": {"kk": 3}})
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        Config.from_dict({"bogus": {}})
    c = Config.from_dict(Config().to_dict())
    assert c == Config()


def non_default(f, default):
    """A valid value other than the default for one declared option."""
    check = f.metadata["check"]
    if isinstance(default, bool):
        return not default
    if isinstance(check, Interval):
        lo = check.lo if check.lo is not None else 0
        base = default if default is not None else lo
        v = base + 1 if check.hi is None or base + 1 <= check.hi else base - 1
        if check.kind is float:
            v = float(base) / 2 if check.hi is not None and check.hi <= 1 else float(v)
        return check.kind(v)
    if isinstance(check, ListOf):
        names = check.item.names()
        return [n for n in names if n not in (default or [])][:1] or names[:1]
    if isinstance(check, OneOf):
        return next(n for n in check.names() if n != default)
    if isinstance(check, Size):
        return "1MB"
    if isinstance(check, Text):
        return "custom"
    raise AssertionError(f"no value for {f.name}")


def cli_text(value) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def test_every_option_has_a_flag_that_reaches_the_config():
    p = build_parser()
    for section, f in Config.options():
        if (section, f.name) in (("engine", "name"), ("engine", "ray_address")):
            continue  # would start Ray when used; covered in test_distributed
        default = Config().get(section, f.name)
        value = non_default(f, default)
        flag = f.metadata["flag"]
        args = ["run", "x", "-o", "y"] + ([flag] if isinstance(value, bool) else [flag, cli_text(value)])
        if (section, f.name) == ("pack", "min_split"):
            args += ["-L", "4096"]
        c = config_from_args(p.parse_args(args))
        assert c.get(section, f.name) == value, flag
        # and the same through the Python API name
        c2 = Config().with_options(**{api_name(flag): value, **({"context_length": 4096} if f.name == "min_split" else {})})
        assert c2.get(section, f.name) == value, api_name(flag)
