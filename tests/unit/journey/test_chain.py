"""Absorbing Markov chains against closed-form answers, and their JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from journey.chain import CONVERSION, STAGE_STATES, MarkovChain

# A hand-made chain: two browsing states a, b; purchase moves on (to a, or ends); exit absorbs.
#            a     b     purchase  exit
HAND = [
    [0.2, 0.5, 0.1, 0.2],  # a
    [0.3, 0.1, 0.4, 0.2],  # b
    [0.5, 0.0, 0.0, 0.5],  # purchase
    [0.0, 0.0, 0.0, 1.0],  # exit
]
STATES = ("a", "b", "purchase", "exit")


@pytest.fixture
def hand() -> MarkovChain:
    return MarkovChain.from_probabilities(STATES, HAND, [0.6, 0.4, 0.0, 0.0])


def closed_form() -> dict[str, float]:
    """First-step analysis, solved with Cramer's rule.

    With purchase and exit absorbing, h = P(eventual purchase) solves
        h_a = q_aa h_a + q_ab h_b + r_a      (1 - q_aa) h_a - q_ab h_b = r_a
        h_b = q_ba h_a + q_bb h_b + r_b  ->  -q_ba h_a + (1 - q_bb) h_b = r_b
    so with det = (1 - q_aa)(1 - q_bb) - q_ab q_ba:
        h_a = (r_a (1 - q_bb) + q_ab r_b) / det,   h_b = ((1 - q_aa) r_b + q_ba r_a) / det.
    The fundamental matrix is N = (I - Q)^-1 = [[1 - q_bb, q_ab], [q_ba, 1 - q_aa]] / det, so the expected events
    until absorption are t_a = (1 - q_bb + q_ab) / det and t_b = (q_ba + 1 - q_aa) / det.
    """
    q_aa, q_ab, r_a = 0.2, 0.5, 0.1
    q_ba, q_bb, r_b = 0.3, 0.1, 0.4
    det = (1 - q_aa) * (1 - q_bb) - q_ab * q_ba  # 0.57
    h_a = (r_a * (1 - q_bb) + q_ab * r_b) / det  # 0.29 / 0.57
    h_b = ((1 - q_aa) * r_b + q_ba * r_a) / det  # 0.35 / 0.57
    return {
        "h_a": h_a,
        "h_b": h_b,
        "t_a": (1 - q_bb + q_ab) / det,
        "t_b": (q_ba + 1 - q_aa) / det,
        "n_aa": (1 - q_bb) / det,
        "n_ab": q_ab / det,
        "det": det,
    }


def test_absorption_probabilities_match_the_closed_form(hand: MarkovChain) -> None:
    cf = closed_form()
    view = hand.absorbing(CONVERSION)
    assert view.transient == ("a", "b") and view.absorbing == ("purchase", "exit")
    assert view.probability("a", "purchase") == pytest.approx(cf["h_a"], abs=1e-12)
    assert view.probability("b", "purchase") == pytest.approx(cf["h_b"], abs=1e-12)
    assert view.probability("a", "exit") == pytest.approx(1 - cf["h_a"], abs=1e-12)
    assert cf["h_a"] == pytest.approx(0.29 / 0.57) and cf["h_b"] == pytest.approx(0.35 / 0.57)


def test_fundamental_matrix_and_expected_steps_match_the_closed_form(hand: MarkovChain) -> None:
    cf = closed_form()
    view = hand.absorbing(CONVERSION)
    assert view.fundamental[0, 0] == pytest.approx(cf["n_aa"]) and view.fundamental[0, 1] == pytest.approx(cf["n_ab"])
    assert view.expected_steps == pytest.approx([cf["t_a"], cf["t_b"]], abs=1e-12)


def test_steps_given_a_purchase_are_the_h_transform(hand: MarkovChain) -> None:
    cf = closed_form()
    view = hand.absorbing(CONVERSION)
    # E[T | purchase] = sum_j N_sj h_j / h_s
    n = np.array([[1 - 0.1, 0.5], [0.3, 1 - 0.2]]) / cf["det"]
    h = np.array([cf["h_a"], cf["h_b"]])
    assert view.conditional_steps("purchase") == pytest.approx(n @ h / h, abs=1e-12)


def test_hit_probability_is_absorption_for_transient_states_and_repeat_chance_at_the_target(hand: MarkovChain) -> None:
    cf = closed_form()
    p = hand.hit_probability("purchase")
    assert p[0] == pytest.approx(cf["h_a"]) and p[1] == pytest.approx(cf["h_b"])
    assert p[2] == pytest.approx(0.5 * cf["h_a"])  # after a purchase: back to a with 0.5, then buy again from a
    assert p[3] == 0.0


def test_a_new_sessions_conversion_weighs_the_initial_distribution(hand: MarkovChain) -> None:
    cf = closed_form()
    started = hand.absorbing(CONVERSION).from_distribution(hand.states, hand.initial)
    assert started["purchase"] == pytest.approx(0.6 * cf["h_a"] + 0.4 * cf["h_b"])
    assert started["purchase"] + started["exit"] == pytest.approx(1.0)


def test_exit_points_spread_the_one_exit_over_the_states(hand: MarkovChain) -> None:
    ends = hand.exit_points("a")
    assert set(ends) == {"a", "b", "purchase"}
    assert sum(ends.values()) == pytest.approx(1.0)


def test_most_likely_next_with_and_without_exit(hand: MarkovChain) -> None:
    assert hand.most_likely_next("purchase") == ("a", 0.5)  # tie with exit: the earlier state
    assert hand.most_likely_next("a") == ("b", 0.5)
    assert hand.most_likely_next("b", include_terminal=False) == ("purchase", 0.4)


def test_maximum_likelihood_from_counts_and_unvisited_rows_go_to_exit() -> None:
    counts = np.array([[6, 2, 0, 0, 2], [1, 1, 1, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    chain = MarkovChain.from_counts(STAGE_STATES, counts, np.array([3, 1, 0, 0, 0]))
    assert chain.transitions[0].tolist() == [0.6, 0.2, 0.0, 0.0, 0.2]
    assert chain.transitions[3].tolist() == [0, 0, 0, 0, 1.0]  # post_purchase never seen: no credit
    assert chain.observed.tolist() == [True, True, True, False, False]
    assert chain.initial.tolist() == [0.75, 0.25, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[0.5, 0.6], [0.0, 1.0]], "probability distribution"),
        ([[0.5, 0.5], [0.5, 0.5]], "absorbing"),
        ([[1.0]], "need a 2x2"),
    ],
)
def test_malformed_chains_are_refused(rows: list[list[float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MarkovChain.from_probabilities(("a", "exit"), rows)


def test_a_chain_that_never_ends_is_refused() -> None:
    stuck = MarkovChain.from_probabilities(("a", "exit"), [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="reachable"):
        stuck.absorbing()


def test_json_round_trip_keeps_counts_and_writes_null_for_undefined_steps() -> None:
    counts = np.array([[5, 3, 0, 0, 2], [2, 2, 0, 0, 1], [0] * 5, [0] * 5, [0] * 5])
    chain = MarkovChain.from_counts(STAGE_STATES, counts, np.array([4, 1, 0, 0, 0]))
    text = json.dumps(chain.to_dict())
    assert "NaN" not in text
    back = MarkovChain.from_dict(json.loads(text))
    assert back.counts is not None and chain.counts is not None
    assert np.array_equal(back.counts, chain.counts) and np.allclose(back.transitions, chain.transitions)
    assert json.loads(text)["conversion"]["steps_to_purchase"][0] is None  # no purchase ever: undefined
