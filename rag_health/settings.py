"""One settings object for rag-health: environment variables with the RAG_HEALTH_ prefix, overridable per call."""

from __future__ import annotations

import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rag_health.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATASET = REPO_ROOT / "datasets"
SAMPLE_DOCS = SAMPLE_DATASET / "docs"
SAMPLE_MANIFEST = SAMPLE_DATASET / "manifest.yaml"
SAMPLE_PROBES = SAMPLE_DATASET / "probes" / "golden.jsonl"
SAMPLE_FILTER_PROBES = SAMPLE_DATASET / "probes" / "filters.jsonl"
SAMPLE_RULES = SAMPLE_DATASET / "rules"
SAMPLE_RUNBOOK_URL_PREFIX = "https://runbooks.example-bank.internal/"
SAMPLE_REQUIRED_METADATA = ("classification", "jurisdiction", "product")


# Value constraints, so a typo or NaN in an environment variable is a configuration error naming the field
# instead of a silently disabled guard (NaN compares false with everything).
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Positive = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(gt=0.0, le=3600.0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


SCRATCH_PREFIX = "rag-health-scratch-"  # compare-chunking's throwaway collections (rag_health.runtime)

# Settings only the environment of the process may set (a worker's, a shell's): never a flow parameter or a
# settings override, which whoever may start a deployment can give. Credentials, and the roots that bound what a
# run may read and write.
ENV_ONLY = frozenset({"chroma_auth_token", "chroma_basic_auth", "allowed_roots"})

# Folders no document set or state directory lives in: without RAG_HEALTH_ALLOWED_ROOTS a run refuses them (a
# deployment run with docs=/etc would otherwise index /etc/shadow).
SYSTEM_FOLDERS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/run", "/var/run", "/var/lib", "/var/log",
                  "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/snap")
PRIVATE_HOME_FOLDERS = (".ssh", ".aws", ".gnupg", ".kube", ".docker", ".config", ".netrc", ".pgpass")


