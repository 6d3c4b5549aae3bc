"""The synthetic shop's items: categories, log-normal prices, Zipf popularity, and the draws from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from journey.datasets.synthetic.config import SyntheticConfig


@dataclass(frozen=True)
class Catalogue:
    """Items plus the cumulative Zipf weights that let one searchsorted draw from any category or all of them."""

    category: np.ndarray  # per item, 0-based
    price: np.ndarray
    rank: np.ndarray  # 0 = most popular
    order: np.ndarray  # items sorted by (category, rank)
    cum: np.ndarray  # cumulative weight along `order`
    cat_lo: np.ndarray  # weight before each category's block
    cat_w: np.ndarray  # each category's total weight
    cat_start: np.ndarray  # block bounds in `order`
    cat_end: np.ndarray

    @classmethod
    def build(cls, cfg: SyntheticConfig, rng: np.random.Generator) -> Catalogue:
        n, k = cfg.n_items, cfg.n_categories
        category = np.concatenate([np.arange(k), rng.integers(k, size=n - k)])  # no category is empty
        rank = rng.permutation(n)
        log_median = np.log(cfg.price_median) + cfg.price_category_sigma * rng.standard_normal(k)
        raw_price = np.exp(log_median[category] + cfg.price_item_sigma * rng.standard_normal(n))
        price = np.maximum(np.round(raw_price, 2), 0.01)
        order = np.lexsort((rank, category))
        cum = np.cumsum((rank[order] + 1.0) ** -cfg.zipf_exponent)
        cat_end = np.cumsum(np.bincount(category, minlength=k))
        cat_start = cat_end - np.bincount(category, minlength=k)
        cat_hi = cum[cat_end - 1]
        cat_lo = np.where(cat_start > 0, cum[np.maximum(cat_start - 1, 0)], 0.0)
        return cls(category, price, rank, order, cum, cat_lo, cat_hi - cat_lo, cat_start, cat_end)

    def draw(self, rng: np.random.Generator, pref: np.ndarray, p_pref: np.ndarray) -> np.ndarray:
        """Zipf-popular items; each draw comes from its preferred category with probability `p_pref`."""
        use = rng.random(pref.size) < p_pref
        lo = np.where(use, self.cat_lo[pref], 0.0)
        width = np.where(use, self.cat_w[pref], self.cum[-1])
        idx = np.searchsorted(self.cum, lo + rng.random(pref.size) * width, side="right")
        first = np.where(use, self.cat_start[pref], 0)
        last = np.where(use, self.cat_end[pref], self.cum.size) - 1
        return np.asarray(self.order[np.clip(idx, first, last)], dtype=np.int64)
