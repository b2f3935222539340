"""The stage registry builds the CLI, the flows and the pre-flight checks; a runtime reads each input once a run."""

import shlex

import pytest

from rag_health import registry
from rag_health.registry import stages


def test_every_stage_has_a_command_a_flow_and_a_working_example():
    from flows.cli import build_parser
    from flows.stages import FLOWS

    parser = build_parser()
    assert set(FLOWS) == set(stages())
    for name, stage in stages().items():
        args = parser.parse_args(shlex.split(stage.example)[1:])
        assert args.command == name
        for option in stage.options:
            assert hasattr(args, option.dest), (name, option.dest)
        assert stage.task_name and stage.help and callable(stage.artifacts)


def test_a_new_stage_is_one_entry(monkeypatch):
    """Adding a stage: its module's entry appears as a CLI command with its options, nothing else to edit."""
    from flows.cli import build_parser

    toy = registry.Stage(name="toy", run=lambda rt: None, result_type=dict, artifacts=lambda r: [],
                         help="a toy stage", example="rag-health toy --level 3", task_name="toy",
                         options=(registry.Option(("--level",), "level", "how much", setting=False),))
    real = stages()
    monkeypatch.setattr(registry, "stages", lambda: {**real, "toy": toy})
    args = build_parser().parse_args(["toy", "--level", "3", "--json"])
    assert (args.command, args.level, args.json) == ("toy", "3", True)


def test_one_run_lists_the_source_once_and_scans_the_ledger_once_per_state(small_corpus, make_runtime,
                                                                            monkeypatch):
    """One run, one read: ingest, freshness, coverage and probes on one runtime list the source once, load the
    manifest once, and scan the ledger once before ingest writes and once after."""
    from rag_health.manifest import Manifest
    from rag_health.sources import LocalFolderSource
    from rag_health.store import ChunkIndex

    counts = {"list": 0, "ledger": 0}
    real_list, real_ledger = LocalFolderSource.list, ChunkIndex.ledger

    def counting(name, real):
        def wrapper(self, *a, **kw):
            counts[name] += 1
            return real(self, *a, **kw)
        return wrapper

    monkeypatch.setattr(LocalFolderSource, "list", counting("list", real_list))
    monkeypatch.setattr(ChunkIndex, "ledger", counting("ledger", real_ledger))
    rt = make_runtime(small_corpus)
    results = {name: stages()[name].run(rt) for name in ("ingest", "freshness", "coverage")}
    results["probes"] = stages()["probes"].run(rt, {"smoke": [{"id": "s1", "query": "consumer lag on payments",
                                                               "relevant": ["runbooks/kafka-lag.md"]}]})
    assert counts == {"list": 1, "ledger": 2}
    assert isinstance(rt.manifest, Manifest) and results["probes"].per_probe[0]["rank"] == 1


BAD = {
    registry.SOURCE: ({"docs": "/nonexistent/docs"}, "/nonexistent/docs"),
    registry.MANIFEST: ({"manifest": "{tmp}/manifest.yaml"}, "manifest.yaml"),
    registry.RULES: ({"rules": ["/nonexistent/rules.yaml"]}, "/nonexistent/rules.yaml"),
    registry.PROBES: ({"probes": ["/nonexistent/golden.jsonl"]}, "/nonexistent/golden.jsonl"),
    registry.THRESHOLDS: ({"fail_under": ["hit@5=high"]}, "hit@5=high"),
    registry.CHUNKINGS: ({}, "--config at least twice"),
    registry.INDEX: ({"chroma_mode": "http", "chroma_port": 9, "chroma_connect_timeout": 1}, "127.0.0.1:9"),
    registry.ARCHIVE: ({"s3_bucket": "no-such-bucket"}, "no-such-bucket"),
}


@pytest.mark.parametrize("need", sorted({n for s in stages().values() for n in s.needs} | registry.suite_needs()))
def test_every_need_is_checked_before_any_work(need, small_corpus, tmp_path, make_runtime, seaweed, monkeypatch):
    """Each need of a stage has a pre-flight check that stops bad configuration with a ConfigError (exit 2)
    naming what is wrong, before the model is loaded or anything is read."""
    from rag_health import preflight
    from rag_health.errors import ConfigError

    for key, value in seaweed.env().items():  # the archive check talks to a real S3 without that bucket
        monkeypatch.setenv(key, value)
    (tmp_path / "manifest.yaml").write_text("documents: [unclosed\n")
    overrides, message = BAD[need]
    overrides = {k: (v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v) for k, v in overrides.items()}
    rt = make_runtime(overrides.pop("docs", small_corpus), **overrides)
    with pytest.raises(ConfigError, match=message.replace("@", ".").replace("?", ".")):
        preflight.check(rt, {need}, ["sentence:200:24"])
    assert "embedder" not in rt.__dict__  # the model was never loaded
