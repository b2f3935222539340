"""The run archive: every key a run writes and every key of the history (snapshots, the baseline pointer, per-probe
ranks, the neighbour sample, results, tables, reports and the report index) is laid out here and nowhere else.

One store holds the history: the bucket when one is set, the state directory otherwise; a run never switches
between the two. With a bucket, the files a person opens right after a run (the report, the result, the tables)
are also copied under the state directory, whose paths the JSON contract reports; nothing is read back from
those copies.

The report index is never rewritten from a read of itself: each run writes one small entry object, and the index
is rebuilt from a listing of the entries, so two workers finishing at once cannot drop each other's entry.

Publishing to a bucket is two-phase: a run's own objects first (immutable, long-cached), then the moving pointers
(the index entry and index, `runs/latest.json`, `baseline.json`; `no-cache`) in commit(), after every object of
the run is up. Every call is retried with backoff within `publish_deadline` (time spent failing, all calls
together); after that the store counts as unreachable for the rest of the run: reads answer "nothing" (the stages
then compare with no baseline and say so) and writes wait in an outbox under the state directory
(`outbox/<run id>/<key>`), which the next run uploads before anything of its own.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from checks.pii import redact, scrub
from rag_health.artifacts import AlreadyExists, ArtifactStore, LocalArtifactStore
from rag_health.errors import S3_CONFIG, ConfigError, Unreachable, s3_error_code, s3_reason

if TYPE_CHECKING:  # pandas is imported where a table is read: it costs a second at start-up
    import pandas as pd

JSON = "application/json"
CSV = "text/csv; charset=utf-8"
HTML = "text/html; charset=utf-8"
PARQUET = "application/vnd.apache.parquet"
NO_CACHE = "no-cache"  # moving pointers: a cache must ask again every time
IMMUTABLE = "max-age=31536000, immutable"  # a run's own objects never change once written

BASELINE = "baseline.json"
LATEST = "runs/latest.json"
REPORT_INDEX_JSON = "reports/index.json"
REPORT_INDEX_HTML = "reports/index.html"
REPORT_ENTRIES = "reports/entries/"
POINTERS = (BASELINE, LATEST, REPORT_INDEX_JSON, REPORT_INDEX_HTML)
OUTBOX = "outbox"  # under the state directory: <run id>/<key>

# Errors that say the bucket itself is wrong (missing, not ours): configuration, not an outage.

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
T = TypeVar("T")


def checked_run_id(run_id: str) -> str:
    """Run ids become keys and paths: one safe path segment only (never `..`, a slash or a control character)."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ConfigError(f"{run_id!r} is not a run id (letters, digits, '.', '_' and '-')")
    return run_id


def run_key(run_id: str, name: str) -> str:
    return f"runs/{checked_run_id(run_id)}/{name}"


def _shard_name(shard: str) -> str:
    i, _, n = shard.partition("/")
    return f"ingest-shard-{int(i)}-of-{int(n)}.json"


RESULT, CHUNK_TABLE, FINDINGS_TABLE = "result.json", "chunks.csv", "quality-findings.csv"  # files of runs/<id>/
FRONT_PAGE, DRIFT_PAGE = "index.html", "drift-report.html"  # pages of reports/<id>/


def result_key(run_id: str) -> str:
    return run_key(run_id, RESULT)


def front_page_links(run_id: str) -> dict[str, str]:
    """The front page's links to the run's other files, relative to reports/<run id>/index.html, so they work
    wherever the archive is served from (a bucket, a base URL, the state directory)."""
    return {"evidently": DRIFT_PAGE, "history": f"../{FRONT_PAGE}",
            "chunks_csv": f"../../{run_key(run_id, CHUNK_TABLE)}",
            "findings_csv": f"../../{run_key(run_id, FINDINGS_TABLE)}"}


def previous_front_page_link(run_id: str) -> str:
    return f"../{checked_run_id(run_id)}/{FRONT_PAGE}"


def report_key(run_id: str) -> str:
    return f"reports/{checked_run_id(run_id)}/{DRIFT_PAGE}"


def front_page_key(run_id: str) -> str:
    return f"reports/{checked_run_id(run_id)}/{FRONT_PAGE}"


def entry_key(run_id: str) -> str:
    return f"{REPORT_ENTRIES}{checked_run_id(run_id)}.json"


