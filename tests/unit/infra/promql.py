"""What the infra tests read from rules and queries: metric names used, names declared, rules and their tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from serving import metrics

# Names the platform owns: journey_* (serving/metrics.py), journey:* (recording rules), bentoml_* (BentoML's own).
_NAME = re.compile(r"(?<![\w:])(journey_[a-z0-9_]+|journey:[a-z0-9_:]+|bentoml_[a-z0-9_]+)(?![\w:])")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}


def metric_names(expr: str) -> set[str]:
    """The journey_*, journey:* and bentoml_* names an expression reads (label values and strings ignored)."""
    return set(_NAME.findall(_STRINGS.sub('""', expr)))


def declared_samples() -> set[str]:
    """Every sample name serving/metrics.py exposes (histograms: _bucket/_sum/_count; counters: _total)."""
    names: set[str] = set()
    for metric in metrics.ALL_METRICS:
        for family in metric.describe():
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def load_rules(files: list[Path]) -> list[dict[str, Any]]:
    """Every rule of the files, each with its group's name under `group`."""
    rules = []
    for path in files:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules += [{**rule, "group": group["name"]} for rule in group["rules"]]
    return rules


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
