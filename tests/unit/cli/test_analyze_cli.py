"""`journey analyze`: report, chain artifact and where they went; bad input exits 2 naming the value."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli import app
from journey.chain_artifact import JourneyArtifact
from journey.datasets.store import DatasetStore
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.settings import Settings

runner = CliRunner()


@pytest.fixture
def shop(settings: Settings) -> Settings:
    data = generate(SyntheticConfig(n_users=800, n_items=1_000, days=5, seed=2))
    DatasetStore(settings.events_dir).write("shop", data.events, source={"kind": "test"})
    return settings


def test_analyze_writes_the_report_and_the_chain_and_says_where(shop: Settings) -> None:
    result = runner.invoke(app, ["analyze", "--dataset", "shop", "--no-features", "--seed", "3"])
    assert result.exit_code == 0, result.output
    report = shop.journey_reports_dir / "shop" / "report.md"
    output = result.output.replace("\n", "")
    assert str(report) in output and str(shop.journey_chain_path) in output
    assert "## Funnel" in report.read_text(encoding="utf-8")
    artifact = JourneyArtifact.load(shop.journey_chain_path)
    assert artifact.meta["dataset"] == "shop" and artifact.meta["seed"] == 3 and artifact.segments
    assert "k = " in output and "P(purchase later)" in output
    assert "segments clustered on" in output and "after the last view of their item" in output
    assert "## Purchases and the views before them" in report.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--dataset", "nowhere"], "'nowhere'"),
        (["--dataset", "../etc"], "'../etc'"),
        (["--dataset", "shop", "--k-min", "1"], "1..6"),
        (["--dataset", "shop", "--k-min", "5", "--k-max", "3"], "5..3"),
        (["--dataset", "shop", "--top-categories", "-2"], "-2"),
    ],
)
def test_bad_input_exits_2_naming_the_value(shop: Settings, args: list[str], shown: str) -> None:
    result = runner.invoke(app, ["analyze", *args, "--no-features"])
    assert result.exit_code == 2, result.output
    assert shown in result.output
    assert not shop.journey_chain_path.exists()
