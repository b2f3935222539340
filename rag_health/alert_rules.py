"""Prometheus alerting rules: which runbook each alert points to, and a retrieval probe per covered alert."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from rag_health import safe_yaml
from rag_health.documents import SUPPORTED_SUFFIXES
from rag_health.errors import ConfigError
from rag_health.probes import Probe

_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.DOTALL)


@dataclass(frozen=True)
class AlertRule:
    name: str
    group: str
    severity: str
    summary: str
    description: str
    runbook_url: str
    source_file: str


def strip_templating(text: str) -> str:
    """Remove Prometheus templating ({{ $labels.x }}, {{ $value | humanize }}) and tidy what it leaves behind."""
    text = _TEMPLATE.sub(" ", text or "")
    text = re.sub(r"\s+([.,:;)])", r"\1", text)
    text = re.sub(r"\(\s*\)|\s/\s|/\s*(?=[\s.,])", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def load_rules(paths: Iterable[str | Path]) -> tuple[list[AlertRule], list[dict[str, str]]]:
    """Alerting rules from rule files or folders of them: plain Prometheus files (`groups:`) and PrometheusRule
    resources (`spec.groups`), several YAML documents per file allowed. Bad files are reported, the rest load."""
    rules: list[AlertRule] = []
    errors: list[dict[str, str]] = []
    for path in rule_files(paths):
        try:
            documents = safe_yaml.load_all(path.read_text(encoding="utf-8"))
        except RecursionError:  # thousands of nested brackets: report the file, load the others
            errors.append({"file": str(path), "reason": "invalid YAML: nested too deeply"})
            continue
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            errors.append({"file": str(path), "reason": f"{where}{getattr(exc, 'problem', None) or exc}"})
            continue
        found = False
        problems: list[str] = []
        for doc in documents:
            if not isinstance(doc, dict):
                continue
            spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
            groups = doc.get("groups") if "groups" in doc else spec.get("groups")
            if not isinstance(groups, list):
                continue
            found = True
            for g, group in enumerate(groups):
                if not isinstance(group, dict) or not isinstance(group.get("rules") or [], list):
                    problems.append(f"group {g + 1} is not a mapping with a list of rules")
                    continue
                for rule in group.get("rules") or []:
                    if not isinstance(rule, dict) or "alert" not in rule:
                        continue  # recording rules have no runbook
                    ann = rule.get("annotations") or {}
                    if not isinstance(ann, dict):
                        problems.append(f"alert {rule['alert']}: annotations must be a mapping")
                        continue
                    rules.append(AlertRule(
                        name=str(rule["alert"]), group=str(group.get("name", "")),
                        severity=str((rule.get("labels") or {}).get("severity", "")),
                        summary=str(ann.get("summary", "")), description=str(ann.get("description", "")),
                        runbook_url=str(ann.get("runbook_url", "")).strip(), source_file=path.name,
                    ))
        if not found:
            errors.append({"file": str(path), "reason": "no rule groups (expected `groups:` or `spec.groups`)"})
        errors += [{"file": str(path), "reason": problem} for problem in problems]
    return rules, errors


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".yaml", ".yml") and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"rule file or folder {p} not found")
    return files


@dataclass(frozen=True)
class UrlMapping:
    """A runbook URL prefix and the folder (relative to the docs root) its documents live in."""

    prefix: str
    folder: str = ""

    @classmethod
    def parse(cls, spec: str) -> UrlMapping:
        url, sep, folder = spec.partition("=") if "=" in spec.split("://", 1)[-1] else (spec, "", "")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"runbook URL prefix {spec!r} must start with http:// or https://")
        return cls(prefix=url.rstrip("/") + "/", folder=folder.strip("/"))


def _key(path: str) -> str:
    p = PurePosixPath(path.strip("/").lower())
    return str(p.with_suffix("")) if p.suffix in SUPPORTED_SUFFIXES else str(p)


class RunbookResolver:
    """Maps runbook URLs to doc ids: case-insensitive, with or without a file extension."""

    def __init__(self, doc_ids: Iterable[str], mappings: list[UrlMapping]):
        self.mappings = sorted(mappings, key=lambda m: len(m.prefix), reverse=True)  # most specific first
        self._by_key: dict[str, str] = {}
        # A real document (with an extension) wins over an extensionless twin of the same name.
        for doc_id in sorted(doc_ids, key=lambda d: (PurePosixPath(d).suffix == "", d)):
            self._by_key.setdefault(_key(doc_id), doc_id)

    def resolve(self, url: str) -> tuple[str | None, str]:
        """(doc id or None, status): covered, missing-runbook, unmapped-url or no-runbook-url."""
        if not url:
            return None, "no-runbook-url"
        parts = urlsplit(url)
        bare = f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"
        if self.mappings:
            for m in self.mappings:
                if bare.lower().startswith(m.prefix.lower()):
                    rest = bare[len(m.prefix):]
                    key = _key(f"{m.folder}/{rest}" if m.folder else rest)
                    doc = self._by_key.get(key) or self._by_key.get(f"{key}/_index") or self._by_key.get(
                        f"{key}/index")
                    return (doc, "covered") if doc else (None, "missing-runbook")
            return None, "unmapped-url"
        # No prefix configured: match the longest doc path that the URL path ends with.
        path = _key(unquote(parts.path))
        segments = path.split("/")
        for i in range(len(segments)):
            doc = self._by_key.get("/".join(segments[i:]))
            if doc:
                return doc, "covered"
        return None, "missing-runbook"


def resolve_alerts(rules: Iterable[AlertRule], resolver: RunbookResolver
                   ) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Each rule's runbook: one row per rule (alert, severity, group, source_file, runbook_url, doc_id, status)
    in rule order, and {rule index: doc id} for the covered ones (what alert_probes takes)."""
    alerts: list[dict[str, Any]] = []
    resolved: dict[int, str] = {}
    for i, rule in enumerate(rules):
        doc_id, status = resolver.resolve(rule.runbook_url)
        if doc_id:
            resolved[i] = doc_id
        alerts.append({"alert": rule.name, "severity": rule.severity, "group": rule.group,
                       "source_file": rule.source_file, "runbook_url": rule.runbook_url, "doc_id": doc_id,
                       "status": status})
    return alerts, resolved


def alert_probes(rules: list[AlertRule], resolved: dict[int, str]) -> list[Probe]:
    """One probe per covered alert: its summary and description with templating stripped → its runbook."""
    probes: list[Probe] = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        doc_id = resolved.get(i)
        query = strip_templating(f"{rule.summary} {rule.description}")
        if not doc_id or not query:
            continue
        base = f"alert:{rule.name}:{rule.severity or 'any'}"
        seen[base] = seen.get(base, 0) + 1
        probes.append(Probe(base if seen[base] == 1 else f"{base}:{seen[base]}", query, (doc_id,), "alerts"))
    return probes
