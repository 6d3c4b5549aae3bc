"""A/B routing: which variant (model version) answers a user, sticky, weighted, with minimal reshuffles.

Standard library only: it runs on every request and is imported by the service and by analysis alike.

Assignment is weighted rendezvous hashing (Schindelhauer & Schomaker's "weighted distributed hash tables";
highest random weight). For each variant, a stable hash of (salt, variant name, user id) gives a uniform point
u in (0, 1); the variant scores -ln(u) / weight, and the lowest score wins. For a fixed user the scores are
independent Exp(weight) draws, so

- **split**: a variant wins for a fraction weight / sum(weights) of users (exactly, in expectation);
- **sticky**: the hash is BLAKE2b of the bytes, not Python's per-process `hash()`, so the same (salt, user, route)
  gives the same variant in every process, host and restart;
- **minimal reshuffle**: a variant's score depends on its own weight only, and scaling every weight by the same
  factor changes no winner. So when one variant's weight changes and the others keep their relative weights (what
  `journey deploy` does), users move only *into* that variant (weight up) or only *out of* it (weight down), and
  the fraction of users who move is exactly the change of its share, the minimum any assignment can achieve
  (e.g. 90/10 -> 80/20 moves 10% of users, all of them from the first variant to the second). Adding a variant
  moves only the users it takes; removing one moves only its users; renaming one reshuffles it (the name is hashed).
  A cumulative-interval layout would not do this: a weight change in the middle shifts every later boundary.

Changing the salt (a new experiment) reassigns everyone independently of the last experiment. The shadow version is
carried in the assignment for the caller to score and log; it is never the variant that answers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

_SCALE: Final = float(2**64)
_SEPARATOR: Final = b"\x1f"  # ASCII unit separator: cannot occur in a salt, a variant name or a user id


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of a route: its name (the metric label and the hash key), the model version it serves, its weight."""

    name: str
    version: int
    weight: float


@dataclass(frozen=True, slots=True)
class Assignment:
    """Who answers a request: the variant and its model version; `shadow_version` is scored and logged only."""

    variant: str
    model_version: int
    shadow_version: int | None
    experiment: str | None


class VariantLike(Protocol):
    """What `Router.from_route` reads of a variant (`journey.registry.RouteVariant` has these attributes)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def weight(self) -> float: ...


class RouteLike(Protocol):
    """What `Router.from_route` reads of a route (`journey.registry.Route` has these attributes)."""

    @property
    def variants(self) -> Sequence[VariantLike]: ...
    @property
    def salt(self) -> str: ...
    @property
    def shadow_version(self) -> int | None: ...
    @property
    def experiment(self) -> str | None: ...


def unit_point(salt: str, variant: str, user_id: int | str) -> float:
    """The user's uniform point in (0, 1) for one variant: BLAKE2b-64 of `salt 0x1f variant 0x1f user_id`.

    `user_id` is hashed as its decimal text, so 12 and "12" are the same user.
    """
    message = _SEPARATOR.join((salt.encode(), variant.encode(), str(user_id).encode()))
    digest = hashlib.blake2b(message, digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


class Router:
    """Assigns users to the variants of one route. Immutable: build a new one when the route changes.

    >>> router = Router([Variant("control", 1, 90), Variant("candidate", 2, 10)], salt="s1", shadow_version=3)
    >>> a = router.assign(12)
    >>> a == router.assign("12") and a.variant in {"control", "candidate"} and a.shadow_version == 3
    True
    """

    __slots__ = ("_live", "_prefixes", "experiment", "salt", "shadow_version", "variants")

    def __init__(
        self,
        variants: Iterable[Variant],
        *,
        salt: str,
        shadow_version: int | None = None,
        experiment: str | None = None,
    ) -> None:
        self.variants: tuple[Variant, ...] = tuple(variants)
        self.salt = salt
        self.shadow_version = shadow_version
        self.experiment = experiment
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        for v in self.variants:
            if not (isinstance(v.weight, int | float) and math.isfinite(v.weight) and v.weight >= 0):
                raise ValueError(f"variant {v.name!r}: weight must be a finite number >= 0, got {v.weight!r}")
        self._live = tuple(v for v in self.variants if v.weight > 0)
        if not self._live:
            raise ValueError("a route needs at least one variant with a positive weight")
        if shadow_version is not None and any(v.version == shadow_version for v in self.variants):
            raise ValueError(f"version {shadow_version} is a variant; the shadow must be a version no variant serves")
        # The hash input up to the user id, per live variant: hashed once per variant, copied per request.
        self._prefixes = tuple(
            hashlib.blake2b(_SEPARATOR.join((salt.encode(), v.name.encode(), b"")), digest_size=8) for v in self._live
        )

    @classmethod
    def from_route(cls, route: RouteLike) -> Router:
        """A router for a registry route (`journey.registry.Route`, or anything with the same attributes)."""
        return cls(
            (Variant(v.name, v.version, v.weight) for v in route.variants),
            salt=route.salt,
            shadow_version=route.shadow_version,
            experiment=route.experiment,
        )

    @classmethod
    def from_dict(cls, route: Mapping[str, Any]) -> Router:
        """A router for a route as JSON (`Route.as_dict()` / `Route.document()`)."""
        return cls(
            (Variant(str(v["name"]), int(v["version"]), float(v["weight"])) for v in route["variants"]),
            salt=str(route.get("salt") or ""),
            shadow_version=route.get("shadow_version"),
            experiment=route.get("experiment"),
        )

    def shares(self) -> dict[str, float]:
        """The expected fraction of users per variant (0..1), in route order."""
        total = sum(v.weight for v in self.variants)
        return {v.name: v.weight / total for v in self.variants}

    def variant_for(self, user_id: int | str) -> Variant:
        """The variant that answers `user_id` (lowest -ln(u)/weight; ties, which need equal 64-bit hashes, go to
        the earlier variant)."""
        if len(self._live) == 1:
            return self._live[0]
        user = str(user_id).encode()
        best = self._live[0]
        best_score = math.inf
        for variant, prefix in zip(self._live, self._prefixes, strict=True):
            digest = prefix.copy()
            digest.update(user)
            point = (int.from_bytes(digest.digest(), "big") + 0.5) / _SCALE
            score = -math.log(point) / variant.weight
            if score < best_score:
                best, best_score = variant, score
        return best

    def assign(self, user_id: int | str) -> Assignment:
        """The variant, its model version, and the shadow version (never the one returned to the client)."""
        variant = self.variant_for(user_id)
        return Assignment(variant.name, variant.version, self.shadow_version, self.experiment)


def assign(
    user_id: int | str,
    variants: Sequence[Variant],
    *,
    salt: str,
    shadow_version: int | None = None,
    experiment: str | None = None,
) -> Assignment:
    """`Router(variants, ...).assign(user_id)` as one pure function (build a `Router` to route many requests)."""
    return Router(variants, salt=salt, shadow_version=shadow_version, experiment=experiment).assign(user_id)
