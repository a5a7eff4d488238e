"""Training end to end on tiny data: fit, schedules, early stopping, resume after a kill, DDP on
2 CPU processes, mixed precision, then evaluate / predict / explain and their bad inputs."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffractnet.cli import main
from diffractnet.data.config import parse_config
from diffractnet.data.generate import generate_dataset
from diffractnet.errors import ConfigError
from diffractnet.train import train
from diffractnet.train.config import parse_train_config

DATA = {
    "name": "train-tiny", "seed": 3, "shard_patterns": 64,
    "materials": {"library": ["Al", "Cu", "Ni", "Ag", "Fe", "W", "Mo", "Cr"]},
    "orientations": {"zone_axes": "standard", "max_index": 2, "per_zone_axis": 3, "tilt_deg": 0.5},
    "split": {"train": 0.5, "val": 0.25, "test": 0.25},
}


def _train_raw(dataset: Path, out: Path, **changes) -> dict:
    raw = {"dataset": str(dataset), "output_dir": str(out), "seed": 0,
           "model": {"name": "small_cnn", "kwargs": {"width": 4}}, "image": {"size_px": 32, "reciprocal_px_invA": 0.08},
           "optimizer": {"name": "adam", "lr": 0.003},
           "trainer": {"max_epochs": 2, "batch_size": 16, "num_workers": 0, "train_patterns_per_epoch": 48}}
    for key, value in changes.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


def _metrics(out: Path) -> list[dict]:
    with open(out / "logs" / "version_0" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train") / "data"
    generate_dataset(parse_config({**DATA, "output_dir": str(root)}), workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    raw = _train_raw(dataset, out, scheduler={"name": "exponential", "gamma": 0.5}, trainer={"max_epochs": 3})
    model = train(parse_train_config(raw), progress=False)
    assert model.is_file()
    return out


def test_fit_writes_model_log_and_schedule(trained):
    summary = json.loads((trained / "train_summary.json").read_text())
    assert summary["epochs_completed"] == 3
    lrs = [float(r["lr-Adam"]) for r in _metrics(trained) if r.get("lr-Adam")]
    np.testing.assert_allclose(lrs[:3], [0.003, 0.0015, 0.00075], rtol=1e-6)  # exponential, gamma 0.5
    assert any(r.get("val_loss") for r in _metrics(trained))
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    from diffractnet.models import load_model

    _, meta = load_model(trained / "model.safetensors", task="spacegroup")
    assert 0.05 <= meta["temperature"] <= 20 and meta["temperature"] == summary["temperature"]  # fitted on val


def test_early_stopping_min_delta(dataset, tmp_path):
    raw = _train_raw(dataset, tmp_path / "es", early_stopping={"monitor": "val_loss", "patience": 1, "min_delta": 100.0},
                     trainer={"max_epochs": 10}, scheduler={"name": "step", "step_size": 1, "gamma": 0.9})
    train(parse_train_config(raw), progress=False)
    summary = json.loads((tmp_path / "es" / "train_summary.json").read_text())
    assert summary["epochs_completed"] == 2  # no improvement ≥ 100 after the first epoch: stop after patience 1


def test_resume_after_kill(dataset, tmp_path):
    out = tmp_path / "killed"
    epochs = 30
    raw = _train_raw(dataset, out, trainer={"max_epochs": epochs, "train_patterns_per_epoch": 48},
                     optimizer={"name": "sgd", "lr": 0.01}, scheduler={"name": "cosine"})
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "diffractnet.cli", "train", str(cfg), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    # kill once at least two epochs are checkpointed, long before the 30 are done
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and (out / "logs" / "version_0" / "metrics.csv").exists():
            if sum(1 for r in _metrics(out) if r.get("val_loss")) >= 2:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists(), "training finished before it could be killed"
    before = [int(r["epoch"]) for r in _metrics(out) if r.get("val_loss")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["epochs_completed"] == epochs
    epochs_with_val = [int(r["epoch"]) for r in _metrics(out) if r.get("val_loss")]
    assert set(range(max(before), epochs)) <= set(epochs_with_val)
    # resumed, not restarted: epoch 0 was not trained again, at most the epoch in flight is repeated
    assert epochs_with_val.count(0) <= 1 and len(epochs_with_val) <= epochs + 1 and len(before) >= 2


def test_ddp_on_two_cpu_processes(dataset, tmp_path):
    out = tmp_path / "ddp"
    raw = _train_raw(dataset, out, trainer={"accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_epochs": 1})
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, "-m", "diffractnet.cli", "train", str(cfg), "--quiet"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    assert (out / "model.safetensors").is_file()


def test_mixed_precision_bf16(dataset, tmp_path):
    raw = _train_raw(dataset, tmp_path / "bf16", trainer={"precision": "bf16-mixed", "max_epochs": 1})
    assert train(parse_train_config(raw), progress=False).is_file()


@pytest.mark.parametrize("change,match", [
    ({"model": {"name": "alexnet"}}, "unknown model"),
    ({"optimizer": {"name": "rmsprop"}}, "optimizer.name"),
    ({"optimizer": {"lr": -1}}, "optimizer.lr"),
    ({"trainer": {"precision": "8"}}, "trainer.precision"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_train_configs(dataset, tmp_path, change, match):
    with pytest.raises(ConfigError, match=match):
        parse_train_config(_train_raw(dataset, tmp_path / "x", **change))


def test_evaluate_predict_explain_cli(trained, dataset, tmp_path, capsys):
    model = str(trained / "model.safetensors")
    assert main(["evaluate", model, str(dataset), "--out", str(tmp_path / "eval")]) == 0
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "within" in report and "confusion.png" in report and (tmp_path / "eval" / "per_material.png").is_file()
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= summary["single_top1"] <= 1 and summary["fused3"]["n_draws"] > 0
    assert summary["dose_e"] == [1e5, 1e6]  # an SAED exposure unless told
    per_zone = summary["per_zone_axis"]  # zone-axis patterns split by material and zone, adding up per material
    by_material = {row["material"]: row for row in summary["metrics"]["per_material"]}
    for material, zones in per_zone.items():
        assert zones and all(0 <= e["accuracy"] <= 1 and 0 < e["most_common_share"] <= 1 for e in zones.values())
        assert all(e["most_common"] in summary["metrics"]["class_labels"] for e in zones.values())
        assert {e["true_group"] for e in zones.values()} == {by_material[material]["true_label"]}
        assert sum(e["n"] for e in zones.values()) <= by_material[material]["n"]
    assert "Accuracy per zone axis" in report
    assert main(["evaluate", model, str(dataset), "--out", str(tmp_path / "low"), "--dose", "5e3", "2e4"]) == 0
    assert json.loads((tmp_path / "low" / "metrics.json").read_text())["dose_e"] == [5e3, 2e4]
    capsys.readouterr()
    assert main(["evaluate", model, str(dataset), "--out", str(tmp_path / "bad"), "--dose", "2e4", "5e3"]) == 2
    assert "dose range" in capsys.readouterr().err
    from diffractnet.demo import render_zone_axis

    paths = []
    for zone in [(0, 0, 1), (0, 1, 1), (1, 1, 1)]:
        image, _ = render_zone_axis("Cu", zone, image_size_px=48, reciprocal_px_invA=0.06)
        paths.append(tmp_path / f"cu{''.join(map(str, zone))}.npy")
        np.save(paths[-1], image)
    capsys.readouterr()
    assert main(["predict", model, *map(str, paths), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["per_pattern"]) == 3
    assert abs(sum(result["fused"]["probabilities"]) - 1) < 1e-6
    assert set(result["fused"]["coarse"]["crystal_system"]) == {"cubic"}
    top = result["fused"]["top"][0][0]
    assert top in result["fused"]["global_class"] and result["fused"]["set"]
    assert main(["explain", model, str(paths[1]), "--out", str(tmp_path / "gc.png")]) == 0
    assert (tmp_path / "gc.png").stat().st_size > 1000


@pytest.mark.parametrize("array,match", [
    (np.zeros((40, 40)), "blank"),
    (np.full((40, 40), np.nan), "NaN"),
    (np.zeros((2, 40, 40)), "shape"),
    (np.ones((40, 40), dtype=bool), "dtype"),
    (np.ones((8, 8)), "smaller"),
])
def test_predict_rejects_bad_images(trained, tmp_path, capsys, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    assert main(["predict", str(trained / "model.safetensors"), str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffractnet: error:") and match in err and "\n" not in err


def test_predict_rejects_foreign_and_corrupt_checkpoints(trained, tmp_path, capsys):
    from diffractnet.models import create_model, save_model

    other = save_model(tmp_path / "orient.safetensors", create_model("small_cnn", "orientation", num_outputs=6, width=4),
                       {"arch": "small_cnn", "task": "orientation", "in_chans": 1, "num_outputs": 6, "image_size": 32,
                        "model_kwargs": {"width": 4}})
    image = tmp_path / "x.npy"
    np.save(image, np.random.default_rng(0).random((40, 40)))
    assert main(["predict", str(other), str(image)]) == 2
    assert "orientation model, not a spacegroup model" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes((trained / "model.safetensors").read_bytes()[:500])
    assert main(["predict", str(corrupt), str(image)]) == 2
    assert "corrupt.safetensors" in capsys.readouterr().err


def test_lattice_view_in_training_and_prediction(dataset, tmp_path, capsys):
    """A model trained on the lattice view records it, and ``predict`` prepares images in that view: a turned
    pattern reaches the network (almost) unchanged, while the plain view passes the turn on."""
    from diffractnet.demo import render_zone_axis
    from diffractnet.models import load_model
    from diffractnet.tasks.spacegroup_predict import images_for_model

    raw = _train_raw(dataset, tmp_path / "lattice", image={"view": "lattice"}, trainer={"max_epochs": 1})
    model = train(parse_train_config(raw), progress=False)
    _, meta = load_model(model, task="spacegroup")
    assert meta["image"]["view"] == "lattice" and meta["in_chans"] == 1
    paths = []
    for turn in (0.0, 50.0, 140.0):
        image, _ = render_zone_axis("Cu", (0, 1, 1), image_size_px=48, reciprocal_px_invA=0.06, rotation_deg=turn)
        paths.append(tmp_path / f"cu_{int(turn)}.npy")
        np.save(paths[-1], image)
    capsys.readouterr()
    assert main(["predict", str(model), *map(str, paths), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["per_pattern"]) == 3
    disc = (torch.arange(32) - 15.5) ** 2
    disc = ((disc[:, None] + disc[None, :]) < 15**2).float()

    def spread(view: str) -> float:
        x = images_for_model(paths, {**meta, "image": {**meta["image"], "view": view}})[:, 0] * disc
        return float(max((x[i] - x[0]).abs().sum() / x[0].abs().sum() for i in (1, 2)))

    assert spread("lattice") < 0.3 < spread("plain")


def test_set_labels_spread_a_pattern_over_the_groups_physics_cannot_tell_apart(dataset):
    """fcc (225) and bcc (229) give the same square [001] pattern up to scale and turn, and different
    [011] patterns (centred 111/200 rectangle vs. the 2:√2 rectangle of 200/011): the [001] target is the
    training prior over {225, 229}, the [011] target is 225 alone, a pattern off zone axes stays one-hot."""
    from diffractnet.data.generate import load_card
    from diffractnet.tasks.spacegroup_eval import train_prior
    from diffractnet.train.labels import build_label_map

    config = parse_train_config(_train_raw(dataset, Path("unused"), labels={"scheme": "space_group_set"}))
    card = load_card(dataset)
    label_map = build_label_map(config, card)
    assert label_map.class_labels == [225, 229]
    assert label_map.field_invA == pytest.approx(16 * 0.08 * 0.9)  # the smallest field training draws
    al = next(m["material_id"] for m in card["materials"] if m["name"] == "Al")
    raw = {"space_group": np.array([225, 225, 225]), "zone_axis": np.array([[0, 0, 1], [0, 1, 1], [0, 0, 0]]),
           "material_id": np.array([al, al, al])}
    targets = label_map(raw)
    assert targets.dtype == np.float32 and np.allclose(targets.sum(1), 1)
    np.testing.assert_allclose(targets[0], train_prior(card, [225, 229]), rtol=1e-6)
    np.testing.assert_allclose(targets[1:], [[1, 0], [1, 0]])
    assert label_map.metadata()["label_scheme"] == "space_group_set"


def test_soft_target_loss_is_cross_entropy_and_counts_any_allowed_group():
    from diffractnet.train.module import classification_loss

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    hard, acc_hard = classification_loss(logits, torch.tensor([0, 0]))
    soft, acc_soft = classification_loss(logits, torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]))
    assert soft == pytest.approx(float(hard)) and acc_hard == acc_soft == 0.5
    _, acc_set = classification_loss(logits, torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0]]))
    assert acc_set == 1.0  # the second argmax (column 1) is inside its look-alike set


def test_training_on_set_labels_gives_a_space_group_model(dataset, tmp_path, capsys):
    raw = _train_raw(dataset, tmp_path / "set", labels={"scheme": "space_group_set"}, trainer={"max_epochs": 1})
    model = train(parse_train_config(raw), progress=False)
    from diffractnet.models import load_model

    _, meta = load_model(model, task="spacegroup")
    assert meta["label_scheme"] == "space_group_set" and meta["num_outputs"] == 2
    assert main(["evaluate", str(model), str(dataset), "--out", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    reader = summary["presence_reader"]  # the physics reader scores 1/|set| per pattern, at best
    assert 0 < reader["single_top1"] <= 1 and 0 < reader["fused3_top1"] <= 1


def test_lookalike_head_targets_are_group_then_membership(dataset):
    """With ``lookalike_head`` the targets are (N, 2C): the group (one-hot, or the set-weighted prior with
    space_group_set) and one bit per group that physics lets give the pattern; Al [001] looks like bcc
    too, [011] does not, and a pattern off zone axes has unknown (NaN) bits."""
    from diffractnet.data.generate import load_card
    from diffractnet.tasks.spacegroup_eval import train_prior
    from diffractnet.train.labels import build_label_map

    card = load_card(dataset)
    al = next(m["material_id"] for m in card["materials"] if m["name"] == "Al")
    raw = {"space_group": np.array([225, 225, 225]), "zone_axis": np.array([[0, 0, 1], [0, 1, 1], [0, 0, 0]]),
           "material_id": np.array([al, al, al])}
    plain = build_label_map(parse_train_config(_train_raw(dataset, Path("unused"), labels={"lookalike_head": True})), card)
    targets = plain(raw)
    assert plain.num_outputs == 4 and targets.shape == (3, 4) and targets.dtype == np.float32
    np.testing.assert_array_equal(targets[:, :2], [[1, 0], [1, 0], [1, 0]])
    np.testing.assert_array_equal(targets[:2, 2:], [[1, 1], [1, 0]])
    assert np.isnan(targets[2, 2:]).all()
    assert plain.metadata() == {"label_scheme": "space_group", "class_labels": [225, 229],
                                "set_field_invA": pytest.approx(16 * 0.08 * 0.9), "lookalike_head": True}
    soft = build_label_map(parse_train_config(_train_raw(dataset, Path("unused"), labels={
        "scheme": "space_group_set", "lookalike_head": True})), card)
    np.testing.assert_allclose(soft(raw)[0, :2], train_prior(card, [225, 229]), rtol=1e-6)
    assert soft.metadata()["label_scheme"] == "space_group_set"


def test_lookalike_head_refuses_appearance_labels(dataset):
    with pytest.raises(ConfigError, match="lookalike_head needs space-group classes") as err:
        parse_train_config(_train_raw(dataset, Path("unused"), labels={"scheme": "appearance", "lookalike_head": True}))
    assert "\n" not in str(err.value)


def test_lookalike_loss_skips_unknown_membership():
    import torch.nn.functional as F

    from diffractnet.train.module import ClassifierModule, lookalike_loss

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]], requires_grad=True)
    member = torch.tensor([[1.0, 0.0], [float("nan"), float("nan")]])
    expected = F.binary_cross_entropy_with_logits(logits[0], member[0])
    assert float(lookalike_loss(logits, member).detach()) == pytest.approx(float(expected.detach()))
    none = lookalike_loss(logits, torch.full((2, 2), float("nan")))
    none.backward()
    assert float(none) == 0.0 and logits.grad is not None  # a batch off zone axes still backpropagates
    module = ClassifierModule("small_cnn", 4, 32, {"width": 4}, lookalike_head=True)
    out = torch.tensor([[3.0, 0.0, 2.0, -2.0]])
    loss, acc = module.loss(out, torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    ce = F.cross_entropy(out[:, :2], torch.tensor([0]))
    assert float(loss) == pytest.approx(float(ce + F.binary_cross_entropy_with_logits(out[0, 2:], torch.tensor([1.0, 0.0]))))
    assert float(acc) == 1.0


def test_training_with_a_lookalike_head_evaluates_and_predicts_its_sets(dataset, tmp_path, capsys):
    raw = _train_raw(dataset, tmp_path / "la", labels={"lookalike_head": True}, trainer={"max_epochs": 1})
    model = train(parse_train_config(raw), progress=False)
    from diffractnet.models import load_model
    from diffractnet.tasks.spacegroup import spacegroup_outputs

    net, meta = load_model(model, task="spacegroup")
    assert meta["lookalike_head"] and meta["num_outputs"] == 4 and meta["temperature"] > 0
    probs, member = spacegroup_outputs(net, meta, torch.rand(3, 1, 32, 32))
    assert probs.shape == member.shape == (3, 2) and np.allclose(probs.sum(1), 1)
    assert ((member > 0) & (member < 1)).all()
    assert main(["evaluate", str(model), str(dataset), "--out", str(tmp_path / "eval")]) == 0
    within = json.loads((tmp_path / "eval" / "metrics.json").read_text())["within_set"]
    assert within["set_from"] == "lookalike head" and 1 <= within["mean_predicted_set"] <= 2
    assert "look-alike head" in (tmp_path / "eval" / "report.html").read_text()
    from diffractnet.demo import render_zone_axis

    paths = []
    for zone in [(0, 0, 1), (0, 1, 1)]:
        image, _ = render_zone_axis("Cu", zone, image_size_px=48, reciprocal_px_invA=0.06)
        paths.append(tmp_path / f"cu{''.join(map(str, zone))}.npy")
        np.save(paths[-1], image)
    capsys.readouterr()
    assert main(["predict", str(model), *map(str, paths), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["set_from"] == "lookalike head"
    rows = result["per_pattern"]
    assert all(set(r["lookalike"]) == {"225", "229"} for r in rows)  # JSON keys are strings
    threshold = result["lookalike_threshold"]
    assert threshold == meta["lookalike_threshold"] and 0.3 <= threshold <= 0.95
    allowed = {g for g in (225, 229) if all(r["lookalike"][str(g)] >= threshold for r in rows)}
    assert set(result["fused"]["set"]) == allowed | {result["fused"]["top"][0][0]}
    assert main(["explain", str(model), str(paths[1]), "--out", str(tmp_path / "gc.png")]) == 0


def test_resuming_a_run_of_other_settings_is_one_clear_error(dataset, tmp_path, capsys):
    """A changed network under the same output_dir (here a look-alike head added) refuses to resume
    from the old last.ckpt with one line, instead of a state-dict traceback."""
    raw = _train_raw(dataset, tmp_path / "run", trainer={"max_epochs": 1})
    train(parse_train_config(raw), progress=False)
    changed = _train_raw(dataset, tmp_path / "run", labels={"lookalike_head": True}, trainer={"max_epochs": 2})
    with pytest.raises(ConfigError, match="lookalike_head, num_classes") as err:
        train(parse_train_config(changed), progress=False)
    assert "new output_dir" in str(err.value) and "\n" not in str(err.value)
