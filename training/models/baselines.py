"""The baselines every model is judged against on the same test rows: what a team would ship without learning much.

    purchase propensity   logistic_regression (the same features, median-imputed with missing indicators,
                          standardised) and cart_heuristic (the purchase rate with and without a cart in the session)
    next action           last_action_repeat (the last event's type again) and markov_first_order
                          (P(next | last event type) from the training split)
    next item             the baselines are kinds of their own, servable like the model (next_item/kinds.py:
                          popularity, markov, covisitation, sknn); popular_items stays here as the plain-array
                          definition tests check the learnt priors against

Each is a plain function of arrays (or frames) so the tests check it by hand; the trainers turn the results into
`Candidate`s beside their model's.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from journey.events import EVENT_TYPES
from journey.model_inputs import PAD
from training.labels import LABEL, NEXT_ACTION_LABELS
from training.runs import Candidate

LOGISTIC_REGRESSION: Final = "logistic_regression"
CART_HEURISTIC: Final = "cart_heuristic"
LAST_ACTION_REPEAT: Final = "last_action_repeat"
MARKOV_FIRST_ORDER: Final = "markov_first_order"
POPULARITY: Final = "popularity"
HEURISTIC_COLUMN: Final = "session_carts"
Inputs = dict[str, np.ndarray]

if NEXT_ACTION_LABELS[: len(EVENT_TYPES)] != EVENT_TYPES:  # the baselines map a last event type onto its class
    raise ImportError("NEXT_ACTION_LABELS must start with EVENT_TYPES in order")


# ---------------------------------------------------------------------------------------------------------------
# Purchase propensity
# ---------------------------------------------------------------------------------------------------------------


def logistic_regression(x_train: np.ndarray, y_train: np.ndarray, seed: int) -> Any:
    """A fitted scikit-learn pipeline: median imputation with missing indicators, scaling, logistic regression."""
    # imported here, not at the top: scikit-learn is a heavy import that only a propensity run needs
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=2000, C=1.0, random_state=seed),
    )
    model.fit(x_train, y_train)
    return model


def cart_heuristic(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Purchase rate of training rows with/without a cart in the session, applied to the test rows."""
    had_cart_train = train[HEURISTIC_COLUMN].fillna(0).to_numpy() > 0
    y = train[LABEL].to_numpy(dtype=np.int64)
    overall = float(y.mean())
    rate_cart = float(y[had_cart_train].mean()) if had_cart_train.any() else overall
    rate_none = float(y[~had_cart_train].mean()) if (~had_cart_train).any() else overall
    had_cart_test = test[HEURISTIC_COLUMN].fillna(0).to_numpy() > 0
    return np.where(had_cart_test, rate_cart, rate_none).astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Next action
# ---------------------------------------------------------------------------------------------------------------


def last_event_codes(inputs: Inputs) -> np.ndarray:
    """The event-type code (model_inputs vocabulary) of each row's newest event; PAD when it has none."""
    lengths = inputs["lengths"]
    last = np.take_along_axis(inputs["event_types"], np.maximum(lengths - 1, 0)[:, None], axis=1)[:, 0]
    return np.where(lengths > 0, last, PAD)


def last_action_repeat(last_codes: np.ndarray, fallback: int) -> np.ndarray:
    """Probability 1 on the class of the last event's type; `fallback` (a class) for no or an unknown event."""
    classes = np.where((last_codes >= 1) & (last_codes <= len(EVENT_TYPES)), last_codes - 1, fallback)
    scores = np.zeros((len(last_codes), len(NEXT_ACTION_LABELS)))
    scores[np.arange(len(last_codes)), classes] = 1.0
    return scores


def markov_transitions(last_codes: np.ndarray, labels: np.ndarray, states: int) -> np.ndarray:
    """P(next class | last event-type code) with add-one smoothing: [states, classes], rows sum to 1."""
    counts = np.ones((states, len(NEXT_ACTION_LABELS)))
    np.add.at(counts, (last_codes, labels), 1.0)
    result: np.ndarray = counts / counts.sum(axis=1, keepdims=True)
    return result


def next_action_baselines(inputs: dict[str, Inputs], train_labels: np.ndarray, states: int) -> list[Candidate]:
    """Both next-action baselines scored on the test rows; an empty session repeats the majority training class."""
    train_last, test_last = last_event_codes(inputs["train"]), last_event_codes(inputs["test"])
    majority = int(np.bincount(train_labels, minlength=len(NEXT_ACTION_LABELS)).argmax())
    markov = markov_transitions(train_last, train_labels, states)
    return [
        Candidate(LAST_ACTION_REPEAT, last_action_repeat(test_last, majority)),
        Candidate(MARKOV_FIRST_ORDER, markov[test_last]),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Next item
# ---------------------------------------------------------------------------------------------------------------


def popular_items(labels: np.ndarray, k: int) -> np.ndarray:
    """The `k` most frequent training labels, ties by id (padded with -1 when fewer exist)."""
    ids, counts = np.unique(labels, return_counts=True)
    top = ids[np.lexsort((ids, -counts))][:k]
    return np.pad(top, (0, k - len(top)), constant_values=-1)
