"""Benchmark: where the time goes, each figure beside its limit measured in the same run.

    .venv/bin/python benchmarks/performance.py [--corpus sample|prometheus|scifact ...] [--limit N]
                                               [--rounds 3] [--backend torch|onnx|onnx-int8 ...] [--json FILE]
                                               [--peer torch] [--phases all|ingest]

Every measurement runs in a fresh process (so peak RSS is that phase's own, model included) and is repeated
--rounds times, the sides of each comparison alternated; the table shows medians. Per corpus and backend:
  ingest          full ingest into an empty collection (model loaded before the clock starts)
  embed           the limit: the same chunk texts (what ingest embeds) through the same embedder, nothing else
  llama-index     the peer: llama-index IngestionPipeline (SentenceSplitter at the same size and overlap, the
                  same model) into Chroma in batches, over the same documents; with --peer torch also the stock
                  pipeline a user runs, "llama-index (torch)", whatever our backend
  no-change       a second ingest with nothing changed; 1%-changed: a second ingest after 1% of documents changed
  probes          the probe stage; its limit "embed queries": embedding the probe queries alone
  quality, drift  the quality stage, and the drift stage (Evidently report) of a run
  cli: ...        whole commands as a person types them (process start to exit; no Prefect server configured):
                  `rag-health freshness`, `rag-health ingest --only DOC` after DOC changed, `rag-health run`
Figures: wall and CPU seconds, documents/s, peak RSS. Reads ../shared/corpora (absent corpora are skipped) and
writes only to temporary directories.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.corpora import PROMETHEUS, SCIFACT, scifact_folder, scifact_probes  # noqa: E402

# --- one phase, in its own process ----------------------------------------------------------------------------

def _settings(args, **extra):
    from rag_health.settings import load_settings

    probes = [args.probes] if args.probes else None
    return load_settings(docs=args.docs, state_dir=args.state, embed_backend=args.backend, probes=probes,
                         model_cache_dir=args.model_cache, generate_probes=False, **extra)


def phase(args) -> dict:
    """Run one phase and return its figures (the parent reads them from stdout)."""
    from rag_health.registry import stages
    from rag_health.runtime import build_runtime
    from rag_health.settings import disable_telemetry

    disable_telemetry()
    rt = build_runtime(_settings(args))
    out: dict = {}
    if args.phase in ("ingest", "again", "embed", "llama-index", "probes", "embed-queries"):
        # Fixed costs are paid before the clock starts, on every side: the model, the Chroma client, the splitter
        # (what a person waits for, fixed costs included, is the cli: rows).
        rt.embedder.embed(["warm up"])
        rt.index.count()
        rt.chunker.split(_warm_doc())
        if args.phase == "llama-index" and args.peer_backend:  # the peer's own model, loaded before the clock too
            from rag_health.embedding import load_embedder

            load_embedder(backend=args.peer_backend, cache_dir=args.model_cache or "").embed(["warm up"])
    t0, c0 = time.perf_counter(), time.process_time()
    if args.phase in ("ingest", "again"):
        result = stages()["ingest"].run(rt)
        out.update(documents=result.documents, chunks=result.chunks_embedded)
    elif args.phase == "embed":
        texts = json.loads(Path(args.texts).read_text())
        t0, c0 = time.perf_counter(), time.process_time()
        rt.embedder.embed(texts)
        out.update(chunks=len(texts))
    elif args.phase == "llama-index":
        out.update(_llama_pipeline(rt, args.peer_backend))
    elif args.phase == "probes":
        result = stages()["probes"].run(rt)
        out.update(probes=int(result.overall.get("n", 0)))
    elif args.phase == "embed-queries":
        from rag_health.probes import load_probe_set

        queries = [p.query for p in load_probe_set(args.probes).probes]
        t0, c0 = time.perf_counter(), time.process_time()
        rt.embedder.embed(queries)
        out.update(probes=len(queries))
    elif args.phase == "quality":
        stages()["quality"].run(rt)
    elif args.phase == "drift":
        stages()["drift"].run(rt, run_id=f"bench-{time.time_ns()}")
    out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, peak_rss_mb=_peak_mb())
    return out


def _peak_mb() -> float:
    """This process's own peak RSS (VmHWM; ru_maxrss would carry the parent's across exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_doc():
    """A plain-text document longer than a chunk: its split goes through the sentence splitter, whose first use
    imports llama-index and nltk (about 4 s, a fixed cost like the model's load)."""
    from rag_health.documents import parse_document

    return parse_document("warm.txt", ("One sentence to warm up the splitter. " * 120).encode())


