"""Shared fixtures: small crystals defined here (independent of the built-in library's contents)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Space group + lattice + Wyckoff sites, expanded by diffractnet.structures.library.crystal_from_entry.
PEER_ENTRIES = {
    "Al": {"space_group": 225, "lattice": {"a": 4.0495}, "sites": [{"element": "Al", "wyckoff": "4a", "b_iso": 0.8}]},
    "Fe": {"space_group": 229, "lattice": {"a": 2.8665}, "sites": [{"element": "Fe", "wyckoff": "2a", "b_iso": 0.35}]},
    "Si": {"space_group": 227, "lattice": {"a": 5.4307}, "sites": [{"element": "Si", "wyckoff": "8a", "b_iso": 0.46}]},
    "NaCl": {"space_group": 225, "lattice": {"a": 5.640},
             "sites": [{"element": "Na", "wyckoff": "4a"}, {"element": "Cl", "wyckoff": "4b"}]},
    "Mg": {"space_group": 194, "lattice": {"a": 3.2094, "c": 5.2108}, "sites": [{"element": "Mg", "wyckoff": "2c"}]},
    "ZnO": {"space_group": 186, "lattice": {"a": 3.2498, "c": 5.2066},
            "sites": [{"element": "Zn", "wyckoff": "2b", "xyz": [1 / 3, 2 / 3, 0.0]},
                      {"element": "O", "wyckoff": "2b", "xyz": [1 / 3, 2 / 3, 0.3819]}]},
    "TiO2": {"space_group": 136, "lattice": {"a": 4.5937, "c": 2.9587},
             "sites": [{"element": "Ti", "wyckoff": "2a"}, {"element": "O", "wyckoff": "4f", "xyz": [0.3048, 0.3048, 0.0]}]},
    "LiNiO2": {"space_group": 166, "lattice": {"a": 2.878, "c": 14.19},
               "sites": [{"element": "Li", "wyckoff": "3b"}, {"element": "Ni", "wyckoff": "3a"},
                         {"element": "O", "wyckoff": "6c", "xyz": [0, 0, 0.2584]}]},
    "CaTiO3": {"space_group": 62, "lattice": {"a": 5.4405, "b": 7.6436, "c": 5.3812},
               "sites": [{"element": "Ca", "wyckoff": "4c", "xyz": [0.0064, 0.25, -0.0350]},
                         {"element": "Ti", "wyckoff": "4b"},
                         {"element": "O", "wyckoff": "4c", "xyz": [0.5711, 0.25, 0.0161]},
                         {"element": "O", "wyckoff": "8d", "xyz": [0.2897, 0.0373, 0.7107]}]},
    "ZrO2": {"space_group": 14, "lattice": {"a": 5.1505, "b": 5.2116, "c": 5.3173, "beta": 99.23},
             "sites": [{"element": "Zr", "wyckoff": "4e", "xyz": [0.2754, 0.0395, 0.2083]},
                       {"element": "O", "wyckoff": "4e", "xyz": [0.0700, 0.3317, 0.3447]},
                       {"element": "O", "wyckoff": "4e", "xyz": [0.4496, 0.7569, 0.4792]}]},
}


def make_crystal(name: str):
    """A test crystal from ``PEER_ENTRIES`` (expanded by the library's Wyckoff machinery)."""
    from diffractnet.structures.library import crystal_from_entry

    return crystal_from_entry({"name": name, **PEER_ENTRIES[name]})


@pytest.fixture(scope="session")
def crystals():
    """All ``PEER_ENTRIES`` as Crystals, by name."""
    return {name: make_crystal(name) for name in PEER_ENTRIES}


# --- orientation: one tiny model per head, trained once per session, shared by the test files ---
ORIENT_SIZE_PX, ORIENT_PX_INVA, ORIENT_INPUT_PX = 64, 0.04, 32


def tiny_orientation_config(output_dir: Path, head: str = "beam_direction", **changes) -> dict:
    """A seconds-long orientation run on Al: 64 px patterns binned to 32, one epoch of 64 patterns."""
    return {"material": "Al", "head": head, "bin_deg": 10, "output_dir": str(output_dir), "seed": 0,
            "physics": {"image_size_px": ORIENT_SIZE_PX, "reciprocal_px_invA": ORIENT_PX_INVA}, "input_size_px": ORIENT_INPUT_PX,
            "val_patterns": 32,
            "trainer": {"max_epochs": 1, "train_patterns_per_epoch": 64, "batch_size": 32, "num_workers": 0},
            **changes}


def shared_tiny_model(tmp_path_factory, head: str) -> Path:
    """One tiny model per head for the whole session (a second call resumes: nothing left to train)."""
    from diffractnet.train.orientation import parse_orientation_config, train_orientation

    out = tmp_path_factory.getbasetemp() / f"orientation_model_{head}"
    return train_orientation(parse_orientation_config(tiny_orientation_config(out, head)), progress=False)


@pytest.fixture(scope="session")
def beam_model(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "beam_direction")


@pytest.fixture(scope="session")
def regression_model(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "regression")
