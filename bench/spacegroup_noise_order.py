#!/usr/bin/env python
"""A trained space-group model on its test split, rendered with shot noise in two orders.

``render``: as training renders (brightness power per spot, then Poisson noise on the powered image).
``detector``: as a detector records and ``predict`` prepares a recorded image (Poisson noise on linear
intensities, then min/max normalisation and the power per pixel, ``io.patterns.prepare_for_model``'s
order). The gap between the rows is how far the synthetic bench flatters weak spots.

    python bench/spacegroup_noise_order.py MODEL.safetensors DATASET_DIR [--out runs/noise_order] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def _detector_order(render):
    """``render_patterns`` wrapped: linear image with its noise, then the detector's power per pixel."""
    def rendered(offsets, xy_invA, intensity, detector, **overrides):
        linear = render(offsets, xy_invA, intensity, dataclasses.replace(detector, intensity_power=1.0), **overrides)
        low = linear.amin(dim=(1, 2), keepdim=True)
        high = linear.amax(dim=(1, 2), keepdim=True)
        return ((linear - low).clamp(min=0) / (high - low).clamp(min=1e-12)) ** detector.intensity_power
    return rendered


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/noise_order"))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import diffractnet.data.torch_dataset as torch_dataset
    from diffractnet.tasks.spacegroup_report import evaluate

    render = torch_dataset.render_patterns
    results = {}
    for order in ("render", "detector"):
        torch_dataset.render_patterns = render if order == "render" else _detector_order(render)
        s = evaluate(args.model, args.dataset, args.out / order)
        results[order] = {"single_top1": s["single_top1"], "single_within_set": s["within_set"]["within_set"],
                          "fused3_top1": s["fused3"]["fused_top1"]}
    torch_dataset.render_patterns = render
    print(f"{'noise order':<14}{'single top-1':>13}{'within set':>12}{'fused-3 top-1':>15}")
    for order, r in results.items():
        print(f"{order:<14}{r['single_top1']:>13.3f}{r['single_within_set']:>12.3f}{r['fused3_top1']:>15.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
