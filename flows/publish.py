"""Turning stage results into Prefect artifacts (stable kebab-case keys) and events."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

MAX_ROWS = 200


def _table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    if rows:
        create_table_artifact(key=key, table=rows[:MAX_ROWS], description=description)


def publish_ingest(result: dict[str, Any]) -> None:
    lines = [f"## Ingest: {result['status']}",
             f"{result['documents']} documents at `{result['source']}`: {result['added']} added, "
             f"{result['changed']} changed, {result['removed']} removed, {result['unchanged']} unchanged; "
             f"{result['chunks_embedded']} chunks embedded in {result['seconds']} s."]
    lines += [f"- **error** `{e['doc_id']}`: {e['reason']}" for e in result["errors"]]
    create_markdown_artifact(key="ingest-summary", markdown="\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]))


def publish_freshness(result: dict[str, Any]) -> None:
    stale = [d for d in result["documents"] if d["status"] != "fresh"]
    _table("stale-docs", [{k: d[k] for k in ("doc_id", "status", "reason", "owner")} for d in stale],
           f"Documents that are not fresh as of {result['as_of']}")
    counts = ", ".join(f"{k}: {v}" for k, v in result["summary"].items() if v)
    create_markdown_artifact(key="freshness-verdict", markdown=f"## Freshness: {result['status']}\n\n{counts}")


def publish_coverage(result: dict[str, Any]) -> None:
    if result["status"] == "skip":
        return
    _table("alerts-missing-runbook", [a for a in result["alerts"] if a["status"] != "covered"],
           "Alerting rules whose runbook is missing or unmapped")
    create_markdown_artifact(key="alert-coverage", markdown=(
        f"## Alert-rule coverage: {result['status']}\n\n{result['covered_rules']} of {result['rules']} rules "
        f"point at an existing runbook; {len(result['alerts_missing_runbook'])} alerts have none; "
        f"{len(result['runbooks_without_alert'])} runbooks are not pointed to by any alert; "
        f"{result['probes_generated']} probes generated."))


def publish_quality(result: dict[str, Any]) -> None:
    _table("quality-findings", [{k: f[k] for k in ("doc_id", "chunk_id", "kind", "detail", "penalty")}
                                for f in result.get("findings", [])],
           "Chunk and embedding findings, worst chunk first")
    _table("quality-documents", [{**{k: d[k] for k in ("doc_id", "score", "chunks", "worst_chunk_score")},
                                  "findings": ", ".join(f"{k}: {v}" for k, v in d["findings"].items())}
                                 for d in result.get("documents", [])],
           "Quality score per document (0-1), worst first")
    _table("chunk-table", result.get("worst_chunks", []),
           "Worst chunks first: score, model tokens, section, cut blocks, sentence boundaries")
    m = result["chunks"].get("metrics", {})
    e = result["embeddings"].get("metrics", {})
    counts = ", ".join(f"{k}: {v}" for k, v in (result.get("findings_by_kind") or {}).items()) or "none"
    findings = "\n".join(f"- {f}" for f in result["chunks"]["findings"] + result["embeddings"]["findings"])
    create_markdown_artifact(key="quality-verdict", markdown=(
        f"## Chunk and embedding quality: {result['status']} (score {result.get('score', 0):.3f})\n\n"
        f"{m.get('chunks', 0)} chunks, {m.get('overflow_chunks', 0)} over the token window "
        f"({result.get('tokens_lost', 0)} tokens never embedded), {m.get('mid_sentence_fraction', 0):.1%} end "
        f"mid-sentence; anisotropy {e.get('anisotropy')} (baseline {e.get('anisotropy_baseline')}), neighbour "
        f"overlap with the baseline {e.get('neighbour_overlap')}.\n\nFindings by kind: {counts}\n\n{findings}"))


def publish_comparison(result: dict[str, Any]) -> None:
    rows = []
    for c in result["configs"]:
        overall = (c.get("retrieval") or {}).get("overall", {})
        q = c["quality"]
        rows.append({"chunking": c["chunking"], "chunks": c["chunks"], "quality_score": q["score"],
                     "tokens_lost": q["tokens_lost"], "mid_sentence": q["mid_sentence_fraction"],
                     "structure_splits": q["structure_split_chunks"], "lost_headings": q["lost_heading_chunks"],
                     "hit@5": overall.get("hit@5"), "mrr": overall.get("mrr"), "ndcg@10": overall.get("ndcg@10")})
    _table("chunking-comparison", rows, "Chunking configurations side by side on the same documents and probes")
    create_markdown_artifact(key="chunking-winner", markdown=(
        f"## Chunking comparison: `{result['winner']}` wins\n\n{result['reason']}\n\n"
        f"{result['probes']} probes from {', '.join(result['probe_sets']) or 'no probe sets'}."))


def publish_probes(result: dict[str, Any]) -> None:
    if result["status"] == "skip":
        return
    _table("retrieval-hit-rate", [{"set": name, **m} for name, m in result["sets"].items()],
           "Document-level retrieval metrics per probe set")
    _table("missed-probes", [
        {"probe_id": p["probe_id"], "set": p["set"], "query": p["query"], "rank": p["rank"],
         "relevant": ", ".join(p["relevant"]), "retrieved": ", ".join(p["retrieved"][:3])}
        for p in result["per_probe"] if p["relevant"] and (p["rank"] is None or p["rank"] > 5)
    ], "Probes whose relevant document is not in the top 5")
    _table("probe-regressions", result.get("regressions", []),
           f"Probes that regressed against baseline run {result.get('baseline_run')}, with the displacing document")
    _table("filter-exclusions", result.get("filter_excluded", []),
           "Filter probes whose relevant document the metadata filter excludes (missing or wrong field)")


def publish_drift(result: dict[str, Any]) -> None:
    if "html" not in result:
        return
    if result.get("s3_uri"):
        create_link_artifact(key="drift-report", link=result["s3_uri"], link_text="Evidently drift report (S3)")
        create_link_artifact(key="drift-report-local", link=f"file://{result['html']}",
                             link_text="Evidently drift report (state directory)")
    else:
        create_link_artifact(key="drift-report", link=f"file://{result['html']}",
                             link_text="Evidently drift report (state directory)")


def publish_verdict(result: dict[str, Any]) -> None:
    lines = [f"# rag-health verdict: **{result['verdict']}**", "", "| stage | status |", "|---|---|"]
    lines += [f"| {stage} | {status} |" for stage, status in result["stages"].items()]
    quality = result.get("quality") or {}
    if "score" in quality:
        worst = ", ".join(f"`{d['doc_id']}` {d['score']:.2f}" for d in quality.get("documents", [])[:5])
        lines += ["", f"Quality score **{quality['score']:.3f}**; lowest documents: {worst}"]
    if result.get("findings"):
        lines += ["", "## Findings"] + [f"- {f}" for f in result["findings"][:50]]
    create_markdown_artifact(key="health-verdict", markdown="\n".join(lines))


def emit_failure(result: dict[str, Any], event: str = "rag-health.check.failed") -> None:
    from prefect.events import emit_event

    emit_event(
        event=event,
        resource={"prefect.resource.id": f"rag-health.collection.{result.get('collection', 'unknown')}"},
        payload={"verdict": result["verdict"], "stages": result["stages"], "findings": result.get("findings", [])[:20]},
    )
