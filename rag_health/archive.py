"""The run archive: every key a run writes and every key of the history (snapshots, the baseline pointer, per-probe
ranks, the neighbour sample, results, tables, reports and the report index) is laid out here and nowhere else.

One store holds the history: the bucket when one is set, the state directory otherwise; a run never switches
between the two. With a bucket, the files a person opens right after a run (the report, the result, the tables)
are also copied under the state directory, whose paths the JSON contract reports; nothing is read back from
those copies.

The report index is never rewritten from a read of itself: each run writes one small entry object, and the index
is rebuilt from a listing of the entries, so two workers finishing at once cannot drop each other's entry.
"""

from __future__ import annotations

import html
import io
import json
import re
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from rag_health.artifacts import ArtifactStore, LocalArtifactStore, s3_reason
from rag_health.settings import ConfigError

JSON = "application/json"
CSV = "text/csv"
HTML = "text/html; charset=utf-8"

BASELINE = "baseline.json"
LATEST = "runs/latest.json"
REPORT_INDEX_JSON = "reports/index.json"
REPORT_INDEX_HTML = "reports/index.html"
REPORT_ENTRIES = "reports/entries/"


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def checked_run_id(run_id: str) -> str:
    """Run ids become keys and paths: one safe path segment only (never `..`, a slash or a control character)."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ConfigError(f"{run_id!r} is not a run id (letters, digits, '.', '_' and '-')")
    return run_id


def run_key(run_id: str, name: str) -> str:
    return f"runs/{checked_run_id(run_id)}/{name}"


def report_key(run_id: str) -> str:
    return f"reports/{checked_run_id(run_id)}/drift-report.html"


class RunArchive:
    def __init__(self, store: ArtifactStore, local: LocalArtifactStore | None = None):
        self.store = store
        # Copies of what a person opens after a run, when the history lives elsewhere (a bucket).
        self.local = local if local is not None and local is not store else None

    def check_store(self) -> None:
        """A bucket that does not exist or cannot be reached is a configuration error, found before any work."""
        try:
            self.store.list(LATEST)
        except Exception as exc:
            raise ConfigError(f"run archive {self.store.uri('')} is not usable: {s3_reason(exc)}") from None

    @property
    def remote(self) -> bool:
        return self.local is not None

    def _put_json(self, key: str, value: Any) -> str:
        return self.store.put(key, json.dumps(value).encode(), JSON)

    def _get_json(self, key: str) -> Any:
        data = self.store.get(key)
        return json.loads(data) if data else None

    def _put_with_copy(self, key: str, data: bytes, content_type: str) -> tuple[str, str]:
        """Store in the history and, when that is a bucket, a local copy. Returns (history URI, local path)."""
        uri = self.store.put(key, data, content_type)
        return uri, (self.local.put(key, data, content_type) if self.local is not None else uri)

    # The run's own files.
    def save_result(self, run_id: str, result: dict[str, Any]) -> str:
        """The run's JSON result; returns the local path."""
        data = json.dumps(result, indent=1, default=str).encode()
        return self._put_with_copy(run_key(run_id, "result.json"), data, JSON)[1]

    def save_table(self, run_id: str, name: str, frame: pd.DataFrame) -> str:
        """A per-run CSV (chunks.csv, quality-findings.csv); returns the local path."""
        return self._put_with_copy(run_key(run_id, name), frame.to_csv(index=False).encode(), CSV)[1]

    def save_quality_sample(self, run_id: str, snapshot: dict[str, Any]) -> str:
        return self._put_json(run_key(run_id, "quality.json"), snapshot)

    def quality_sample(self, run_id: str | None) -> dict[str, Any] | None:
        return self._get_json(run_key(run_id, "quality.json")) if run_id else None

    def save_probe_ranks(self, run_id: str, ranks: dict[str, Any]) -> str:
        return self._put_json(run_key(run_id, "probes.json"), ranks)

    def probe_ranks(self, run_id: str | None) -> dict[str, Any] | None:
        return self._get_json(run_key(run_id, "probes.json")) if run_id else None

    def save_snapshot(self, run_id: str, frame: pd.DataFrame) -> str:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return self.store.put(run_key(run_id, "snapshot.parquet"), buf.getvalue())

    def snapshot(self, run_id: str) -> pd.DataFrame | None:
        data = self.store.get(run_key(run_id, "snapshot.parquet"))
        return pd.read_parquet(io.BytesIO(data)) if data is not None else None

    # The history: the baseline pointer and the latest run.
    def baseline_run(self) -> str | None:
        data = self._get_json(BASELINE)
        return data["run_id"] if data else None

    def point_baseline(self, run_id: str) -> None:
        self._put_json(BASELINE, {"run_id": run_id,
                                  "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def promote(self, run_id: str) -> None:
        if self.store.get(run_key(run_id, "snapshot.parquet")) is None:
            raise ConfigError(f"run {run_id} has no stored snapshot to promote")
        self.point_baseline(run_id)

    def latest_run(self) -> str | None:
        data = self._get_json(LATEST)
        return data["run_id"] if data else None

    def record_latest(self, run_id: str) -> None:
        self._put_json(LATEST, {"run_id": run_id})

    def uri(self, key: str) -> str:
        return self.store.uri(key)

    # Reports and their index.
    def publish_report(self, run_id: str, html_text: str, entry: dict[str, Any]) -> tuple[str, str]:
        """Write the run's report and its index entry, then rebuild the index from the entries.
        Returns (the report's URI in the history, its local path)."""
        uri, local = self._put_with_copy(report_key(run_id), html_text.encode("utf-8"), HTML)
        self._migrate_index()
        self._put_json(f"{REPORT_ENTRIES}{checked_run_id(run_id)}.json",
                       {**entry, "run_id": run_id, "href": f"{run_id}/drift-report.html"})
        written: list[str] = []
        # A worker that listed before another one's entry arrived would write an index without it: list again
        # after writing, and write again until the index holds every entry listed (bounded; the next run heals).
        for _ in range(3):
            entries = self.report_entries()
            if [e["run_id"] for e in entries] == written:
                break
            self.store.put(REPORT_INDEX_JSON, json.dumps(entries, indent=1).encode(), JSON)
            self.store.put(REPORT_INDEX_HTML, report_index_html(entries).encode("utf-8"), HTML)
            written = [e["run_id"] for e in entries]
        return uri, local

    def report_entries(self) -> list[dict[str, Any]]:
        """Every run's index entry, oldest first."""
        entries = []
        for key in self.store.list(REPORT_ENTRIES):
            data = self.store.get(key)
            if data:
                entries.append(json.loads(data))
        return sorted(entries, key=lambda e: (e.get("created_at", ""), e["run_id"]))

    def _migrate_index(self) -> None:
        """An index written before entry objects existed: its rows become entries, once."""
        if self.store.list(REPORT_ENTRIES):
            return
        for entry in self._get_json(REPORT_INDEX_JSON) or []:
            if entry.get("run_id"):
                self._put_json(f"{REPORT_ENTRIES}{entry['run_id']}.json", entry)


def report_index_html(entries: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(e['run_id'])}</td><td>{html.escape(e['created_at'])}</td>"
        f"<td>{html.escape(str(e.get('baseline_run')))}</td><td>{html.escape(e.get('verdict', ''))}</td>"
        f"<td>{e.get('embedding_drift_score', '')}</td><td><a href='{html.escape(e['href'])}'>report</a></td></tr>"
        for e in sorted(entries, key=lambda e: e["created_at"], reverse=True)
    )
    return ("<!doctype html><html><head><meta charset='utf-8'><title>rag-health drift reports</title></head>"
            "<body style='font-family:sans-serif'><h1>rag-health drift reports</h1><table border='1' "
            "cellpadding='4'><tr><th>run</th><th>created</th><th>baseline</th><th>verdict</th>"
            f"<th>embedding drift</th><th></th></tr>{rows}</table></body></html>")