class Settings(BaseSettings):
    """Everything a run needs to know. Flow parameters and CLI options override these; they never duplicate them."""

    model_config = SettingsConfigDict(env_prefix="RAG_HEALTH_", extra="ignore")

    docs: str = str(SAMPLE_DOCS)
    manifest: Path | None = None
    probes: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    state_dir: Path = Path(".rag-health")
    # Where documents, manifests, probe and rule files may be read and state written: folders, os.pathsep-separated
    # (environment only). Unset: anywhere but the system folders and private parts of a home (SYSTEM_FOLDERS).
    allowed_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list, exclude=True)
    # Alert-rule coverage: Prometheus rule files or folders, and runbook URL prefixes ("URL" or "URL=FOLDER")
    rules: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    runbook_url_prefix: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Vector store
    chroma_mode: Literal["embedded", "http"] = "embedded"
    chroma_host: str = "127.0.0.1"
    chroma_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    collection: str = "rag-health"
    chroma_ssl: bool = False  # https to the Chroma server
    # A Chroma server's credentials, through chromadb's own auth providers: a token (sent as "Authorization: Bearer"
    # or X-Chroma-Token) or basic auth "user:password". From the environment only: never a flow parameter, never
    # in a dump of the settings (SecretStr, excluded), so they reach no Prefect database, artifact or log.
    chroma_auth_token: SecretStr | None = Field(default=None, exclude=True)
    chroma_auth_header: Literal["Authorization", "X-Chroma-Token"] = "Authorization"
    chroma_basic_auth: SecretStr | None = Field(default=None, exclude=True)

    # Embedding model and chunking
    embed_model: str = "all-MiniLM-L6-v2"
    embed_device: str = "cpu"
    embed_batch_size: Positive = 32
    # "auto" (the default): the backend the collection was built with; for a new collection "onnx" (ONNX Runtime
    # fp32 on the CPU: torch's vectors, a model load of 0.3 s, no torch import), or torch when embed_device is a GPU.
    # "torch" (needed for a GPU), "onnx", or "onnx-int8" (1.4-1.6x torch's throughput; cosine about 0.99 to torch's)
    # choose one. Each backend has its own fingerprint: switching an existing collection (even an emptied one,
    # which keeps its model) needs a new one. ONNX files are exported once (about 10 s; `rag-health
    # prepare-model`) into model_cache_dir.
    embed_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    model_cache_dir: str = ""  # default: the user cache ($RAG_HEALTH_CACHE_DIR, $XDG_CACHE_HOME/rag-health or
    # ~/.cache/rag-health)/models, or <state_dir>/models when that cannot be created
    chunk_size: Positive = 200  # model word-pieces, leaves room under the model's 256 for title and special tokens
    chunk_overlap: Count = 24
    chunk_strategy: Literal["auto", "sentence", "markdown", "whole"] = "auto"  # "sentence": the default before 0.2
    write_batch_chunks: Positive = 512

    # Ingest safety
    remove_deleted: bool = True
    max_delete_fraction: Fraction = 0.5

    # Input limits, per document: one over a limit is skipped with the reason; the rest of the run goes on
    max_document_bytes: Positive = 20_000_000  # bytes read from the source
    max_pdf_pages: Positive = 500
    max_archive_member_bytes: Positive = 10_000_000  # decompressed bytes of one DOCX (zip) member or PDF stream
    max_text_chars: Positive = 2_000_000  # characters of text after parsing
    max_front_matter_bytes: Positive = 16_384  # YAML front-matter (aliases are refused whatever the size)
    max_archive_members: Positive = 2_000  # members of one DOCX (zip); a real one has tens
    # HTML, PDF and DOCX are parsed in a worker process stopped after this long (rag_health.bounded_parse); the
    # document is skipped (or keeps its last good version) and the run goes on
    max_parse_seconds: Annotated[float, Field(gt=0.0, le=86400.0, allow_inf_nan=False)] = 120.0
    read_extensionless: bool = True  # files without an extension are read as Markdown when they look like text

    # Faults: S3 and a Chroma server answer within these or the call fails (per document where it can)
    s3_connect_timeout: Seconds = 5.0  # seconds
    s3_read_timeout: Seconds = 15.0
    s3_max_attempts: Annotated[int, Field(ge=1, le=20)] = 3  # botocore's attempts per call, the first included
    chroma_connect_timeout: Seconds = 5.0
    # Wall-clock bounds on one call, retries included (rag_health.deadlines): timeouts above are per connect and per
    # packet, which an endpoint that trickles bytes or a server that stops answering mid-request never trips
    s3_call_timeout: Seconds = 90.0
    chroma_call_timeout: Seconds = 300.0

    # PII: detected in every chunk (a `pii` finding); with redact_pii, replaced before embedding and storing
    redact_pii: bool = False

    # Freshness
    review_every_days: Positive = 365
    today: date | None = None
    max_overdue_fraction: Fraction = 0.05  # more documents overdue than this is a warn

    # Quality: what counts as a finding, and the share of chunks with a finding that makes the stage warn
    max_overflow_fraction: Fraction = 0.05  # above this share of chunks past the model's window: fail
    max_mid_sentence_fraction: Fraction = 0.5
    min_chunk_words: Count = 12  # fewer words than this is a tiny chunk: too little context to be retrieved well
    near_duplicate_threshold: Fraction = 0.95  # cosine at or above which chunks of two documents are near-duplicates
    boilerplate_min_documents: Positive = 3  # a line is boilerplate when it repeats in at least this many documents
    boilerplate_min_fraction: Fraction = 0.1  # ... and in at least this share of all documents
    required_metadata: Annotated[list[str], NoDecode] = Field(default_factory=list)  # e.g. classification
    max_finding_fraction: dict[str, Fraction] = Field(default_factory=dict)  # per threshold key; see checks.findings
    outlier_z: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 4.0  # robust z-score of a chunk's neighbour similarity below which it is an outlier
    neighbour_sample: Count = 100  # chunks whose top-k neighbours are compared with the baseline run's
    neighbour_k: Positive = 10
    min_neighbour_overlap: Fraction = 0.6  # mean share of baseline neighbour documents still neighbours: warn below
    max_anisotropy_change: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.05  # change in mean random-pair cosine against the baseline: warn above
    max_quality_findings: Count = 5000  # findings listed in the JSON result (all are in the run's CSV)

    # Probes
    probe_top_k: Annotated[int, Field(ge=1, le=1000)] = 10
    probe_chunk_depth: Positive = 60
    hit_at_5_warn: Fraction = 0.8  # per probe set (not the generated one): below warns
    hit_at_5_fail: Fraction = 0.5  # ... below fails
    fail_under: Annotated[list[str], NoDecode] = Field(default_factory=list)  # "[SET:]METRIC=MIN", e.g. hit@5=0.9
    max_regressions: Count = 0  # more probes regressed against the baseline than this fails the run
    regression_rank_drop: Count = 3  # a hit probe that falls more than this many ranks has regressed
    generate_probes: bool = True  # the "generated" set from headings, defined terms and runbook steps
    generated_probes_max: Count = 200
    probe_title_words: Count = 2  # difficulty of generated probes: title words given as context
    probe_keep_ratio: Fraction = 0.5  # ... share of a step's content words kept
    probe_max_verbatim: Positive = 3  # ... longest run of consecutive source words allowed in a query

    # Drift report and publishing
    drift_sample_rows: Positive = 500
    drift_threshold: Fraction = 0.5  # share of chunk statistics drifted above which the drift stage warns
    s3_bucket: str | None = None
    s3_prefix: str = "rag-health"
    # Report links and publishing (with a bucket)
    report_url_expiry_days: Annotated[float, Field(gt=0.0, le=7.0, allow_inf_nan=False)] = 7.0  # SigV4 max 7 days
    report_base_url: str | None = None  # e.g. https://reports.example.com/rag-health: the bucket prefix served there
    s3_sse: Literal["", "AES256", "aws:kms"] = ""  # server-side encryption of every object written
    s3_sse_kms_key_id: str | None = None
    publish_deadline: Seconds = 60.0  # the whole publish gives up within this, then the run's files wait in the outbox

    # Collection lock (rag_health.locks): one writer at a time per collection, held in the bucket or the state dir
    lock_wait_seconds: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 900.0  # then LockBusy; 0: fail at once
    lock_lease_seconds: Seconds = 120.0  # a bucket lease not renewed for this long (holder gone) may be taken over
    # Approval gate (a re-ingest over max_delete_fraction pauses for a person, in a Prefect deployment run)
    approval_timeout_seconds: Annotated[float, Field(gt=0.0, le=7 * 86400.0, allow_inf_nan=False)] = 28800.0
    approval_poll_seconds: Annotated[float, Field(ge=1.0, le=300.0, allow_inf_nan=False)] = 10.0
    # Ingest shards (shards=N in the reingest deployment): how long the coordinator waits for its shard runs
    shard_timeout_seconds: Annotated[float, Field(gt=0.0, le=7 * 86400.0, allow_inf_nan=False)] = 21600.0
    # Alerts: the Prefect notification block the shipped automations send to, "BLOCK-TYPE-SLUG/BLOCK-NAME"
    # (e.g. "slack-webhook/ops-alerts"); read by `rag-health automations apply` only
    notify_block: str | None = None

    @field_validator("runbook_url_prefix", "fail_under", "required_metadata", mode="before")
    @classmethod
    def _split_commas(cls, value):
        """The environment form is comma-separated (URLs and thresholds hold colons), or a JSON list."""
        if isinstance(value, str):
            return json.loads(value) if value.lstrip().startswith("[") else [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})")
        if self.hit_at_5_fail > self.hit_at_5_warn:
            raise ValueError(f"hit_at_5_fail ({self.hit_at_5_fail}) must not be above hit_at_5_warn ({self.hit_at_5_warn})")
        for name, path in self._local_paths():
            refused = self.refused_path(path)
            if refused:
                raise ValueError(f"{name} (RAG_HEALTH_{name.upper()}): {path} {refused}")
        return self

    def _local_paths(self) -> list[tuple[str, Path]]:
        paths = [("docs", Path(self.docs))] if not self.docs.startswith("s3://") else []
        paths += [("state_dir", self.state_dir)]
        paths += [("manifest", self.manifest)] if self.manifest else []
        paths += [("probes", p) for p in self.probes] + [("rules", p) for p in self.rules]
        # Set explicitly, the model cache (written) and a model folder (read) are paths like the others; the
        # default cache (the user's) is the worker's own.
        paths += [("model_cache_dir", Path(self.model_cache_dir))] if self.model_cache_dir else []
        paths += [("embed_model", Path(self.embed_model))] if Path(self.embed_model).expanduser().is_dir() else []
        return paths

    def refused_path(self, path: Path) -> str | None:
        """Why a run may not read or write under `path` (its real path, symlinks resolved): outside
        RAG_HEALTH_ALLOWED_ROOTS when they are set, else a system folder or a private part of a home."""
        real = Path(os.path.realpath(Path(path).expanduser()))
        if self.allowed_roots:
            roots = [Path(os.path.realpath(Path(r).expanduser())) for r in self.allowed_roots]
            if not any(real == r or r in real.parents for r in roots):
                return (f"is outside the allowed roots (RAG_HEALTH_ALLOWED_ROOTS: "
                        f"{os.pathsep.join(str(r) for r in roots)})")
            return None
        if real == Path("/"):
            return "is the root of the file system; name a folder (or set RAG_HEALTH_ALLOWED_ROOTS)"
        home = Path(os.path.realpath(os.path.expanduser("~")))
        for folder in [home / f for f in PRIVATE_HOME_FOLDERS]:
            if real == folder or folder in real.parents:
                return f"is under {folder}, a private folder of a home; a run never reads or writes there"
        for folder in [Path(f) for f in SYSTEM_FOLDERS]:
            if (real == folder or folder in real.parents) and not _inside_repo_or_temp(real):
                return (f"is under {folder}, a system or private folder; set RAG_HEALTH_ALLOWED_ROOTS to the folders "
                        "a run may use")
        return None

    @field_validator("max_finding_fraction")
    @classmethod
    def _known_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        from checks.findings import threshold_keys

        unknown = sorted(set(value) - threshold_keys())
        if unknown:
            raise ValueError(f"unknown threshold key(s) {', '.join(unknown)}; known: {', '.join(sorted(threshold_keys()))}")
        return value

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        """Chroma's rules (3-512 characters of letters, digits, '.', '_' and '-', starting and ending with a letter
        or digit), and not a name of rag-health's own scratch collections."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]", value) or ".." in value:
            raise ValueError(f"{value!r} is not a valid Chroma collection name (3-512 characters: letters, digits, "
                             "'.', '_', '-'; starting and ending with a letter or digit)")
        if value.startswith(SCRATCH_PREFIX):
            raise ValueError(f"{value!r}: names starting with {SCRATCH_PREFIX!r} are rag-health's scratch collections")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _s3_prefix(cls, value: str) -> str:
        """A key prefix of plain segments: no '..' or '.' (an S3-compatible server may resolve them, leaving the
        archive's prefix), no control characters."""
        segments = [seg for seg in value.split("/") if seg]
        if any(seg in (".", "..") for seg in segments) or re.search(r"[\x00-\x1f\x7f\\]", value):
            raise ValueError(f"{value!r} is not a key prefix: use plain segments (no '.', '..', backslashes or "
                             "control characters)")
        return "/".join(segments)

    @field_validator("report_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        """Links built from it land in reports and artifacts: http(s) only (a javascript: or data: URL would run
        in the reader's browser)."""
        if value in (None, ""):
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s<>\"'`]", value.strip()):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.strip()

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value):
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value

    @field_validator("probes", "rules", mode="before")
    @classmethod
    def _split_probe_list(cls, value):
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [p for p in value.split(os.pathsep) if p]
        return value

    @property
    def docs_is_sample(self) -> bool:
        return not self.docs.startswith("s3://") and Path(self.docs).resolve() == SAMPLE_DOCS.resolve()

    def effective_manifest(self) -> Path | None:
        """The configured manifest, or the sample one when the docs are the sample corpus."""
        if self.manifest is not None:
            return self.manifest
        return SAMPLE_MANIFEST if self.docs_is_sample else None

    def effective_probes(self) -> list[Path]:
        if self.probes:
            return list(self.probes)
        return [SAMPLE_PROBES, SAMPLE_FILTER_PROBES] if self.docs_is_sample else []

    def effective_rules(self) -> tuple[list[Path], list[str]]:
        """Rule paths and URL prefixes: the configured ones, or the sample rules for the sample corpus."""
        if self.rules:
            return list(self.rules), list(self.runbook_url_prefix)
        if self.docs_is_sample:
            return [SAMPLE_RULES], list(self.runbook_url_prefix) or [SAMPLE_RUNBOOK_URL_PREFIX]
        return [], list(self.runbook_url_prefix)

    def effective_required_metadata(self) -> list[str]:
        """Metadata fields every chunk must carry: the configured ones, or the sample corpus's filter fields."""
        if self.required_metadata:
            return list(self.required_metadata)
        return list(SAMPLE_REQUIRED_METADATA) if self.docs_is_sample else []

    def audit_date(self) -> date:
        return self.today or date.today()


def _inside_repo_or_temp(real: Path) -> bool:
    """A checkout installed under /usr or /root (a container's home) is still a place to work in: this checkout,
    the current folder and the temporary folder are never refused by the default."""
    import tempfile

    for base in (REPO_ROOT, Path.cwd(), Path(tempfile.gettempdir())):
        base = Path(os.path.realpath(base))
        if base != Path("/") and (real == base or base in real.parents):
            return True
    return False


def load_settings(**overrides) -> Settings:
    """Settings from the environment, with explicit non-None overrides applied on top."""
    disable_telemetry()  # before any library that phones home is imported, whoever builds settings
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigError("invalid settings: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: dict) -> str:
    """One line per bad setting: the field, its environment variable, the rule and the value given."""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    loc = [str(p) for p in error.get("loc", ())]
    if not loc:  # a rule across fields: its message names them
        return message
    return f"{'.'.join(loc)} (RAG_HEALTH_{loc[0].upper()}): {message}, got {error.get('input')!r}"


def disable_telemetry() -> None:
    """Offline by default: no analytics calls from Prefect, Chroma, Hugging Face or Great Expectations. The one
    place these variables are set: every entry point (CLI, flows, benchmarks, tests) calls it before a model
    loads or a check runs. Values already in the environment win."""
    for key, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "ANONYMIZED_TELEMETRY": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "GX_ANALYTICS_ENABLED": "False",
    }.items():
        os.environ.setdefault(key, value)
