#!/usr/bin/env python
"""Kinematic simulation speed: diffractnet vs diffsims on the same crystal and orientations.

Both simulate the same N orientations (uniform in the fundamental zone) of the same crystal at the
same voltage, reciprocal radius and maximum excitation error, limited to the same number of CPU
threads. Prints patterns/s for each and the ratio; ``--json PATH`` writes
{"ours_patterns_per_s", "peer_patterns_per_s", "ratio", ...}.

    python bench/simulate.py [--material Al] [--n 2000] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--material", default="Al", help="built-in material name")
    p.add_argument("--n", type=int, default=2000, help="number of orientations")
    p.add_argument("--voltage", type=float, default=200.0, help="accelerating voltage [kV]")
    p.add_argument("--g-max", type=float, default=1.5, help="reciprocal radius [1/Å]")
    p.add_argument("--s-max", type=float, default=0.02, help="max excitation error [1/Å]")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for both tools")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    return p.parse_args()


def _peer_phase(crystal):
    """orix phase for diffsims: our full cell on our Cartesian base (checked by the peer tests)."""
    return crystal.to_orix_phase()


def main() -> int:
    args = _parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    from diffractnet.physics import SpotSimulator, sample_fundamental_zone
    from diffractnet.structures.library import get_material

    crystal = get_material(args.material)
    quats = sample_fundamental_zone(crystal, args.n, seed=args.seed)

    with threadpool_limits(args.threads):
        ours = SpotSimulator(args.voltage, args.g_max, max_excitation_error_invA=args.s_max)
        ours.simulate(crystal, quats)  # warm-up at full size (allocator, caches)
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            result = ours.simulate(crystal, quats)
            runs.append(time.perf_counter() - t0)
        ours_s = float(np.median(runs))
        ours_spots = float(result.counts.float().mean())

        from diffsims.generators.simulation_generator import SimulationGenerator
        from orix.quaternion import Rotation

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            phase = _peer_phase(crystal)
            gen = SimulationGenerator(accelerating_voltage=args.voltage)
            gen.calculate_diffraction2d(phase, Rotation(quats[:10]), reciprocal_radius=args.g_max,
                                        max_excitation_error=args.s_max, with_direct_beam=False, show_progressbar=False)
            t0 = time.perf_counter()
            sim = gen.calculate_diffraction2d(phase, Rotation(quats), reciprocal_radius=args.g_max,
                                              max_excitation_error=args.s_max, with_direct_beam=False,
                                              show_progressbar=False)
            peer_s = time.perf_counter() - t0
        # diffsims keeps forbidden reflections at ~1e-17 relative intensity (PEERS.md): count allowed ones
        peer_spots = float(np.mean([int((v.intensity > 1e-8 * v.intensity.max()).sum()) if len(v.data) else 0
                                    for v in sim.coordinates]))

    ours_rate, peer_rate = args.n / ours_s, args.n / peer_s
    figures = {
        "ours_patterns_per_s": round(ours_rate, 1), "peer_patterns_per_s": round(peer_rate, 1),
        "ratio": round(ours_rate / peer_rate, 1), "material": crystal.name, "n_orientations": args.n,
        "voltage_kV": args.voltage, "reciprocal_radius_invA": args.g_max, "max_excitation_error_invA": args.s_max,
        "threads": args.threads, "ours_spots_per_pattern": round(ours_spots, 2),
        "peer_spots_per_pattern": round(peer_spots, 2), "peer": "diffsims SimulationGenerator.calculate_diffraction2d",
        "torch": torch.__version__,
    }
    print(f"Kinematic spot patterns: {crystal.name} ({crystal.space_group_symbol}), {args.n} orientations, "
          f"{args.voltage:g} kV, g_max {args.g_max} 1/Å, s_max {args.s_max} 1/Å, {args.threads} thread(s)")
    print(f"{'tool':<12}{'patterns/s':>14}{'seconds':>10}{'spots/pattern':>15}")
    print(f"{'diffractnet':<12}{ours_rate:>14,.0f}{ours_s:>10.3f}{ours_spots:>15.2f}")
    print(f"{'diffsims':<12}{peer_rate:>14,.0f}{peer_s:>10.3f}{peer_spots:>15.2f}")
    print(f"ratio (diffractnet / diffsims): {ours_rate / peer_rate:,.0f}x")
    if abs(ours_spots - peer_spots) > 0.02 * max(ours_spots, 1e-9):
        print("note: spot counts differ; for hexagonal/trigonal cells orix's hkl range misses reflections near "
              "the reciprocal radius (PEERS.md), which also makes diffsims' work smaller")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
