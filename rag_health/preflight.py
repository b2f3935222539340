"""Pre-flight: what a stage needs (rag_health.registry) is checked before any work, so bad configuration fails
fast with a ConfigError (exit 2) naming the file and the reason."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from rag_health import registry
from rag_health.errors import ConfigError
from rag_health.runtime import Runtime


def check(rt: Runtime, needs: Iterable[str], chunkings: Sequence[str] | None = None) -> None:
    needs = set(needs)
    s = rt.settings
    if registry.SOURCE in needs:
        rt.source()
    if registry.RULES in needs:
        from rag_health.alert_rules import UrlMapping, rule_files

        rule_paths, prefixes = s.effective_rules()
        rule_files(rule_paths)
        for prefix in prefixes:
            UrlMapping.parse(prefix)
    if registry.MANIFEST in needs:
        _ = rt.manifest
    if registry.THRESHOLDS in needs:
        from checks.retrieval import parse_threshold

        for threshold in s.fail_under:
            try:
                parse_threshold(threshold)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    if registry.PROBES in needs:
        from rag_health.probes import load_probe_set

        for p in s.effective_probes():
            load_probe_set(p)  # missing, or not one probe readable: a ConfigError naming the file
    if needs & {registry.INDEX, registry.ARCHIVE}:
        writable_state(s.state_dir)
    if registry.INDEX in needs:
        _ = rt.chroma  # an unreachable Chroma server fails here, naming host and port
    if registry.ARCHIVE in needs and s.s3_bucket:
        rt.archive.check_store()
    if registry.CHUNKINGS in needs and chunkings:
        from rag_health.chunking import parse_spec

        for spec in chunkings:
            parse_spec(spec)
        if len(chunkings) == 1:
            raise ConfigError("give --config at least twice (or not at all for the default pair)")


def writable_state(state_dir: Path) -> None:
    """The state directory (embedded Chroma, locks, local copies, the outbox) can be created and written: a
    read-only one is a configuration error naming it (exit 2), before any work."""
    import os
    import tempfile

    path = Path(state_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"state directory {path} is not writable: {exc.strerror or exc} (setting state_dir, "
                          "RAG_HEALTH_STATE_DIR)") from None