def _llama_pipeline(rt, backend: str | None = None) -> dict:
    """The peer a user would pick: llama-index's IngestionPipeline, the same splitter settings and model, written
    into a Chroma collection in batches under its limit (the stock vector store's batching fails on large corpora).
    backend: the peer's model backend when it is not ours (a user's stock pipeline runs torch)."""
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    embedder = rt.embedder
    if backend and backend != rt.backend:
        from rag_health.embedding import load_embedder

        embedder = load_embedder(backend=backend, cache_dir=rt.settings.model_cache_dir)  # loaded before the clock

    class Model(BaseEmbedding):
        def _get_text_embedding(self, text):
            return embedder.embed([text])[0].tolist()

        def _get_text_embeddings(self, texts):
            return embedder.embed(texts).tolist()

        def _get_query_embedding(self, query):
            return self._get_text_embedding(query)

        async def _aget_query_embedding(self, query):
            return self._get_text_embedding(query)

    s = rt.settings
    docs = SimpleDirectoryReader(s.docs, recursive=True, required_exts=[".md", ".txt"]).load_data()
    pipeline = IngestionPipeline(transformations=[
        SentenceSplitter(chunk_size=s.chunk_size, chunk_overlap=s.chunk_overlap, tokenizer=embedder.tokenize),
        Model(model_name="all-MiniLM-L6-v2", embed_batch_size=s.embed_batch_size)])
    nodes = pipeline.run(documents=docs)
    collection = rt.chroma.get_or_create_collection("llama-index-peer", embedding_function=None)
    step = int(rt.chroma.get_max_batch_size())
    for i in range(0, len(nodes), step):
        batch = nodes[i:i + step]
        collection.add(ids=[n.node_id for n in batch], embeddings=[n.embedding for n in batch],
                       documents=[n.get_content() for n in batch])
    return {"documents": len(docs), "chunks": len(nodes)}


def chunk_texts(args) -> None:
    """The texts ingest embeds for this corpus (same chunker), written for the 'embed' phase."""
    from rag_health.documents import DocumentError, is_supported, parse_document
    from rag_health.runtime import build_runtime

    rt = build_runtime(_settings(args))
    root, texts = Path(args.docs), []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        doc_id = path.relative_to(root).as_posix()
        if is_supported(doc_id):
            try:
                texts += [c.embed_text for c in rt.chunker.split(parse_document(doc_id, path.read_bytes()))]
            except DocumentError:
                continue
    Path(args.texts).write_text(json.dumps(texts))


# --- the orchestrator -------------------------------------------------------------------------------------------

