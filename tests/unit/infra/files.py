"""Where the infra files are (shared by the unit and the integration infra tests)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
INFRA = REPO_ROOT / "infra"
PROMETHEUS_DIR = INFRA / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
