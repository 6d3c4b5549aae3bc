"""`--kind auto`'s rule (selection.py): session-kNN, unless another index kind and then a network beat the kind
served so far beyond doubt on the validation rows."""

from __future__ import annotations

import numpy as np
import pytest

from training.models.next_item.selection import select_on_validation

INDEX_KINDS = ("popularity", "markov", "covisitation", "sknn")


class Fixed:
    """Answers the label at rank 1 on the rows in `hits`, nothing useful elsewhere."""

    def __init__(self, hits: np.ndarray) -> None:
        self.hits = hits

    def recommend(self, inputs: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        labels = inputs["labels"]
        ids = np.full((len(labels), k), -1, dtype=np.int64)
        ids[:, 0] = np.where(self.hits, labels, -2)
        return ids, np.zeros(ids.shape, dtype=np.float32)


def _rows(n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    labels = np.arange(n, dtype=np.int64)
    return {"labels": labels}, labels


def _first(n: int, hits: int) -> np.ndarray:
    return np.arange(n) < hits


def test_a_network_that_clearly_beats_session_knn_is_served() -> None:
    inputs, labels = _rows(4000)
    fitted = {
        "gru4rec": Fixed(_first(4000, 2000)),
        "sknn": Fixed(_first(4000, 1600)),
        "markov": Fixed(_first(4000, 1200)),
    }

    chosen, record = select_on_validation(fitted, inputs, labels, 20, simple=INDEX_KINDS)

    assert chosen == "gru4rec" == record["chosen"]
    [challenge] = record["challenges"]  # sknn is the best index kind: no index challenge
    assert (challenge["incumbent"], challenge["challenger"], challenge["won"]) == ("sknn", "gru4rec", True)
    assert challenge["difference"] == pytest.approx(0.1) and challenge["ci95"][0] > 0
    assert record["validation"]["gru4rec"]["hit_rate@20"] == 0.5


def test_kinds_ahead_only_within_noise_leave_session_knn_served() -> None:
    inputs, labels = _rows(18)
    fitted = {"gru4rec": Fixed(_first(18, 10)), "markov": Fixed(_first(18, 9)), "sknn": Fixed(_first(18, 8))}

    chosen, record = select_on_validation(fitted, inputs, labels, 20, simple=INDEX_KINDS)

    assert chosen == "sknn"
    assert [(c["incumbent"], c["challenger"], c["won"]) for c in record["challenges"]] == [
        ("sknn", "markov", False),
        ("sknn", "gru4rec", False),
    ]
    assert record["challenges"][1]["difference"] == pytest.approx(2 / 18)


def test_an_index_kind_that_clearly_beats_session_knn_is_the_one_a_network_must_beat() -> None:
    inputs, labels = _rows(2000)
    fitted = {
        "gru4rec": Fixed((np.arange(2000) >= 500) & (np.arange(2000) < 1540)),  # other rows than covisitation's
        "covisitation": Fixed(_first(2000, 1000)),
        "sknn": Fixed(_first(2000, 600)),
    }

    chosen, record = select_on_validation(fitted, inputs, labels, 20, simple=INDEX_KINDS)

    assert chosen == "covisitation"
    assert [(c["incumbent"], c["challenger"], c["won"]) for c in record["challenges"]] == [
        ("sknn", "covisitation", True),
        ("covisitation", "gru4rec", False),  # +0.02 over 2,000 rows: within noise
    ]


def test_sessions_are_resampled_whole_so_one_sessions_rows_are_not_independent_evidence() -> None:
    inputs, labels = _rows(400)
    fitted = {"gru4rec": Fixed(_first(400, 40)), "sknn": Fixed(_first(400, 0))}  # the lead is one long session
    groups = np.r_[np.zeros(40), np.arange(1, 361)]

    by_rows, _ = select_on_validation(fitted, inputs, labels, 20, simple=INDEX_KINDS)
    by_sessions, _ = select_on_validation(fitted, inputs, labels, 20, simple=INDEX_KINDS, groups=groups)

    assert (by_rows, by_sessions) == ("gru4rec", "sknn")


def test_without_index_kinds_the_best_point_estimate_is_served() -> None:
    inputs, labels = _rows(100)
    fitted = {"gru4rec": Fixed(_first(100, 20)), "sasrec": Fixed(_first(100, 60))}

    chosen, record = select_on_validation(fitted, inputs, labels, 20)

    assert chosen == "sasrec" and record["challenges"] == []
