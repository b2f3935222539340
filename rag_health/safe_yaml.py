"""YAML for files rag-health does not control (front-matter, manifests, alert rules): safe types only and no
anchors or aliases. PyYAML's safe_load still expands aliases, so a few hundred bytes of "billion laughs" grow
into gigabytes once a value is turned into a string; refusing them at compose time costs nothing legitimate
(none of these formats needs them)."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

ALIASES_REFUSED = "YAML aliases are not allowed"


class NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that raises a ComposerError at the first anchor (&name) or alias (*name)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(None, None, f"{ALIASES_REFUSED} (alias *{event.anchor})", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            # An anchor alone is harmless, but it only exists to be aliased: refuse it where it is defined.
            raise ComposerError(None, None, f"{ALIASES_REFUSED} (anchor &{event.anchor})", event.start_mark)
        return super().compose_node(parent, index)


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    """A date-shaped value that is no date (2026-02-30) stays text, so the field that holds it is named when it
    is read (PyYAML's ValueError, "day is out of range for month", named neither the field nor the value)."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


NoAliasLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def load(text: str) -> Any:
    return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - NoAliasLoader is a SafeLoader


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=NoAliasLoader))  # noqa: S506 - NoAliasLoader is a SafeLoader


def compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=NoAliasLoader)
