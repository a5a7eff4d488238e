"""Datasets: config validation, material splits, determinism, resume after a kill, shards, torch loading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffractnet.data.config import SplitSpec, load_config, parse_config
from diffractnet.data.generate import generate_dataset
from diffractnet.data.shards import read_shard
from diffractnet.data.splits import split_by_material
from diffractnet.data.torch_dataset import Augment, SpotDataset
from diffractnet.errors import ConfigError, DataError
from diffractnet.render import Detector

TINY = {
    "name": "tiny", "seed": 11, "shard_patterns": 16,
    "materials": {"library": ["Al", "Cu", "Ni", "Si", "Ge", "Fe", "W", "NiAl", "FeAl"]},
    "orientations": {"zone_axes": "standard", "max_index": 2, "per_zone_axis": 2, "tilt_deg": 1.0,
                     "random_per_material": 6},
    "split": {"train": 0.5, "val": 0.25, "test": 0.25},
}


def _config(tmp_path: Path, name: str = "ds", **changes):
    raw = {**TINY, **changes, "output_dir": str(tmp_path / name)}
    return parse_config(raw)


def _all_arrays(root: Path) -> dict:
    out = {}
    for path in sorted(root.glob("*/*.h5")):
        shard = read_shard(path)
        out[str(path.relative_to(root))] = (shard.offsets, shard.spots, shard.labels)
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key][0], b[key][0])
        for part in (1, 2):
            for field in a[key][part]:
                np.testing.assert_array_equal(a[key][part][field], b[key][part][field], err_msg=f"{key}:{field}")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    config = _config(tmp)
    card = generate_dataset(config, workers=1, progress=False)
    return config, json.loads(card.read_text())


def test_card_and_labels(tiny_dataset):
    config, card = tiny_dataset
    from importlib import metadata

    assert card["seed"] == 11 and card["config"]["seed"] == 11
    assert card["versions"]["torch"] == metadata.version("torch")
    names = {m["name"]: m for m in card["materials"]}
    assert set(names) == set(TINY["materials"]["library"])
    total = sum(card["counts"][s]["patterns"] for s in ("train", "val", "test"))
    assert total == sum(m["n_patterns"] for m in card["materials"])
    for split in ("train", "val", "test"):
        for rel in card["shards"][split]:
            shard = read_shard(config.output_dir / rel)
            material = names[shard.attrs["material"]]
            assert material["split"] == split  # a material's patterns never leave its split
            assert np.all(shard.labels["space_group"] == material["space_group"])
            assert card["label_names"]["crystal_system"][shard.labels["crystal_system"][0]] == material["crystal_system"]
            assert card["label_names"]["bravais_lattice"][shard.labels["bravais_lattice"][0]] == material["bravais_lattice"]
            q = shard.labels["quaternion"]
            np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    assert card["counts"]["test"]["materials"] >= 1 and card["counts"]["train"]["materials"] >= 3


def test_same_seed_same_data_other_seed_other_data(tmp_path, tiny_dataset):
    config, _ = tiny_dataset
    again = _config(tmp_path, "again")
    generate_dataset(again, workers=2, scheduler="threads", progress=False)  # other scheduling, same bytes
    _assert_same(_all_arrays(config.output_dir), _all_arrays(again.output_dir))
    other = _config(tmp_path, "other", seed=12)
    generate_dataset(other, workers=1, progress=False)
    a = _all_arrays(config.output_dir)
    b = _all_arrays(other.output_dir)
    assert any(not np.array_equal(a[k][2]["quaternion"], b[k][2]["quaternion"]) for k in a.keys() & b.keys())


def test_split_is_by_material_stratified_and_order_free():
    materials = {f"m{i}": (225 if i < 10 else 229) for i in range(20)}
    spec = SplitSpec(train=0.6, val=0.2, test=0.2)
    a = split_by_material(materials, spec, seed=3)
    b = split_by_material(dict(reversed(list(materials.items()))), spec, seed=3)
    assert a == b
    for group in (225, 229):
        members = [a[m] for m, g in materials.items() if g == group]
        assert members.count("test") == 2 and members.count("val") == 2 and members.count("train") == 6
    single = split_by_material({"only": 213}, spec, seed=0)
    assert single == {"only": "train"}  # a lone material of its group stays in training
    fixed = split_by_material(materials, SplitSpec(fixed={"m0": "test"}), seed=3)
    assert fixed["m0"] == "test"
    with pytest.raises(ConfigError, match="not in the dataset"):
        split_by_material(materials, SplitSpec(fixed={"nope": "test"}), seed=3)


def test_resume_after_kill_gives_identical_data(tmp_path, tiny_dataset):
    reference, _ = tiny_dataset
    raw = {**TINY, "output_dir": str(tmp_path / "killed"), "shard_patterns": 2}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "diffractnet.cli", "simulate", str(cfg_path), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "killed"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*/*.h5"))) < 3 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("*/*.h5")))
    assert not (out / "card.json").exists(), "the run finished before it could be killed"
    # damage one finished shard as a crash of the disk would, and leave a stale temporary file
    victim = sorted(out.glob("*/*.h5"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    (victim.parent / f".{victim.name}.999.tmp").write_bytes(b"partial")
    result = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{done_before - 1} already done" in result.stdout
    assert not list(out.glob("*/.*.tmp"))
    fresh = tmp_path / "fresh"
    generate_dataset(parse_config({**raw, "output_dir": str(fresh)}), workers=1, progress=False)
    _assert_same(_all_arrays(out), _all_arrays(fresh))


def test_damaged_shard_is_a_clear_error(tmp_path, tiny_dataset):
    config, card = tiny_dataset
    src = config.output_dir / card["shards"]["train"][0]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(src.read_bytes()[:300])
    with pytest.raises(DataError, match="bad.h5"):
        read_shard(bad)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="text.h5"):
        read_shard(tmp_path / "text.h5")


@pytest.mark.parametrize("text,match", [
    ("name: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "mapping"),
    ("materials: {library: [Al]}\nphysics: {voltage_kV: -5}\n", "physics.voltage_kV"),
    ("materials: {library: [Al]}\nsplit: {train: 0.5, val: 0.1, test: 0.1}\n", "sum to 1"),
    ("materials: {library: [Al]}\nwavelength: 3\n", "wavelength"),
    ("orientations: {zone_axes: standard}\n", "materials"),
    ("materials: {library: [Al]}\norientations: {zone_axes: null, random_per_material: 0}\n", "no orientations"),
    ("materials: {random: {space_groups: [231]}}\n", "1..230"),
])
def test_malformed_configs(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_missing_config_and_unknown_material(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    from diffractnet.errors import StructureError

    with pytest.raises(StructureError, match="Unobtainium"):
        generate_dataset(_config(tmp_path, materials={"library": ["Unobtainium"]}), workers=1, progress=False)


def test_torch_dataset_renders_and_loads_in_workers(tiny_dataset):
    config, card = tiny_dataset
    det = Detector(image_size_px=48, reciprocal_px_invA=0.06)
    aug = Augment(center_shift_px=2, scale=(0.9, 1.1), spot_sigma_px=(0.8, 1.4), background=(0, 0.1), dose_e=(500, 5000))
    ds = SpotDataset(config.output_dir, "train", det, aug, target=("space_group", "quaternion"), seed=5)
    assert len(ds) == card["counts"]["train"]["patterns"]
    image, target = ds[3]
    assert image.shape == (1, 48, 48) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() == pytest.approx(1.0)
    assert torch.equal(ds[3][0], image)  # seeded: same index, same image
    assert target["quaternion"].shape == (4,)
    free = SpotDataset(config.output_dir, "train", det, aug)
    loader = torch.utils.data.DataLoader(free, batch_size=8, num_workers=2, shuffle=True)
    images, labels = next(iter(loader))
    assert images.shape == (8, 1, 48, 48) and labels.dtype == torch.int16
    with pytest.raises(ConfigError, match="split"):
        SpotDataset(config.output_dir, "holdout", det)
    with pytest.raises(ConfigError, match="target"):
        SpotDataset(config.output_dir, "train", det, target="colour")


def test_training_inputs_and_predict_inputs_are_prepared_alike(tiny_dataset, tmp_path):
    """One noisy pattern, as the loader gives it to training and as ``predict`` prepares the same counts
    saved to a file: both normalise, apply the power per pixel after the noise and turn into the view."""
    from diffractnet.render.images import render_patterns
    from diffractnet.tasks.spacegroup_predict import images_for_model

    config, _ = tiny_dataset
    det = Detector(image_size_px=48, reciprocal_px_invA=0.06, intensity_power=0.3, dose_e=3000.0, background=0.05)
    for view in ("plain", "lattice_unit"):
        ds = SpotDataset(config.output_dir, "train", det, seed=3, view=view)
        trained, _ = ds[2]
        shard, row = ds.locate(2)
        lo, hi = int(shard.offsets[row]), int(shard.offsets[row + 1])
        counts = render_patterns(torch.tensor([0, hi - lo]), torch.from_numpy(shard.spots["xy_invA"][lo:hi]),
                                 torch.from_numpy(shard.spots["intensity"][lo:hi]), det, generator=ds._generator([2]))
        assert torch.equal(counts, counts.round())  # a detector's counts, linear
        np.save(tmp_path / "counts.npy", counts[0].numpy())
        meta = {"image": {"size_px": 48, "reciprocal_px_invA": 0.06, "intensity_power": 0.3, "view": view}}
        predicted = images_for_model([tmp_path / "counts.npy"], meta)[0]
        torch.testing.assert_close(predicted, trained, atol=1e-5, rtol=1e-4)


def test_random_crystals_can_be_kept_for_training(tmp_path):
    """``materials.random.split: train`` widens training only; the real materials split as before."""
    raw = {**TINY, "orientations": {"zone_axes": [[0, 0, 1]], "per_zone_axis": 1},
           "materials": {"library": TINY["materials"]["library"],
                         "random": {"space_groups": [221, 229], "per_group": 2, "max_atoms": 8, "split": "train"}}}
    card = json.loads(generate_dataset(parse_config({**raw, "output_dir": str(tmp_path / "r")}), workers=1,
                                       progress=False).read_text())
    synthetic = [m for m in card["materials"] if m["name"].startswith("random-")]
    assert len(synthetic) == 4 and all(m["split"] == "train" for m in synthetic)
    assert {m["space_group"] for m in synthetic} == {221, 229}
    plain = json.loads(generate_dataset(_config(tmp_path, "plain"), workers=1, progress=False).read_text())
    real = {m["name"]: m["split"] for m in card["materials"] if not m["name"].startswith("random-")}
    assert real == {m["name"]: m["split"] for m in plain["materials"]}
    with pytest.raises(ConfigError, match="split"):
        parse_config({**raw, "materials": {"random": {"space_groups": [221], "split": "test"}}})


def test_shell_jitter_keeps_families_symmetry_and_absences():
    from diffractnet.data.torch_dataset import shell_jitter

    gen = torch.Generator().manual_seed(3)
    # pattern 0: a square family at |g| = 0.25 and one at 0.5; pattern 1: the same spots
    square = torch.tensor([[0.25, 0], [-0.25, 0], [0, 0.25], [0, -0.25], [0.5, 0], [0, -0.5]])
    xy = torch.cat([square, square])
    offsets = torch.tensor([0, 6, 12])
    factor = shell_jitter(xy, offsets, 0.7, gen)
    assert factor.shape == (12,) and (factor > 0).all()
    assert torch.allclose(factor[:4], factor[0].expand(4)) and torch.allclose(factor[4:6], factor[4].expand(2))
    assert not torch.isclose(factor[0], factor[4])  # families change strength relative to each other
    assert not torch.isclose(factor[0], factor[6])  # and each pattern draws its own function
    # the log factor has the asked spread over many patterns; no jitter at σ = 0
    many = shell_jitter(torch.tensor([[0.3, 0.0]]).repeat(4000, 1), torch.arange(4001), 0.5, gen)
    assert many.log().std().item() == pytest.approx(0.5, rel=0.1)
    assert torch.equal(shell_jitter(xy, offsets, 0.0, gen), torch.ones(12))
