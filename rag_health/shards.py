"""Ingest shards added up: the results of N shard runs (each a JSON object of the contract's ingest shape) become
the one IngestResult a single worker would have reported; a change held back before any shard ran becomes a result
that says so."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag_health.ingest import IngestError, IngestResult, MassChange

_SUMMED = ("documents", "unchanged", "read", "chunks_embedded", "chunks_reused", "metadata_upgraded",
           "chunks_deleted")


def held_result(source: str, change: MassChange) -> IngestResult:
    """Nothing written: the coordinator held this change back before starting any shard."""
    return IngestResult(source=source, documents=change.listed, added=(), changed=(), removed=(), unchanged=0,
                        read=0, chunks_embedded=0, chunks_reused=0, metadata_upgraded=0, chunks_deleted=0,
                        skipped=(), errors=(), seconds=0.0, held=change)


def _held(part: dict[str, Any]) -> MassChange | None:
    held = part.get("held")
    if not held:
        return None
    return MassChange(tuple(held.get("removed_ids") or ()), tuple(held.get("replaced_ids") or ()),
                      int(held.get("indexed") or 0), float(held.get("fraction") or 0.0),
                      float(held.get("threshold") or 0.0), int(held.get("listed") or 0))


def merge(parts: Sequence[dict[str, Any]], seconds: float) -> IngestResult:
    """The shards' results as one: counts summed, ids in order, errors and skipped files of every shard."""
    ids = {k: tuple(sorted(d for p in parts for d in p.get(f"{k}_ids") or ())) for k in ("added", "changed",
                                                                                         "removed")}
    # dict.fromkeys: once each (every shard reports a folder it cannot list)
    errors = tuple(dict.fromkeys(IngestError(e["doc_id"], e["reason"]) for p in parts for e in p.get("errors") or ()))
    skipped = tuple(dict.fromkeys(IngestError(e["doc_id"], e["reason"]) for p in parts
                                  for e in p.get("skipped") or ()))
    helds = [h for h in (_held(p) for p in parts) if h is not None]
    held = None
    wrote = any(p.get(f"{k}_ids") for p in parts for k in ("added", "changed", "removed"))
    if helds and wrote:  # some shards held their part back, the others wrote theirs: say which, not "nothing"
        errors += tuple(IngestError(f"shard {'/'.join(map(str, p.get('shard') or ()))}",
                                    f"this shard {h.sentence().replace('nothing was written', 'it wrote nothing')}"
                                    "; the other shards wrote their part")
                        for p, h in ((p, _held(p)) for p in parts) if h is not None)
        helds = []
    if helds:
        removed = tuple(sorted({d for h in helds for d in h.removed}))
        replaced = tuple(sorted({d for h in helds for d in h.replaced}))
        held = MassChange.of(removed, replaced, max(h.indexed for h in helds), helds[0].threshold,
                             max(h.listed for h in helds))
    return IngestResult(source=str(parts[0].get("source", "")) if parts else "",
                        **{k: sum(int(p.get(k) or 0) for p in parts) for k in _SUMMED},
                        added=ids["added"], changed=ids["changed"], removed=ids["removed"], skipped=skipped,
                        errors=errors, seconds=round(seconds, 3), held=held,
                        chunking=str(parts[0].get("chunking", "")) if parts else "", rechunked=_rechunked(parts))


def _rechunked(parts: Sequence[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in parts:
        for old, n in (p.get("rechunked") or {}).items():
            out[old] = out.get(old, 0) + int(n)
    return out
