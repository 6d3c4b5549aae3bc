"""The network every neural next-item kind shares: item embeddings -> a session encoder -> a repeat-aware head.

A kind (GRU4Rec in `gru.py`, SASRec in `sasrec.py`) brings only its encoder: a module that maps the embedded steps
of right-padded sessions to one state per step, [n, T, hidden], where the state of step t depends on steps <= t
(a GRU; causal self-attention). `SessionNet` does the rest, the same way for every kind:

    explore   the state at the last real step, projected into item space, times every item's embedding (tied with
              the input embedding) plus a per-item bias: a softmax over the vocabulary. With the repeat head the
              session's own items are left out of it (RepeatNet's explore decoder): they are the repeat head's.
    repeat    attention of the last state over the session's steps (keys from each step's state and item, plus a
              learnt bias per distance from the session's end and per event type): a distribution over the steps,
              so over the session's items, known to the vocabulary or not.
    gate      g = sigmoid(w . last state + b), 0 for an empty session: P(the next item is one of the session's).

    P(item) = g * sum of the attention on the steps showing it + (1 - g) * P_explore(item)

Why: in shop logs many next items are the session's own (on the REES46 sample's test rows 34% equal the last
item, 42% are in the session, and 16% are session items the training days never saw), which a softmax over the
vocabulary under-scores and cannot name at all when they are new. The repeat head names them from the session itself.

The answer is over "slots": the V + 1 vocabulary indices (index 0, padding and unknown, never recommended), then
the T steps of the session for its items outside the vocabulary (the first step showing each; the others, and the
steps of items in the vocabulary, are not candidates: score -1). Top-k runs over the slots and a slot becomes an
item id by the vocabulary table or by the session's own ids, inside the graph. Without the repeat head the T
session slots are all -1 and the model is the plain explore softmax (GRU4Rec as it was).
"""

from __future__ import annotations

from typing import Final

import torch
from torch import nn

from journey.model_inputs import PAD

UNKNOWN: Final = 0  # vocabulary index of padding and of every item outside the vocabulary
MASKED: Final = -1e9  # a logit never chosen, finite so that softmax stays NaN-free
NOT_A_SLOT: Final = -1.0  # the score of a slot that is not a candidate (below every probability)
ABSENT: Final = -1e9  # a log-probability that stands for log 0 (finite: no NaN gradients)


