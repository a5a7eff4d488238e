"""Local orientation refinement: sharpen a network's estimate against the pattern itself.

A network and a class template give an orientation good to a degree or two; the spots of the pattern
pin it better. From that start (optionally also from its 180° turn about the beam, which kinematic
patterns barely tell apart: ``try_beam_flip``), a pattern search over small rotations maximises the
normalised correlation between the kinematic template (spot weights |F|²·exp(−(s/σ_s)²) at their
detector positions) and the band-passed pattern sampled there (bicubic: bilinear sampling pulls a fit
toward pixel centres by ~0.5°). Each step scores a 10-point stencil (the start, ±step about each lab
axis and the three +i+j diagonals), fits the quadratic through it, scores its Newton step too, and
moves to the best of the 11; the step halves when the best is the start or an unclamped Newton step.
Everything is batched tensors: all patterns × 11 candidate rotations × the K reflections nearest the
Ewald sphere at the start, one ``grid_sample`` per evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from diffractnet.index.polar import band_pass
from diffractnet.physics.reflections import reflection_set
from diffractnet.physics.spots import SpotSimulator
from diffractnet.structures.crystal import Crystal

BEAM_FLIP = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))  # the 180° turn about the beam (lab z)


@dataclass(frozen=True)
class RefineSettings:
    """Search schedule: one stage per entry of ``smooth_px`` (Gaussian smoothing of the image [px],
    coarse to fine), each starting at the matching ``start_step_deg`` and halving the step down to
    ``min_step_deg`` (``max_iterations`` per stage). ``reflections`` K kept per pattern;
    ``excitation_width_invA`` σ_s of the template weight exp(−(s/σ_s)²) (≈ √3/(π·thickness), the
    Gaussian with the sinc² central lobe's curvature), times the stage's ``width_scale`` (a coarse
    stage sees the spots of orientations a few degrees away); ``min_g_invA`` reflections nearer the direct beam
    are ignored; ``intensity_power`` on |F|² (1: the matched filter of linear intensities);
    ``precession_deg`` the precession semi-angle [deg] (0: none): the weight is then averaged over
    ``precession_steps`` beam directions on the cone, as ``physics.spots`` averages the profile;
    ``flip_margin`` the fraction by which the 180°-turned candidate must out-score the start to replace
    it (the start's in-plane sense is the network's evidence: a tie within noise keeps it); ``search``
    ``quadric`` (10 stencil points and the full Newton step), ``axes`` (7 points: the start and ±step
    about each lab axis, plus the Newton step of the three axis parabolas) or ``cube`` (the 27 points
    of the 3×3×3 grid, no Newton step). The defaults (0.5° first step, 10 iterations, K = 24) were chosen
    on the bench's LiNiO2 scan and checked on a second scan (seed 202), where they beat the earlier
    cube search (1°, 12 iterations, K = 48) at both doses."""

    smooth_px: tuple[float, ...] = (1.2,)
    start_step_deg: tuple[float, ...] = (0.5,)
    width_scale: tuple[float, ...] = (1.0,)
    min_step_deg: float = 0.05
    max_iterations: int = 10
    reflections: int = 24
    excitation_width_invA: float = 0.01
    min_g_invA: float = 0.15
    intensity_power: float = 1.0
    precession_deg: float = 0.0
    precession_steps: int = 8
    try_beam_flip: bool = False
    flip_margin: float = 0.0
    background_px: float = 6.0
    search: str = "quadric"

    @classmethod
    def for_physics(cls, physics, **changes) -> "RefineSettings":
        """Settings matched to a ``ScanPhysics``: σ_s from its mean thickness, fine smoothing = spot width,
        and the 180° turn about the beam tried too: off a zone axis the excitation errors of g and −g
        differ, so the pattern tells the two apart (on a LiNiO2 scan it took the median error from 32° to 1.3°),
        with a 0.1 % margin: on the bench's Al scan the turn won by less than that on most patterns, and
        without the margin the map's median error was 10.3° instead of 4.1° (LiNiO2: 0.48° → 0.50°).
        A batch whose median |gap| is below the margin turns no pattern (``_turn_wins``): on the bench's
        Al scan (seed 101) the map went from 25.2° to 9.7° (never turning: 7.5°) and LiNiO2 stayed at
        0.50° (a one-off sweep of the same models; ``bench/orientation.py`` printed the 9.7° and 0.50°)."""
        changes = {"flip_margin": 1e-3, **changes}
        t_mean = float(np.mean(physics.thickness_A))
        width = math.sqrt(3) / (math.pi * t_mean)
        return cls(**{"excitation_width_invA": width, "smooth_px": (physics.spot_sigma_px,), "try_beam_flip": True,
                      "precession_deg": float(getattr(physics, "precession_deg", 0.0)), **changes})


def _axis_angle_matrices(axes_angles: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors [rad] → (..., 3, 3) matrices (Rodrigues)."""
    theta = axes_angles.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    k = axes_angles / theta
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    K = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(*k.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axes_angles.dtype, device=axes_angles.device).expand_as(K)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    return eye + s * K + (1 - c) * (K @ K)


def _neighbour_steps(search: str) -> torch.Tensor:
    """Unit-step rotation vectors around zero (zero first): ``cube`` the 27 points of the 3×3×3 grid,
    ``axes`` the 7 points zero, ±x, ±y, ±z (ordered 0, −x, +x, −y, +y, −z, +z)."""
    if search == "cube":
        return torch.stack(torch.meshgrid(*[torch.tensor([0.0, -1.0, 1.0])] * 3, indexing="ij"), -1).reshape(-1, 3)
    eye = torch.eye(3)
    axes = torch.cat([torch.zeros(1, 3), torch.stack([-eye, eye], 1).reshape(6, 3)])
    if search == "axes":
        return axes
    if search == "quadric":  # + the three +i+j diagonals: enough points for the full quadratic
        return torch.cat([axes, eye[[0, 0, 1]] + eye[[1, 2, 2]]])
    raise ValueError(f"unknown refinement search {search!r}; use 'quadric', 'axes' or 'cube'")


def _axis_newton(scores: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """(B, 3) rotation vector [rad] to the peak of the three parabolas through the ``axes`` stencil's
    scores (B, 7) at spacing ``step`` (B,), each coordinate kept within ±step; an axis whose parabola
    opens upward steps a full ``step`` toward its better side."""
    centre, minus, plus = scores[:, :1], scores[:, 1::2], scores[:, 2::2]
    slope = (plus - minus) / 2
    curvature = plus - 2 * centre + minus
    toward = torch.sign(slope)
    peak = torch.where(curvature < 0, -slope / curvature.clamp(max=-1e-12), toward).clamp(-1, 1)
    return peak * step[:, None]


def _quadric_newton(scores: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """(B, 3) rotation vector [rad] to the peak of the quadratic through the ``quadric`` stencil's scores
    (B, 10) at spacing ``step`` (B,): gradient and Hessian by finite differences, the full Newton step
    where the Hessian is negative definite (else the axis parabolas' step), scaled to stay within ±step."""
    centre, minus, plus, diag = scores[:, 0], scores[:, 1:7:2], scores[:, 2:7:2], scores[:, 7:]
    grad = (plus - minus) / 2
    hess = torch.diag_embed(plus - 2 * centre[:, None] + minus)
    for k, (i, j) in enumerate(((0, 1), (0, 2), (1, 2))):
        hess[:, i, j] = hess[:, j, i] = diag[:, k] - plus[:, i] - plus[:, j] + centre
    _, info = torch.linalg.cholesky_ex(-hess)
    ok = info == 0
    eye = torch.eye(3, dtype=hess.dtype).expand_as(hess)
    full, bad = torch.linalg.solve_ex(torch.where(ok[:, None, None], hess, -eye), -grad)
    ok &= (bad == 0) & torch.isfinite(full).all(-1)
    full = full / full.abs().amax(-1, keepdim=True).clamp(min=1.0)  # keep the direction, inside ±1
    fallback = _axis_newton(scores[:, :7], torch.ones_like(step))
    return torch.where(ok[:, None], full.nan_to_num(), fallback) * step[:, None]


class Refiner:
    """Refines orientations of one crystal on one detector set-up (``voltage_kV``, ``reciprocal_px_invA``)."""

    def __init__(self, crystal: Crystal, voltage_kV: float, reciprocal_px_invA: float, image_size_px: int,
                 settings: RefineSettings = RefineSettings(), g_max_invA: float | None = None) -> None:
        self.settings, self.px = settings, float(reciprocal_px_invA)
        self.size = int(image_size_px)
        # only reflections that always land on the detector: one outside would pull the fit off
        g_max = min(g_max_invA or np.inf, (self.size / 2 - 3 * max(settings.smooth_px)) * self.px)
        refl = reflection_set(crystal, g_max)
        g = torch.as_tensor(refl.g_crystal_invA, dtype=torch.float32)
        keep = g.norm(dim=-1) >= settings.min_g_invA
        self.g = g[keep]
        self.f2 = torch.as_tensor(refl.intensity, dtype=torch.float32)[keep] ** settings.intensity_power
        self.sim = SpotSimulator(voltage_kV, max(g_max, 0.1), precession_angle_deg=settings.precession_deg,
                                 precession_steps=settings.precession_steps)
        self.steps = _neighbour_steps(settings.search)
        self._width = settings.excitation_width_invA

    def _select(self, rot: torch.Tensor) -> torch.Tensor:
        """(B, K) indices of the reflections with the largest template weight at rotations ``rot``,
        judged with a 4× wider excitation window (so spots a few degrees away are kept)."""
        width, self._width = self._width, 4 * self._width
        w = self._weights(rot[:, None], self.g[None, None])  # (B, 1, G)
        self._width = width
        k = min(self.settings.reflections, self.g.shape[0])
        return w[:, 0].topk(k, dim=-1).indices

    def _weights(self, rot: torch.Tensor, g: torch.Tensor, positions: bool = False):
        """Template weights (and detector positions [px]) of reflections ``g`` (B, 1|C, K, 3) at ``rot`` (B, C, 3, 3)."""
        g_lab = torch.einsum("bcji,bckj->bcki", rot, g.expand(rot.shape[0], rot.shape[1], *g.shape[-2:]))
        s = self.sim.excitation_errors(g_lab)  # (..., M): one per beam direction (M = 1 without precession)
        w = torch.exp(-((s / self._width) ** 2)).mean(-1)
        if not positions:
            return w * self.f2[None, None]
        centre = (self.size - 1) / 2
        return w, g_lab[..., :2] / self.px + centre

    def _scores(self, smoothed: torch.Tensor, rot: torch.Tensor, g: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """(B, C) normalised correlation of templates at ``rot`` (B, C, 3, 3) with ``smoothed`` (B, H, W)."""
        w, xy = self._weights(rot, g[:, None], positions=True)
        w = w * f2[:, None]
        grid = xy / (self.size - 1) * 2 - 1  # (B, C, K, 2) as (x, y) in [-1, 1]
        values = torch.nn.functional.grid_sample(smoothed[:, None], grid, mode="bicubic", padding_mode="zeros",
                                                 align_corners=True)[:, 0]  # (B, C, K)
        return (w * values).sum(-1) / w.norm(dim=-1).clamp(min=1e-12)

    def refine(self, images: torch.Tensor, rotations: torch.Tensor, band_passed: torch.Tensor | None = None,
               try_beam_flip: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(refined rotations (B, 3, 3), correlation score (B,)) for patterns ``images`` (B, H, W) and
        starting ``rotations`` (B, 3, 3) (lab → crystal); ``band_passed`` the images' ``band_pass`` at the
        last stage's widths, if already computed; ``try_beam_flip`` overrides the settings' choice.

        The 180° turn about the beam is refined alongside through the coarse stage and the better of
        the two kept; the score is the template correlation divided by the image's r.m.s. contrast.
        """
        st = self.settings
        n = len(images)
        rot = rotations.float()
        if st.try_beam_flip if try_beam_flip is None else try_beam_flip:
            rot = torch.cat([rot, rot @ BEAM_FLIP])
        for sigma, step0, scale in zip(st.smooth_px, st.start_step_deg, st.width_scale):
            self._width = st.excitation_width_invA * scale
            last = sigma == st.smooth_px[-1] and band_passed is not None
            smoothed = band_passed if last else band_pass(images, sigma, st.background_px)
            if len(rot) > n:
                smoothed2 = torch.cat([smoothed, smoothed])
                rot = self._search(smoothed2, rot, step0)
                score = self._final(smoothed2, rot)
                pick = _turn_wins(score[:n], score[n:], st.flip_margin)
                rot = torch.where(pick[:, None, None], rot[n:], rot[:n])
            else:
                rot = self._search(smoothed, rot, step0)
        score = self._final(smoothed, rot)
        return rot, score / (smoothed.flatten(1).norm(dim=-1) / math.sqrt(smoothed[0].numel())).clamp(min=1e-12)

    def _search(self, smoothed: torch.Tensor, rot: torch.Tensor, step_deg: float) -> torch.Tensor:
        """Pattern search from ``rot`` (B, 3, 3) at ``step_deg``: each iteration scores the stencil (and, with
        ``quadric``/``axes``, its Newton step), moves to the best point, and halves the step when the best
        is the centre or an unclamped Newton step (the peak lies inside the stencil), for ``max_iterations``
        or until every step is below ``min_step_deg``. Returns the refined rotations."""
        st = self.settings
        idx = self._select(rot)
        g, f2 = self.g[idx], self.f2[idx]  # (B, K, 3), (B, K)
        step = torch.full((len(rot),), math.radians(step_deg))
        rows = torch.arange(len(rot))
        for _ in range(st.max_iterations):
            cand = rot[:, None] @ _axis_angle_matrices(self.steps[None] * step[:, None, None])  # R·Δ: a lab-frame turn
            scores = self._scores(smoothed, cand, g, f2)
            if st.search != "cube":
                newton = (_axis_newton if st.search == "axes" else _quadric_newton)(scores, step)  # (B, 3)
                cand = torch.cat([cand, rot[:, None] @ _axis_angle_matrices(newton[:, None])], 1)
                scores = torch.cat([scores, self._scores(smoothed, cand[:, -1:], g, f2)], 1)
            best = scores.argmax(dim=-1)
            rot = cand[rows, best]
            inside = best == 0
            if st.search != "cube":  # a Newton step short of the stencil's edge: the peak is inside
                inside |= (best == len(self.steps)) & (newton.abs().amax(-1) < 0.99 * step)
            step = torch.where(inside, step / 2, step)
            if bool((step < math.radians(st.min_step_deg)).all()):
                break
        return rot

    def _final(self, smoothed: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
        """(B,) correlation of each pattern with its template at ``rot`` over its K strongest reflections."""
        idx = self._select(rot)
        return self._scores(smoothed, rot[:, None], self.g[idx], self.f2[idx])[:, 0]


def _turn_wins(start: torch.Tensor, turned: torch.Tensor, margin: float) -> torch.Tensor:
    """(B,) bool: where the 180°-turned candidate replaces the start. It must out-score it by
    ``margin`` (a fraction), and the batch must show that the turn is told apart at all: when the
    median |relative gap| of the batch is below ``margin`` the two senses score alike on this crystal
    and detector (bench Al scan: ~10⁻⁴; LiNiO2, whose long c puts spots of neighbouring Laue zones in
    the pattern: ~10⁻²), the few large gaps are noise or another local optimum, and no pattern turns."""
    gap = (turned - start) / start.abs().clamp(min=1e-12)
    if len(gap) and margin > 0 and float(gap.abs().median()) < margin:
        return torch.zeros_like(gap, dtype=torch.bool)
    return gap > margin