def _run(argv: list[str], env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:2]} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cli(cmd: list[str], env: dict) -> dict:
    """A whole command, process start to exit, with its peak RSS (children included)."""
    # A small wrapper process times the command, so the peak RSS is the command's own (RUSAGE_CHILDREN of this
    # process would be the largest of every phase run so far).
    wrapper = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
               "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode; "
               "wall = time.perf_counter() - t; r = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(json.dumps({'code': code, 'wall_s': wall, 'cpu_s': r.ru_utime + r.ru_stime, "
               "'peak_rss_mb': r.ru_maxrss / 1024}))")
    done = subprocess.run([sys.executable, "-c", wrapper, str(Path(sys.executable).parent / "rag-health"), *cmd],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, **env}, timeout=3600)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures.pop("code") not in (0, 1):
        raise RuntimeError(f"rag-health {' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return figures


def prepare(corpus: str, work: Path, limit: int | None) -> tuple[Path, Path | None] | None:
    """A private copy of the corpus (phases change documents), and its probe file."""
    docs = work / "docs"
    if corpus == "sample":
        shutil.copytree(REPO / "datasets" / "docs", docs)
        return docs, REPO / "datasets" / "probes" / "golden.jsonl"
    if corpus == "prometheus":
        if not PROMETHEUS.exists():
            return None
        shutil.copytree(PROMETHEUS / "content", docs)
        from benchmarks.prometheus_runbooks import alert_probes

        probes = work / "alerts.jsonl"
        alert_probes(PROMETHEUS / "golden_probes_from_kube-prometheus_alerts.jsonl", probes)
        return docs, probes
    if not SCIFACT.exists():
        return None
    scifact_folder(docs, limit)
    probes = work / "scifact.jsonl"
    scifact_probes(probes, "test", {p.name for p in docs.glob("*.md")} if limit else None)
    return docs, probes


def change(docs: Path, fraction: float, round_no: int) -> list[str]:
    """Append a sentence to `fraction` of the documents (at least one); returns their ids."""
    files = sorted(p for p in docs.rglob("*.md"))
    picked = files[:: max(1, int(1 / fraction))][: max(1, int(len(files) * fraction))]
    for p in picked:
        with p.open("a", encoding="utf-8") as f:
            f.write(f"\n\nReviewed again in benchmark round {round_no} at {time.time_ns()}.\n")
    return [p.relative_to(docs).as_posix() for p in picked]


def bench(corpus: str, backend: str, rounds: int, limit: int | None, cache: Path,
          peer: str | None = None, ingest_only: bool = False) -> dict | None:
    work = Path(tempfile.mkdtemp(prefix=f"rag-health-perf-{corpus}-"))
    prepared = prepare(corpus, work, limit)
    if prepared is None:
        return None
    docs, probes = prepared
    base = ["--docs", str(docs), "--backend", backend, "--model-cache", str(cache)] + \
        (["--probes", str(probes)] if probes else [])
    texts = work / "texts.json"
    _run(["_texts", "--state", str(work / "scratch"), "--texts", str(texts), *base])
    samples: dict[str, list[dict]] = {}

    def add(name: str, figures: dict) -> None:
        samples.setdefault(name, []).append(figures)

    for r in range(rounds):
        state = work / f"state-{r}"
        shutil.rmtree(state, ignore_errors=True)
        sides = [("ingest", ["_phase", "ingest", "--state", str(state), *base]),
                 ("embed", ["_phase", "embed", "--state", str(work / "scratch"), "--texts", str(texts), *base]),
                 ("llama-index", ["_phase", "llama-index", "--state", str(work / f"llama-{r}"), *base])]
        if peer and peer != backend:  # the stock pipeline a user runs: llama-index with the torch model
            sides.append((f"llama-index ({peer})", ["_phase", "llama-index", "--state", str(work / f"peer-{r}"),
                                                     "--peer-backend", peer, *base]))
        for name, argv in (sides if r % 2 == 0 else list(reversed(sides))):  # alternate which side goes first
            add(name, _run(argv))
        if ingest_only:
            continue
        add("no-change", _run(["_phase", "again", "--state", str(state), *base]))
        change(docs, 0.01, r)
        add("1%-changed", _run(["_phase", "again", "--state", str(state), *base]))
        pair = [("probes", ["_phase", "probes", "--state", str(state), *base]),
                ("embed queries", ["_phase", "embed-queries", "--state", str(state), *base])]
        for name, argv in (pair if r % 2 == 0 else list(reversed(pair))):
            add(name, _run(argv))
        add("quality", _run(["_phase", "quality", "--state", str(state), *base]))
        add("drift", _run(["_phase", "drift", "--state", str(state), *base]))
        env = {"RAG_HEALTH_DOCS": str(docs), "RAG_HEALTH_STATE_DIR": str(state), "RAG_HEALTH_EMBED_BACKEND": backend,
               "RAG_HEALTH_MODEL_CACHE_DIR": str(cache), "PREFECT_API_URL": ""}
        if probes:
            env["RAG_HEALTH_PROBES"] = str(probes)
        add("cli: freshness", _cli(["freshness", "--json"], env))
        one = change(docs, 1e-9, r)[0]
        add("cli: ingest --only one changed doc", _cli(["ingest", "--only", one, "--json"], env))
        add("cli: run (whole suite)", _cli(["run", "--json"], env))
    rows = {name: {k: statistics.median(s[k] for s in runs if k in s) for k in runs[0]} for name, runs in
            samples.items()}
    shutil.rmtree(work, ignore_errors=True)
    return {"corpus": corpus, "backend": backend, "rounds": rounds, "limit": limit, "phases": rows}


def ratios(out: dict) -> dict[str, float]:
    p = out["phases"]
    r = {}
    if "ingest" in p and "embed" in p:
        r["ingest / embed (wall)"] = p["ingest"]["wall_s"] / p["embed"]["wall_s"]
        r["ingest / embed (CPU)"] = p["ingest"]["cpu_s"] / p["embed"]["cpu_s"]
    for name in [n for n in p if n.startswith("llama-index")]:
        if "ingest" in p:
            r[f"ingest / {name} (wall)"] = p["ingest"]["wall_s"] / p[name]["wall_s"]
    for name in ("no-change", "1%-changed"):
        if name in p and "ingest" in p:
            r[f"{name} / ingest (wall)"] = p[name]["wall_s"] / p["ingest"]["wall_s"]
    if "probes" in p and "embed queries" in p:
        r["probes / embed queries (wall)"] = p["probes"]["wall_s"] / p["embed queries"]["wall_s"]
    return r


def print_table(out: dict) -> None:
    print(f"\n== {out['corpus']} · backend {out['backend']} · medians of {out['rounds']} round(s)"
          + (f" · first {out['limit']} documents" if out["limit"] else ""))
    print(f"{'phase':<38} {'wall s':>8} {'CPU s':>8} {'docs/s':>8} {'peak RSS MB':>12}")
    for name, f in out["phases"].items():
        rate = f"{f['documents'] / f['wall_s']:.1f}" if f.get("documents") and f["wall_s"] > 0 else ""
        print(f"{name:<38} {f['wall_s']:>8.2f} {f['cpu_s']:>8.2f} {rate:>8} {f['peak_rss_mb']:>12.0f}")
    for name, value in ratios(out).items():
        print(f"  {name:<50} {value:.3f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_phase", "_texts"):
        p = argparse.ArgumentParser()
        p.add_argument("what")
        p.add_argument("phase", nargs="?")
        for flag in ("--docs", "--state", "--backend", "--probes", "--texts", "--model-cache", "--peer-backend"):
            p.add_argument(flag)
        args = p.parse_args(argv)
        if argv[0] == "_texts":
            chunk_texts(args)
            print("{}")
        else:
            print(json.dumps(phase(args)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", action="append", choices=["sample", "prometheus", "scifact"])
    parser.add_argument("--backend", action="append", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, help="first N SciFact abstracts")
    parser.add_argument("--peer", choices=["torch", "onnx", "onnx-int8"],
                        help="also time the llama-index pipeline with this backend's model (e.g. torch: the stock "
                             "pipeline a user runs) beside the same-backend one")
    parser.add_argument("--phases", choices=["all", "ingest"], default="all",
                        help="ingest: only the ingest comparisons (full ingest, raw embedding, llama-index)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    cache = Path(tempfile.gettempdir()) / "rag-health-perf-models"
    results = []
    for corpus in args.corpus or ["sample", "prometheus", "scifact"]:
        for backend in args.backend or ["onnx"]:
            out = bench(corpus, backend, args.rounds, args.limit, cache, args.peer, args.phases == "ingest")
            if out is None:
                print(f"\n== {corpus}: absent, skipped")
                continue
            out["ratios"] = ratios(out)
            print_table(out)
            results.append(out)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
