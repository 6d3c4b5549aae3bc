"""Causal self-attention over right-padded sessions: the transformer the session models share (SASRec next item,
the transformer next action), like `torch_loop.py` a stage every torch model kind may use, not a model kind.

    CausalTransformer(width, steps, heads, layers, ffn_factor, dropout)   x [n, T, width], lengths [n] -> [n, T, width]
    CausalTransformer.shaped(width, steps, config)                        the same, shaped by a model's config
    last_step(states, lengths)                                           the state at each row's last real step

Each step gets a learnt embedding of its distance from the session's end (the last step is always position 0,
whatever the length: right-padded inputs put it at a different index in every row). Pre-norm blocks (multi-head
attention, then a GELU feed-forward, each with a residual) run under a causal mask: step t attends to steps <= t.
With right padding that is the whole mask: a real step only ever sees real steps, so no key-padding mask is needed,
no row of the attention is ever all masked (no NaN), and the padded steps after the last real one compute values
nobody reads.

The attention is written out (Linear, matmul, masked softmax) instead of `nn.MultiheadAttention`, whose fused
inference path is not what the ONNX exporter sees; the exported graph is then the same ops as the module.
"""

from __future__ import annotations

from typing import Final, Protocol

import torch
from torch import nn

from journey.errors import InvalidInputError

MASKED: Final = -1e9  # an attention logit never chosen, finite so that softmax stays NaN-free


class CausalBlock(nn.Module):
    """Pre-norm: x + attention(norm(x)) under the causal mask, then x + feed_forward(norm(x))."""

    def __init__(self, width: int, heads: int, ffn_factor: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise InvalidInputError(f"heads ({heads}) must divide the width ({width})", field="heads", value=heads)
        self.heads = heads
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ffn_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, ffn_factor * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_factor * width, width)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        n, steps, width = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).chunk(3, dim=2)
        q, k, v = (t.reshape(n, steps, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        weights = (q @ k.transpose(2, 3)) / (width // self.heads) ** 0.5
        weights = self.dropout(torch.softmax(weights.masked_fill(blocked, MASKED), dim=3))
        mixed = (weights @ v).transpose(1, 2).reshape(n, steps, width)
        x = x + self.dropout(self.out(mixed))
        result: torch.Tensor = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return result


class TransformerShape(Protocol):
    """What a model's config says about its transformer (SASRecConfig, NextActionConfig)."""

    @property
    def heads(self) -> int: ...
    @property
    def layers(self) -> int: ...
    @property
    def ffn_factor(self) -> int: ...
    @property
    def dropout(self) -> float: ...


class CausalTransformer(nn.Module):
    """Steps [n, T, width] (+ distance from the end) -> `layers` causal blocks -> layer norm -> [n, T, width]."""

    def __init__(self, width: int, steps: int, *, heads: int, layers: int, ffn_factor: int, dropout: float) -> None:
        super().__init__()
        self.steps = steps
        self.positions = nn.Embedding(steps, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(CausalBlock(width, heads, ffn_factor, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.blocked: torch.Tensor
        self.register_buffer("blocked", torch.ones(steps, steps, dtype=torch.bool).triu(diagonal=1))

    @classmethod
    def shaped(cls, width: int, steps: int, shape: TransformerShape) -> CausalTransformer:
        return cls(
            width, steps, heads=shape.heads, layers=shape.layers, ffn_factor=shape.ffn_factor, dropout=shape.dropout
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        order = torch.arange(self.steps, device=x.device).unsqueeze(0)
        distance = (lengths.unsqueeze(1) - 1 - order).clamp(0, self.steps - 1)
        x = self.dropout(x + self.positions(distance))
        for block in self.blocks:
            x = block(x, self.blocked)
        result: torch.Tensor = self.norm(x)
        return result


def last_step(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[n, width]: each row's state at its last real step; zeros for an empty session (unknown to the store)."""
    last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, states.shape[2])
    return states.gather(1, last).squeeze(1) * (lengths > 0).unsqueeze(1).to(states.dtype)
