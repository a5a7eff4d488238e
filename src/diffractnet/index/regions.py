"""Regions of one orientation in a map, and the pooled beam-direction evidence of each.

A thin-foil pattern off a zone axis lights only a few spots, and several orientations can explain
them almost equally well: one pattern alone then picks the wrong one for a whole grain (on a
LiNiO2 scan, a third of the pixels sat in grains indexed consistently 30–90° off, each pattern's
refined score within 0.1 % of the truth's). Pixels of one grain share the orientation, so their
evidence adds up: the network's log-probabilities are summed over a region, and the candidates are
judged by the sum of their refined correlations over several of its pixels (``revote_regions``).

Measured on the bench's LiNiO2 scan: the pooled candidates do hold the right beam direction (within
1–2°) for the wrongly indexed grains, and the vote fixes some (one grain 94° → 3.6°, another 67° →
0.4°), but the refined correlation itself ranks a wrong orientation above the right one in other
grains (one 0.1° grain went to 37° at +3 % score): the objective, not the search, is the limit, so
the vote is off by default (``map_scan(region_vote=True)`` / ``diffractnet map --region-vote``).
Refining on a region's mean pattern (noise and per-spot factors averaged away) does not separate them
either: on the same scan a 260-pixel grain indexed 82° off scored 14.8020 at its answer and 14.8020
at the truth (Al: grains 60° off, the <111> twin relation, within 0.03 %). The kinematic pattern of
those grains is the same at both orientations within this detector's reach; a right answer there
needs information the simulation does not carry (dynamical intensities, HOLZ lines), not a better search.

- ``orientation_regions``: connected regions of 4-neighbours closer than ``max_deg``;
- ``region_candidates``: per region, the classes with the largest summed log-probability, from each
  pixel's top-k list (a class missing from a pixel's list counts as that list's smallest value, an
  upper bound of the truth).
"""

from __future__ import annotations

import numpy as np
import torch

from diffractnet.analysis.misorientation import misorientation_deg
from diffractnet.structures.crystal import Crystal


