"""Next-item models: the kinds a `next_item` version can be, and training one (see base.py for the contract)."""

from training.models.next_item.base import UNKNOWN_INDEX, Inputs, Recommender, SessionData, Vocabulary, pad_columns
from training.models.next_item.gru import (
    MODEL_NAME,
    NextItemConfig,
    NextItemNet,
    TopItems,
    recommend,
    step_loss,
    train_next_item,
)

__all__ = [
    "MODEL_NAME",
    "UNKNOWN_INDEX",
    "Inputs",
    "NextItemConfig",
    "NextItemNet",
    "Recommender",
    "SessionData",
    "TopItems",
    "Vocabulary",
    "pad_columns",
    "recommend",
    "step_loss",
    "train_next_item",
]
