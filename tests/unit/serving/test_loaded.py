"""serving.loaded: what a loaded version is placed on and how it is called."""

from __future__ import annotations

from journey.settings import Settings
from serving import loaded


def test_the_auto_batch_is_the_batcher_size_only_for_the_batched_purchase_model() -> None:
    batched = Settings(adaptive_batching=True, batch_max_size=512)

    assert loaded.serving_batch("purchase_propensity", batched) == 512
    assert loaded.serving_batch("next_action", batched) == 1
    assert loaded.serving_batch("purchase_propensity", Settings(adaptive_batching=False)) == 1
