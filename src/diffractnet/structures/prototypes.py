"""Structure pools grouped by prototype, and seed 001's square-root sampling over them.

The pool shipped with pymatgen is the AFLOW Library of Crystallographic Prototypes (288 entries).
Square-root law (seed 001): when a pool is grouped by prototype, the number drawn from a group of
size n_g is proportional to sqrt(n_g), so common prototypes do not swamp rare ones.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from diffractnet.errors import StructureError
from diffractnet.structures.crystal import Crystal


@lru_cache(maxsize=1)
def aflow_prototype_pool() -> tuple[Crystal, ...]:
    """All AFLOW prototypes shipped with pymatgen, as Crystals named by their AFLOW label."""
    import warnings

    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY

    crystals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in AFLOW_PROTOTYPE_LIBRARY:
            tags = entry["tags"]
            mineral = tags.get("mineral") or ""
            source = f"AFLOW prototype {tags['aflow']}" + (f" ({mineral})" if mineral else "")
            crystals.append(Crystal.from_pymatgen(entry["snl"].structure, name=tags["aflow"], source=source))
    return tuple(crystals)


def group_by_prototype(crystals: list[Crystal]) -> dict[str, list[Crystal]]:
    """Group crystals by the AFLOW prototype pymatgen matches them to ('unmatched' when none)."""
    from pymatgen.analysis.prototypes import AflowPrototypeMatcher

    matcher = AflowPrototypeMatcher()
    groups: dict[str, list[Crystal]] = {}
    for crystal in crystals:
        matches = matcher.get_prototypes(crystal.to_pymatgen()) or []
        key = matches[0]["tags"]["aflow"] if matches else "unmatched"
        groups.setdefault(key, []).append(crystal)
    return groups


def square_root_allocation(group_sizes: dict[str, int], n_total: int) -> dict[str, int]:
    """How many to draw from each group: ∝ sqrt(size), never more than a group holds, summing to n_total."""
    if n_total < 0:
        raise StructureError(f"number of structures to draw must be >= 0, got {n_total}")
    available = sum(group_sizes.values())
    if n_total > available:
        raise StructureError(f"cannot draw {n_total} structures from a pool of {available}")
    alloc = {key: 0 for key in group_sizes}
    open_keys = [k for k in group_sizes if group_sizes[k] > 0]
    remaining = n_total
    while remaining > 0:
        # water-filling: a group whose sqrt share reaches its size is drawn whole, the rest re-shared
        weights = np.sqrt([group_sizes[k] for k in open_keys])
        share = weights / weights.sum() * remaining
        full = [k for k, s in zip(open_keys, share) if s >= group_sizes[k]]
        if full:
            for key in full:
                alloc[key] = group_sizes[key]
                remaining -= group_sizes[key]
            open_keys = [k for k in open_keys if k not in full]
            continue
        base = np.floor(share).astype(int)  # share < size, so floor + 1 never exceeds a group
        for key, add in zip(open_keys, base):
            alloc[key] = int(add)
        for idx in np.argsort(-(share - base), kind="stable")[: remaining - int(base.sum())]:
            alloc[open_keys[idx]] += 1  # largest remainders first
        break
    return alloc


def square_root_sample(groups: dict[str, list], n_total: int, seed: int) -> list:
    """Draw ``n_total`` items from prototype ``groups`` following the square-root law (reproducible)."""
    rng = np.random.default_rng(seed)
    alloc = square_root_allocation({k: len(v) for k, v in groups.items()}, n_total)
    chosen = []
    for key in sorted(groups):
        if alloc[key]:
            picks = rng.choice(len(groups[key]), size=alloc[key], replace=False)
            chosen.extend(groups[key][i] for i in sorted(picks))
    return chosen