class SessionNet(nn.Module):
    """Item embeddings -> `encoder` -> explore softmax (tied embeddings) mixed with the repeat head when `repeat`."""

    def __init__(
        self, n_items: int, seq_len: int, type_vocab: int, encoder: nn.Module, *, hidden: int, dim: int, repeat: bool
    ) -> None:
        """`encoder(steps [n, T, dim], event_types [n, T], lengths [n])` -> states [n, T, hidden]."""
        super().__init__()
        self.seq_len, self.repeat = seq_len, repeat
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
        self.encoder = encoder
        self.query = nn.Linear(hidden, dim)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        mask = torch.zeros(n_items + 1)
        mask[UNKNOWN] = MASKED
        self.mask: torch.Tensor
        self.register_buffer("mask", mask)
        if repeat:
            self.repeat_query = nn.Linear(hidden, dim)
            self.repeat_key = nn.Linear(hidden + dim, dim)
            self.recency = nn.Parameter(torch.zeros(seq_len))  # logit bias by distance from the session's end
            self.type_bias = nn.Embedding(type_vocab, 1)
            nn.init.zeros_(self.type_bias.weight)
            self.gate = nn.Linear(hidden, 1)

    @property
    def n_slots(self) -> int:
        return int(self.bias.numel()) + self.seq_len

    def encode(
        self, index: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-step states [n, T, h], the last real step's state [n, h] (zeros when empty), valid steps [n, T])."""
        states = self.encoder(self.items(index), event_types, lengths)
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, states.shape[2])
        final = states.gather(1, last).squeeze(1) * (lengths > 0).unsqueeze(1).to(states.dtype)
        valid = torch.arange(index.shape[1], device=index.device).unsqueeze(0) < lengths.unsqueeze(1)
        return states, final, valid

    def repeat_parts(
        self,
        index: torch.Tensor,
        event_types: torch.Tensor,
        lengths: torch.Tensor,
        encoded: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log g [n], log(1 - g) [n], log attention over the steps [n, T]; ABSENT-ish on padding)."""
        states, final, valid = encoded
        keys = self.repeat_key(torch.cat([states, self.items(index)], dim=2))
        query = self.repeat_query(final).unsqueeze(2)
        distance = (lengths.unsqueeze(1) - 1 - torch.arange(index.shape[1], device=index.device).unsqueeze(0)).clamp(
            0, self.seq_len - 1
        )
        scores = (keys @ query).squeeze(2) / keys.shape[2] ** 0.5
        scores = scores + self.recency[distance] + self.type_bias(event_types).squeeze(2)
        log_attention = torch.log_softmax(scores.masked_fill(~valid, MASKED), dim=1)
        gate = self.gate(final).squeeze(1).masked_fill(lengths <= 0, MASKED)
        return nn.functional.logsigmoid(gate), nn.functional.logsigmoid(-gate), log_attention

    def explore_logits(
        self, index: torch.Tensor, final: torch.Tensor, valid: torch.Tensor, candidates: torch.Tensor | None
    ) -> torch.Tensor:
        """[n, V + 1] logits (or [n, C] over sorted `candidates`), the session's own items masked with the repeat
        head (theirs is the repeat term)."""
        query = self.query(final)
        if candidates is None:
            logits: torch.Tensor = query @ self.items.weight.T + self.bias + self.mask
            if self.repeat:  # padding and unknown steps scatter into index 0, masked already
                logits = logits.scatter(1, index * valid, MASKED)
            return logits
        logits = query @ self.items.weight[candidates].T + self.bias[candidates]
        if self.repeat:  # the session's items, as a [n, V + 1] mask read at the candidates
            own = torch.zeros(index.shape[0], self.bias.numel(), dtype=torch.bool, device=index.device)
            logits = logits.masked_fill(own.scatter(1, index * valid, True)[:, candidates], MASKED)
        return logits

    def log_likelihood(
        self, x: list[torch.Tensor], target: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log P(next item) [n], whether the model can name it at all [n]) for x = (index, raw ids, event types,
        lengths) and target [n, 2] = (vocabulary index, raw id) of the next item. `candidates` (sorted vocabulary
        indices, the targets' among them) restrict the explore softmax to a sample: the training step's loss."""
        log_p, nameable, _ = self.likelihoods(x, target, candidates)
        return log_p, nameable

    def likelihoods(
        self,
        x: list[torch.Tensor],
        target: torch.Tensor,
        candidates: torch.Tensor | None = None,
        later: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`log_likelihood`, and the explore head's log-probability of `later` [n] (vocabulary indices among the
        candidates: items the session shows after its next one) from the same pass, for the auxiliary loss."""
        index, raw, event_types, lengths = x
        label, label_raw = target[:, 0], target[:, 1]
        encoded = self.encode(index, event_types, lengths)
        _, final, valid = encoded
        log_explores = torch.log_softmax(self.explore_logits(index, final, valid, candidates), dim=1)

        def explore(items: torch.Tensor) -> torch.Tensor:
            position = items if candidates is None else torch.searchsorted(candidates, items.contiguous())
            return log_explores.gather(1, position.unsqueeze(1)).squeeze(1)

        log_explore, log_later = explore(label), None if later is None else explore(later)
        if not self.repeat:
            return log_explore, label != UNKNOWN, log_later
        log_gate, log_stay, log_attention = self.repeat_parts(index, event_types, lengths, encoded)
        match = (raw == label_raw.unsqueeze(1)) & valid
        in_session = match.any(dim=1)
        log_repeat = torch.logsumexp(log_attention.masked_fill(~match, ABSENT), dim=1)
        explorable = (label != UNKNOWN) & ~in_session
        terms = torch.stack(
            [
                (log_gate + log_repeat).masked_fill(~in_session, ABSENT),
                (log_stay + log_explore).masked_fill(~explorable, ABSENT),
            ]
        )
        return torch.logsumexp(terms, dim=0), in_session | explorable, log_later

    def forward(
        self, index: torch.Tensor, raw: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """P(next item) per slot [n, V + 1 + T] (see the module docstring); NOT_A_SLOT where no candidate."""
        encoded = self.encode(index, event_types, lengths)
        _, final, valid = encoded
        explore = torch.softmax(self.explore_logits(index, final, valid, None), dim=1)
        vocabulary_slots = torch.arange(explore.shape[1], device=index.device).unsqueeze(0)
        if not self.repeat:
            session = torch.full(index.shape, NOT_A_SLOT, dtype=explore.dtype, device=index.device)
            return torch.cat([explore.masked_fill(vocabulary_slots == UNKNOWN, NOT_A_SLOT), session], dim=1)
        log_gate, log_stay, log_attention = self.repeat_parts(index, event_types, lengths, encoded)
        mass = torch.exp(log_gate.unsqueeze(1) + log_attention) * valid.to(explore.dtype)
        known = valid & (index != UNKNOWN)
        vocabulary = (torch.exp(log_stay).unsqueeze(1) * explore).scatter_add(
            1, index * known, mass * known.to(mass.dtype)
        )
        vocabulary = vocabulary.masked_fill(vocabulary_slots == UNKNOWN, NOT_A_SLOT)
        return torch.cat([vocabulary, _new_item_slots(raw, valid & ~known, mass)], dim=1)

    def label_slots(
        self, index: torch.Tensor, raw: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """[n]: the slot of each next item in `forward`'s answer (its vocabulary index, or the first step showing it
        when the vocabulary does not know it), -1 where the model cannot name it."""
        label, label_raw = target[:, 0], target[:, 1]
        if not self.repeat:
            return torch.where(label != UNKNOWN, label, -1)
        valid = torch.arange(index.shape[1], device=index.device).unsqueeze(0) < lengths.unsqueeze(1)
        shown = (raw == label_raw.unsqueeze(1)) & valid & (index == UNKNOWN)
        new = int(self.bias.numel()) + shown.to(torch.int64).argmax(dim=1)
        return torch.where(label != UNKNOWN, label, torch.where(shown.any(dim=1), new, -1))


def _new_item_slots(raw: torch.Tensor, new: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """[n, T]: at the first step showing each item outside the vocabulary, the repeat mass of all its steps."""
    same = (raw.unsqueeze(2) == raw.unsqueeze(1)) & new.unsqueeze(2) & new.unsqueeze(1)
    summed = (same.to(mass.dtype) * mass.unsqueeze(1)).sum(dim=2)
    steps = raw.shape[1]
    earlier = torch.ones(steps, steps, dtype=torch.bool, device=raw.device).tril(diagonal=-1)
    first = new & ~(same & earlier.unsqueeze(0)).any(dim=2)
    return summed.masked_fill(~first, NOT_A_SLOT)


class TopSlots(nn.Module):
    """What is exported: the `k` likeliest items as ids (the vocabulary's or the session's own) and their
    probabilities, best first. Takes the vocabulary indices (the graph's LabelEncoder computes them) and the raw
    ids (for the session's items outside the vocabulary)."""

    def __init__(self, net: SessionNet, table: torch.Tensor, k: int) -> None:
        super().__init__()
        self.net = net
        self.k = k
        self.table: torch.Tensor
        self.register_buffer("table", table)  # vocabulary index -> item id (index 0: 0)

    def forward(
        self, index: torch.Tensor, raw: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores, slots = torch.topk(self.net(index, raw, event_types, lengths), self.k, dim=1)
        size = self.table.shape[0]
        from_vocabulary = self.table[slots.clamp(max=size - 1)]
        from_session = raw.gather(1, (slots - size).clamp(min=0))
        return torch.where(slots < size, from_vocabulary, from_session), scores
