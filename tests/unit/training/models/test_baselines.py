"""The baselines every model is judged against, checked by hand on tiny inputs (no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.models.baselines import (
    cart_heuristic,
    last_action_repeat,
    last_event_codes,
    markov_transitions,
    popular_items,
)

# --------------------------------------------------------------------------------------------------------------
# Purchase propensity
# --------------------------------------------------------------------------------------------------------------


def test_cart_heuristic_scores_are_the_training_purchase_rates_with_and_without_a_cart() -> None:
    train = pd.DataFrame({"session_carts": [0, 0, 0, 0, 2, 1], "label": [0, 0, 0, 1, 1, 0]})
    test = pd.DataFrame({"session_carts": [3, 0, np.nan]})
    np.testing.assert_allclose(cart_heuristic(train, test), [0.5, 0.25, 0.25])


# --------------------------------------------------------------------------------------------------------------
# Next action
# --------------------------------------------------------------------------------------------------------------

VIEW, CART, REMOVE, BUY, EXIT = range(5)  # NEXT_ACTION_LABELS order
PAD, T_VIEW, T_CART, T_REMOVE, T_BUY, T_UNKNOWN = range(6)  # event-type codes of journey.model_inputs


def test_markov_rows_are_add_one_smoothed_transition_frequencies() -> None:
    last = np.array([T_VIEW, T_VIEW, T_VIEW, T_CART, T_BUY])
    labels = np.array([VIEW, VIEW, EXIT, BUY, EXIT])

    p = markov_transitions(last, labels, states=6)

    assert p.shape == (6, 5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[T_VIEW], np.array([3, 1, 1, 1, 2]) / 8)
    np.testing.assert_allclose(p[T_CART], np.array([1, 1, 1, 2, 1]) / 6)
    np.testing.assert_allclose(p[PAD], np.full(5, 0.2))  # never seen: uniform
    assert p[T_VIEW].argmax() == VIEW


def test_last_action_repeat_puts_all_mass_on_the_last_type_or_the_fallback() -> None:
    scores = last_action_repeat(np.array([T_VIEW, T_CART, T_REMOVE, T_BUY, PAD, T_UNKNOWN]), fallback=EXIT)
    assert scores.argmax(axis=1).tolist() == [VIEW, CART, REMOVE, BUY, EXIT, EXIT]
    np.testing.assert_array_equal(scores.sum(axis=1), 1.0)
    assert set(np.unique(scores)) == {0.0, 1.0}


def test_last_event_codes_read_the_newest_real_step() -> None:
    inputs = {
        "event_types": np.array([[T_VIEW, T_CART, PAD], [PAD, PAD, PAD], [T_BUY, T_VIEW, T_CART]]),
        "lengths": np.array([2, 0, 3]),
    }
    assert last_event_codes(inputs).tolist() == [T_CART, PAD, T_CART]


# --------------------------------------------------------------------------------------------------------------
# Next item
# --------------------------------------------------------------------------------------------------------------


def _item_inputs(sessions: list[list[int]], seq_len: int = 4) -> dict[str, np.ndarray]:
    """Right-padded item ids (padding 7: counted only if the lengths were ignored) and lengths."""
    items = np.full((len(sessions), seq_len), 7, dtype=np.int64)
    for row, session in enumerate(sessions):
        items[row, : len(session)] = session
    lengths = np.array([len(s) for s in sessions], dtype=np.int64)
    return {"item_ids": items, "event_types": np.where(items == 7, 0, 1), "lengths": lengths}


def test_popular_items_are_the_most_frequent_labels_ties_by_id_padded_with_minus_one() -> None:
    labels = np.array([9, 3, 9, 4, 3, 9, 1])
    assert popular_items(labels, 3).tolist() == [9, 3, 1]  # 9 x3, 3 x2, then 1 and 4 tie: 1 first
    assert popular_items(labels, 6).tolist() == [9, 3, 1, 4, -1, -1]