def content_type(key: str) -> str:
    suffix = key.rsplit(".", 1)[-1]
    return {"html": HTML, "json": JSON, "csv": CSV, "parquet": PARQUET}.get(suffix, "application/octet-stream")


def cache_control(key: str) -> str:
    return NO_CACHE if key in POINTERS or key.startswith("latest/") else IMMUTABLE


def dumps(value: Any, **kwargs: Any) -> str:
    """JSON as every file and output writes it: PII and secrets redacted in every string, and never a bare NaN or
    Infinity (not JSON; a script reading it fails or, worse, compares with it): such a figure is null."""
    return json.dumps(_finite(scrub(value)), allow_nan=False, default=str, **kwargs)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def safe_csv(frame: pd.DataFrame) -> str:
    """A CSV a spreadsheet opens safely: text cells redacted, and a cell that starts like a formula (=, +, -, @, a
    tab or a carriage return; a file name or a boilerplate line from a document) prefixed with a quote, so it is
    shown as text instead of being evaluated."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(lambda v: _cell(v) if isinstance(v, str) else v)
    return out.to_csv(index=False)


def _cell(value: str) -> str:
    value = redact(value)
    return "'" + value if value.startswith(_FORMULA) else value


class RunArchive:
    def __init__(self, store: ArtifactStore, local: LocalArtifactStore | None = None, *,
                 outbox: LocalArtifactStore | None = None, deadline: float = 60.0, base_url: str | None = None,
                 expiry_s: float = 7 * 86400, attempts: int = 3, backoff: float = 0.5):
        self.store = store
        # Copies of what a person opens after a run, when the history lives elsewhere (a bucket).
        self.local = local if local is not None and local is not store else None
        self.outbox = outbox if outbox is not None or self.local is None else LocalArtifactStore(
            Path(self.local.root) / OUTBOX)
        self.deadline, self.base_url, self.expiry_s = deadline, base_url, expiry_s
        self.attempts, self.backoff = attempts, backoff
        self.unreachable: str | None = None  # why the store was given up on in this run
        self.flushed: list[str] = []  # outbox keys (run id/key) uploaded at the start of this run
        self._spent = 0.0  # seconds spent on failed calls and backoff, all calls together
        self._flushing_done = False
        self._pending: dict[str, dict[str, Any]] = {}  # per run: what commit() writes

    def check_store(self) -> None:
        """A bucket that does not exist (or is not ours) is a configuration error, found before any work. An
        unreachable server is not: the run goes on and its files wait in the outbox."""
        try:
            self.store.list(LATEST)
        except Exception as exc:
            if not self.remote or s3_error_code(exc) in S3_CONFIG:
                raise ConfigError(f"run archive {self.store.uri('')} is not usable: {s3_reason(exc)}") from None
            try:  # an outage, perhaps a short one: retried within the deadline, then the outbox takes the run
                self._call("list the run archive", lambda: self.store.list(LATEST))
            except Unreachable:
                pass

    @property
    def remote(self) -> bool:
        return self.local is not None

    # Every call to a remote store: bounded retries with backoff, within the deadline; the outbox first.
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        if not self.remote:
            return fn()
        if not self._flushing_done:
            self._flushing_done = True
            self.flush_outbox()
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            if self.unreachable:
                raise Unreachable(self.unreachable)
            started = time.monotonic()
            try:
                return fn()
            except AlreadyExists:
                raise
            except Exception as exc:
                self._spent += time.monotonic() - started
                if attempt == self.attempts or self._spent + delay > self.deadline:
                    self.unreachable = f"{what} failed: {s3_reason(exc)}"
                    raise Unreachable(self.unreachable) from None
                time.sleep(delay)
                self._spent += delay
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, key: str) -> bytes | None:
        """Bytes under key; None when absent or when the store is unreachable (the run goes on without them)."""
        try:
            return self._call(f"get {key}", lambda: self.store.get(key))
        except Unreachable:
            return None

    def _write(self, run_id: str | None, key: str, data: bytes, *, copy: bool = False,
               create_only: bool = False) -> tuple[str | None, str | None]:
        """Write key to the history (and a local copy when asked). Returns (history URI, or None when the object
        waits in the outbox; local path of the copy, or the history path when the history is local)."""
        ctype = content_type(key)
        local = self.local.put(key, data, ctype) if copy and self.local is not None else None
        try:
            uri = self._call(f"put {key}", lambda: self.store.put(key, data, ctype, cache_control=cache_control(key),
                                                                  create_only=create_only))
        except Unreachable:
            if self.outbox is None or run_id is None:
                raise
            self.outbox.put(f"{checked_run_id(run_id)}/{key}", data)
            return None, local
        return uri, local if self.remote else uri

    def _put_json(self, key: str, value: Any, run_id: str | None = None) -> str | None:
        return self._write(run_id, key, dumps(value).encode())[0]

    def _get_json(self, key: str) -> Any:
        data = self._read(key)
        return json.loads(data) if data else None

    # The run's own files.
    def save_result(self, run_id: str, result: dict[str, Any]) -> str:
        """The run's JSON result, the audit record: never replaced once written. Returns the local path."""
        data = dumps(result, indent=1).encode()
        try:
            return self._write(run_id, result_key(run_id), data, copy=True, create_only=True)[1] or ""
        except AlreadyExists:
            raise ConfigError(f"{result_key(run_id)} already exists in the run archive: a run's "
                              "result is never overwritten") from None

    def save_table(self, run_id: str, name: str, frame: pd.DataFrame) -> str:
        """A per-run CSV; returns the local path. Callers use save_chunk_table / save_findings_table."""
        return self._write(run_id, run_key(run_id, name), safe_csv(frame).encode(), copy=True)[1] or ""

    def save_chunk_table(self, run_id: str, frame: pd.DataFrame) -> str:
        """Every chunk of the run with its figures and score (runs/<id>/chunks.csv); returns the local path."""
        return self.save_table(run_id, CHUNK_TABLE, frame)

    def save_findings_table(self, run_id: str, frame: pd.DataFrame) -> str:
        """Every quality finding of the run (runs/<id>/quality-findings.csv); returns the local path."""
        return self.save_table(run_id, FINDINGS_TABLE, frame)

    def save_page(self, run_id: str, key: str, html_text: str) -> str:
        """A page of the run under reports/<run id>/ (the front page): history and local copy; the local path."""
        if not key.startswith(f"reports/{checked_run_id(run_id)}/"):
            raise ValueError(f"{key} is not a page of run {run_id}")
        return self._write(run_id, key, html_text.encode("utf-8"), copy=True)[1] or ""

    def save_quality_sample(self, run_id: str, snapshot: dict[str, Any]) -> str | None:
        return self._put_json(run_key(run_id, "quality.json"), snapshot, run_id)

    def quality_sample(self, run_id: str | None) -> dict[str, Any] | None:
        return self._get_json(run_key(run_id, "quality.json")) if run_id else None

    def save_probe_ranks(self, run_id: str, ranks: dict[str, Any]) -> str | None:
        return self._put_json(run_key(run_id, "probes.json"), ranks, run_id)

    def probe_ranks(self, run_id: str | None) -> dict[str, Any] | None:
        return self._get_json(run_key(run_id, "probes.json")) if run_id else None

    def save_shard_result(self, run_id: str, shard: str, result: dict[str, Any]) -> str | None:
        """An ingest shard's result ("i/n"), for its coordinator on another worker."""
        return self._put_json(run_key(run_id, _shard_name(shard)), result, run_id)

    def shard_result(self, run_id: str, shard: str) -> dict[str, Any] | None:
        return self._get_json(run_key(run_id, _shard_name(shard)))

    def save_approval(self, run_id: str, approval: dict[str, Any]) -> str | None:
        """The documents a person approved for a sharded run: its shards read them here (a flow-run parameter
        would carry every id into the Prefect database once per shard)."""
        return self._put_json(run_key(run_id, "approval.json"), approval, run_id)

    def approval(self, run_id: str) -> dict[str, Any] | None:
        return self._get_json(run_key(run_id, "approval.json"))

    def save_snapshot(self, run_id: str, frame: pd.DataFrame) -> str | None:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return self._write(run_id, run_key(run_id, "snapshot.parquet"), buf.getvalue())[0]

    def snapshot(self, run_id: str) -> pd.DataFrame | None:
        data = self._read(run_key(run_id, "snapshot.parquet"))
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data)) if data is not None else None

    # The history: the baseline pointer and the latest run.
    def baseline_run(self) -> str | None:
        data = self._get_json(BASELINE)
        return data["run_id"] if data else None

    def baseline_pointer(self) -> dict[str, Any] | None:
        return self._get_json(BASELINE)

    def point_baseline(self, run_id: str) -> None:
        self._put_json(BASELINE, {"run_id": run_id,
                                  "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, run_id)

    def promote(self, run_id: str) -> None:
        if self._read(run_key(run_id, "snapshot.parquet")) is None:
            raise ConfigError(f"run {run_id} has no stored snapshot to promote")
        self.point_baseline(run_id)

    def latest_run(self) -> str | None:
        data = self._get_json(LATEST)
        return data["run_id"] if data else None

    def record_latest(self, run_id: str) -> None:
        self._put_json(LATEST, {"run_id": run_id}, run_id)

    def uri(self, key: str) -> str:
        return self.store.uri(key)

    # Two-phase publishing: the pointers of a run move in commit(), after its objects.
    def defer_pointers(self, run_id: str, baseline: bool = False) -> None:
        """What commit(run_id) will write: the report index entry (from publish_report), the baseline pointer
        (when promoted) and runs/latest.json."""
        pending = self._pending.setdefault(run_id, {"entry": None, "baseline": False})
        pending["baseline"] = pending["baseline"] or baseline

    def pointer_keys(self, run_id: str) -> list[str]:
        pending = self._pending.get(run_id)
        if pending is None:
            return []
        return ([entry_key(run_id)] if pending["entry"] is not None else []) + \
            ([BASELINE] if pending["baseline"] else []) + [LATEST]

    def commit(self, run_id: str) -> None:
        """Move the run's pointers: its index entry and the index rebuilt, then the baseline and the latest run."""
        pending = self._pending.pop(run_id, None)
        if pending is None:
            return
        if pending["entry"] is not None:
            self._put_json(entry_key(run_id), pending["entry"], run_id)
            self._rebuild_index()
        if pending["baseline"]:
            self.point_baseline(run_id)
        self.record_latest(run_id)

    def waiting(self, run_id: str, still_to_write: Iterable[str] = ()) -> list[str]:
        """The run's keys in the outbox, plus those it has still to write when the store is unreachable."""
        if self.outbox is None:
            return []
        prefix = f"{checked_run_id(run_id)}/"
        keys = [k[len(prefix):] for k in self.outbox.list(prefix)]
        return keys + [k for k in still_to_write if self.unreachable and k not in keys]

    def flush_outbox(self) -> list[str]:
        """Upload what earlier runs left in the outbox, oldest run first: their objects, then the index, then their
        pointers. Each file leaves the outbox once uploaded; what fails stays for the next run."""
        if self.outbox is None or not self.outbox.list(""):
            return []
        self._flushing_done = True
        keys = self.outbox.list("")
        objects = [k for k in keys if k.split("/", 1)[1] not in POINTERS]
        pointers = [k for k in keys if k.split("/", 1)[1] in POINTERS]
        try:
            for item in objects + pointers:
                self._upload_waiting(item)
            if any(k.split("/", 1)[1].startswith(REPORT_ENTRIES) for k in objects):
                self._rebuild_index()
        except Unreachable:
            pass
        return self.flushed

    def _superseded(self, key: str, data: bytes) -> bool:
        """A waiting latest or baseline pointer that the bucket has moved past since (another worker's newer run
        or promotion) must not move it back."""
        if key not in (LATEST, BASELINE):
            return False
        current = self._call(f"get {key}", lambda: self.store.get(key))
        if not current:
            return False
        now, waiting = json.loads(current), json.loads(data)
        field = "promoted_at" if key == BASELINE else "run_id"
        return str(now.get(field) or "") > str(waiting.get(field) or "")

    def _upload_waiting(self, item: str) -> None:
        key = item.split("/", 1)[1]
        data = self.outbox.get(item)
        if data is not None and self._superseded(key, data):
            data = None  # dropped from the outbox below, never uploaded
        if data is not None:
            try:
                self._call(f"put {key}", lambda: self.store.put(
                    key, data, content_type(key), cache_control=cache_control(key),
                    create_only=key.endswith("/result.json")))
            except AlreadyExists:
                pass  # uploaded before the outbox file could be removed: the stored one stands
        (Path(self.outbox.root) / item).unlink(missing_ok=True)
        self.flushed.append(item)

    # Reports and their index.
    def publish_report(self, run_id: str, html_text: str, entry: dict[str, Any],
                       commit: bool = True) -> tuple[str | None, str]:
        """Write the run's report; its index entry and the index follow in commit() (now, unless commit=False).
        Returns (the report's URI in the history, None while it waits in the outbox; its local path)."""
        uri, local = self._write(run_id, report_key(run_id), html_text.encode("utf-8"), copy=True)
        self._migrate_index()
        entry = {**entry, "run_id": run_id, "href": f"{run_id}/drift-report.html"}
        if commit:
            self._put_json(entry_key(run_id), entry, run_id)
            self._rebuild_index()
        else:
            self._pending.setdefault(run_id, {"entry": None, "baseline": False})["entry"] = entry
        return uri, local or ""

    def _rebuild_index(self) -> None:
        written: list[str] = []
        # A worker that listed before another one's entry arrived would write an index without it: list again
        # after writing, and write again until the index holds every entry listed (bounded; the next run heals).
        try:
            for _ in range(3):
                entries = self.report_entries()
                if [e["run_id"] for e in entries] == written:
                    break
                self._call("put index", lambda entries=entries: self._put_index(entries))
                written = [e["run_id"] for e in entries]
        except Unreachable:
            pass  # rebuilt from the entries by the run that uploads the outbox

    def _put_index(self, entries: list[dict[str, Any]]) -> None:
        from rag_health.report_pages import history_page

        newest_first = list(reversed(entries))
        self.store.put(REPORT_INDEX_JSON, dumps(newest_first, indent=1).encode(), JSON, cache_control=NO_CACHE)
        self.store.put(REPORT_INDEX_HTML, history_page(newest_first).encode("utf-8"), HTML, cache_control=NO_CACHE)

    def amend_entry(self, run_id: str, fields: dict[str, Any]) -> None:
        """Add what only the finished run knows (hit@5 per set, quality score, stage statuses) to its index entry,
        before commit() writes it."""
        pending = self._pending.get(run_id)
        if pending is not None and pending.get("entry") is not None:
            pending["entry"] = {**pending["entry"], **fields}

    def report_entries(self) -> list[dict[str, Any]]:
        """Every run's index entry, oldest first."""
        entries = []
        for key in self._call("list entries", lambda: self.store.list(REPORT_ENTRIES)):
            data = self._call(f"get {key}", lambda key=key: self.store.get(key))
            if data:
                entries.append(json.loads(data))
        return sorted(entries, key=lambda e: (e.get("created_at", ""), e["run_id"]))

    def _migrate_index(self) -> None:
        """An index written before entry objects existed: its rows become entries, once."""
        try:
            if self._call("list entries", lambda: self.store.list(REPORT_ENTRIES)):
                return
        except Unreachable:
            return
        for entry in self._get_json(REPORT_INDEX_JSON) or []:
            if entry.get("run_id"):
                self._put_json(entry_key(entry["run_id"]), entry)

    # Links people open, and reading the archive back (runs list / show, baseline list).
    def link(self, key: str, run_id: str | None = None) -> str:
        """Where a person opens key: report_base_url + key when set, else a presigned HTTPS GET URL with a bucket,
        else the local file. A key still in the outbox (run_id given) is never linked remotely."""
        if run_id is not None and key in self.waiting(run_id):
            return self.local.uri(key) if self.local is not None else self.store.uri(key)
        if self.base_url:
            return f"{self.base_url.rstrip('/')}/{key}"
        if self.remote and hasattr(self.store, "presign"):
            return self.store.presign(key, int(self.expiry_s))
        return (self.local or self.store).uri(key)

    def presign(self, key: str) -> str | None:
        """A presigned HTTPS GET URL of key in the bucket (expiry from settings); None without a bucket."""
        return self.store.presign(key, int(self.expiry_s)) if self.remote and hasattr(self.store, "presign") \
            else None

    def _run_keys(self, name: str) -> list[str]:
        """Run ids holding runs/<id>/<name>, newest first (run ids start with their UTC time)."""
        keys = self._call("list runs", lambda: self.store.list("runs/"))
        return sorted({k.split("/")[1] for k in keys if k.count("/") == 2 and k.endswith(f"/{name}")},
                      reverse=True)

    def run_ids(self) -> list[str]:
        """Every run with a stored result, newest first."""
        return self._run_keys(RESULT)

    def snapshot_runs(self) -> list[str]:
        """Every run with a stored drift snapshot (a baseline candidate), newest first."""
        return self._run_keys("snapshot.parquet")

    def result(self, run_id: str) -> dict[str, Any] | None:
        key = result_key(run_id)
        data = self._call(f"get {key}", lambda: self.store.get(key))
        return json.loads(data) if data else None
