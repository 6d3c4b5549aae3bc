"""Next-item models: the kinds a `next_item` version can be, and training one (see base.py for the contract).

base.py          the Recommender contract, SessionData, the vocabulary
kinds.py         KINDS by name (gru4rec, sasrec, popularity, markov, covisitation, sknn), BASELINES
trainer.py       train_next_item: split, fit the chosen kind, export, score it beside every baseline
selection.py     --kind auto: the best kind on the validation days
gru.py           the GRU4Rec kind (PyTorch): a GRU encoder under the shared repeat-aware head
sasrec.py        the SASRec kind (PyTorch): causal self-attention under the same head
neural.py, neural_fit.py                                                 what the neural kinds share
popularity.py, markov.py, covisitation.py, sknn.py (+ sknn_graph.py)   the index kinds
indexes.py, graphs.py, tuning.py                                         what the index kinds share
"""

from training.models.next_item.base import (
    UNKNOWN_INDEX,
    Inputs,
    LearningCurves,
    Recommender,
    SessionData,
    Vocabulary,
    pad_columns,
)
from training.models.next_item.gru import NextItemConfig, fit_gru4rec
from training.models.next_item.kinds import (
    AUTO,
    BASELINES,
    DEFAULT_KIND,
    KINDS,
    Kind,
    config_type_of,
    kind_named,
    kind_or_auto,
)
from training.models.next_item.neural_fit import NeuralConfig, NeuralRecommender
from training.models.next_item.sasrec import SASRecConfig, fit_sasrec
from training.models.next_item.trainer import MODEL_NAME, train_next_item

__all__ = [
    "AUTO",
    "BASELINES",
    "DEFAULT_KIND",
    "KINDS",
    "MODEL_NAME",
    "UNKNOWN_INDEX",
    "Inputs",
    "Kind",
    "LearningCurves",
    "NeuralConfig",
    "NeuralRecommender",
    "NextItemConfig",
    "Recommender",
    "SASRecConfig",
    "SessionData",
    "Vocabulary",
    "config_type_of",
    "fit_gru4rec",
    "fit_sasrec",
    "kind_named",
    "kind_or_auto",
    "pad_columns",
    "train_next_item",
]