def orientation_regions(quaternions: np.ndarray, crystal: Crystal, max_deg: float = 2.0) -> np.ndarray:
    """(ny, nx, 4) map → (ny, nx) int region labels 0..n-1 (4-connected, neighbours within ``max_deg``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ny, nx = quaternions.shape[:2]
    index = np.arange(ny * nx).reshape(ny, nx)
    rows, cols = [], []
    for a, b, qa, qb in ((index[:, :-1], index[:, 1:], quaternions[:, :-1], quaternions[:, 1:]),
                         (index[:-1], index[1:], quaternions[:-1], quaternions[1:])):
        close = misorientation_deg(qa, qb, crystal) < max_deg
        rows.append(a[close]), cols.append(b[close])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(ny * nx, ny * nx))
    _, labels = connected_components(graph, directed=False)
    return labels.reshape(ny, nx)


def region_candidates(labels: np.ndarray, top_classes: np.ndarray, top_logprob: np.ndarray,
                      n_candidates: int, regions: np.ndarray | None = None) -> np.ndarray:
    """(len(regions), n_candidates) class indices with the largest summed log-probability per region.

    ``labels`` (ny, nx) from ``orientation_regions``; ``top_classes``/``top_logprob`` (ny, nx, k) each
    pixel's k most probable classes and their log-probabilities; ``regions`` the labels to answer for
    (default: all). Regions with fewer listed classes than asked repeat their best one.
    """
    from scipy.sparse import coo_matrix

    lab = labels.reshape(-1)
    cls = top_classes.reshape(len(lab), -1).astype(np.int64)
    lp = top_logprob.reshape(len(lab), -1).astype(np.float64)
    gain = lp - lp.min(axis=1, keepdims=True)  # above each pixel's floor (the floor is common to all classes)
    n_regions, n_classes = int(lab.max()) + 1, int(cls.max()) + 1
    pooled = coo_matrix((gain.reshape(-1), (np.repeat(lab, cls.shape[1]), cls.reshape(-1))),
                        shape=(n_regions, n_classes)).tocsr()  # duplicates are summed
    wanted = np.arange(n_regions) if regions is None else np.asarray(regions, dtype=np.int64)
    out = np.empty((len(wanted), n_candidates), dtype=np.int64)
    for i, region in enumerate(wanted):
        row = pooled.getrow(int(region))
        order = row.indices[np.argsort(-row.data, kind="stable")]
        take = order[:n_candidates]
        out[i] = np.concatenate([take, np.full(n_candidates - len(take), take[0])])
    return out


def _pixels(scan, flat: np.ndarray, rows_per_block: int) -> np.ndarray:
    """Patterns (len(flat), H, W) float32 of the scan pixels with flat indices ``flat``, reading only the
    row blocks that hold some of them."""
    ny, nx = scan.scan_shape
    out = np.empty((len(flat), *scan.pattern_shape), dtype=np.float32)
    y = flat // nx
    for y0 in range(0, ny, rows_per_block):
        y1 = min(ny, y0 + rows_per_block)
        here = np.nonzero((y >= y0) & (y < y1))[0]
        if len(here):
            block = scan.rows(y0, y1)
            out[here] = block[y[here] - y0, flat[here] % nx]
    return out


def revote_regions(scan, indexer, fields: dict, *, max_deg: float = 2.0, min_pixels: int = 6, candidates: int = 3,
                   peaks: int = 3, representatives: int = 8, rows_per_block: int = 32, batch: int = 64,
                   min_gain: float = 1e-3) -> dict:
    """Re-decide each region's orientation from its pooled evidence; updates ``fields`` in place
    (``quaternions`` (ny, nx, 4), ``correlation``) and returns counts of what changed.

    For every region of at least ``min_pixels``: its ``candidates`` classes of largest summed
    log-probability are turned in-plane (at the ``peaks`` best turns of each) and refined on its
    ``representatives`` best-correlated pixels; a candidate whose summed refined correlation beats the
    region's current one by more than the fraction ``min_gain`` wins, and
    then every pixel of the region is refined from it (``indexer``: an ``OrientationIndexer`` with a
    beam-direction head and refinement).
    """
    from diffractnet.tasks.orientation import matrices_to_quaternions

    q, corr = fields["quaternions"], fields["correlation"]
    ny, nx = corr.shape
    labels = orientation_regions(q, indexer.crystal, max_deg).reshape(-1)
    sizes = np.bincount(labels)
    regions = np.nonzero(sizes >= min_pixels)[0]
    if not len(regions):
        return {"regions": 0, "changed_regions": 0, "changed_pixels": 0}
    classes = region_candidates(labels.reshape(ny, nx), fields["top_classes"], fields["top_logprob"], candidates,
                                regions)
    flat_corr = corr.reshape(-1)
    order = np.argsort(labels, kind="stable")  # pixels grouped by region, each group in scan order
    groups = np.split(order, np.cumsum(sizes)[:-1])
    reps = [groups[r][np.argsort(-flat_corr[groups[r]], kind="stable")[:representatives]] for r in regions]
    rep_flat = np.concatenate(reps)
    rep_region = np.repeat(np.arange(len(regions)), [len(r) for r in reps])
    patterns = _pixels(scan, rep_flat, rows_per_block)
    rot_all, score_all = [], []
    for s0 in range(0, len(rep_flat), batch):
        sl = slice(s0, s0 + batch)
        rot, score = indexer.refine_candidates(patterns[sl], classes[rep_region[sl]], scan.reciprocal_px_invA,
                                                 peaks)
        rot_all.append(rot), score_all.append(score)
    rot, score = torch.cat(rot_all), torch.cat(score_all)  # (P, 2C, 3, 3), (P, 2C)
    summed = np.zeros((len(regions), score.shape[1]))
    np.add.at(summed, rep_region, score.numpy())
    current = np.bincount(rep_region, weights=flat_corr[rep_flat], minlength=len(regions))
    best = summed.argmax(1)
    gain = summed[np.arange(len(regions)), best] / np.maximum(current, 1e-12) - 1
    better = np.nonzero(gain > min_gain)[0]
    changed = 0
    if len(better):
        start = {}
        for i in better:  # the region's start: its best representative's refinement of the winning candidate
            mine = np.nonzero(rep_region == i)[0]
            start[regions[i]] = rot[mine[int(score[mine, best[i]].argmax())], best[i]]
        pixels = np.nonzero(np.isin(labels, regions[better]))[0]
        for y0 in range(0, ny, rows_per_block):  # one row block in memory at a time
            here = pixels[(pixels // nx >= y0) & (pixels // nx < y0 + rows_per_block)]
            if not len(here):
                continue
            block = scan.rows(y0, min(ny, y0 + rows_per_block))
            starts = torch.stack([start[labels[p]] for p in here])
            r_new, c_new = indexer.refine_from(block[here // nx - y0, here % nx], starts, try_beam_flip=False,
                                               reciprocal_px_invA=scan.reciprocal_px_invA)
            q.reshape(-1, 4)[here] = matrices_to_quaternions(r_new)
            corr.reshape(-1)[here] = c_new.numpy()
        changed = len(pixels)
    return {"regions": int(len(regions)), "changed_regions": int(len(better)), "changed_pixels": int(changed)}
