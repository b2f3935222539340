"""The shared benchmark corpora as rag-health sources: read from ../shared/corpora, written only to temp dirs."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "corpora"
SCIFACT = SHARED / "scifact"
PROMETHEUS = SHARED / "prometheus-runbooks"


def scifact_folder(dest: Path, limit: int | None = None) -> Path:
    """One Markdown file per abstract, `<id>.md`, its title in the front-matter (embedded with the text, as MTEB
    embeds title + text). Ids stay the corpus ids, so qrels map straight onto doc ids."""
    dest.mkdir(parents=True, exist_ok=True)
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as src:
        for n, line in enumerate(src):
            if limit is not None and n >= limit:
                break
            doc = json.loads(line)
            title = doc.get("title") or doc["_id"]
            (dest / f"{doc['_id']}.md").write_text(
                f"---\ntitle: {json.dumps(title)}\n---\n\n{doc['text'].strip()}\n", encoding="utf-8")
    return dest


def scifact_probes(out: Path, split: str = "test", only_docs: set[str] | None = None) -> int:
    """The split's queries as a rag-health probe file; relevance from qrels (graded where given)."""
    relevant: dict[str, dict[str, int]] = defaultdict(dict)
    with (SCIFACT / "qrels" / f"{split}.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            relevant[row["query-id"]][f"{row['corpus-id']}.md"] = int(row["score"])
    written = 0
    with (SCIFACT / f"queries_{split}.jsonl").open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for line in src:
            q = json.loads(line)
            docs = relevant.get(q["_id"])
            if not docs or (only_docs is not None and not set(docs) & only_docs):
                continue
            dst.write(json.dumps({"id": q["_id"], "query": q["text"], "relevant": sorted(docs),
                                  "grades": docs}) + "\n")
            written += 1
    return written
