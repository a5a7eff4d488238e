"""Temperature scaling: recovers a known temperature, ignores unlabelled patterns, is stored with the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffractnet.tasks.spacegroup import class_probabilities, fit_temperature


@pytest.mark.parametrize("true_t", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_the_temperature_labels_were_drawn_at(true_t):
    gen = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(20000, 5, generator=gen)
    labels = torch.multinomial(torch.softmax(logits / true_t, -1), 1, generator=gen)[:, 0]
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_fit_temperature_takes_soft_targets():
    gen = torch.Generator().manual_seed(1)
    logits = 4 * torch.randn(20000, 5, generator=gen)
    labels = torch.multinomial(torch.softmax(logits / 2.0, -1), 1, generator=gen)[:, 0]
    one_hot = torch.nn.functional.one_hot(labels, 5).float()
    assert fit_temperature(logits, one_hot) == pytest.approx(fit_temperature(logits, labels), rel=1e-3)
    # the targets are the probabilities at T = 2 themselves: the fit finds T = 2
    assert fit_temperature(logits, torch.softmax(logits / 2.0, -1)) == pytest.approx(2.0, rel=0.01)


def test_fit_temperature_ignores_unlabelled_and_handles_none():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
    labels = torch.tensor([0, 1, -100])
    # both labelled patterns are right: the sharper the better, up to the bound
    assert 0.05 <= fit_temperature(logits, labels) < 0.1
    assert fit_temperature(logits[:1], torch.tensor([-100])) == 1.0


def test_class_probabilities_divide_logits_by_the_temperature():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
    images = torch.tensor([[[[2.0, 1.0], [0.0, 5.0]]]])
    meta = {"class_labels": [221, 225, 229], "labels": {"scheme": "space_group"}}
    for t in (1.0, 2.0):
        expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0]) / t, -1).numpy()
        np.testing.assert_allclose(class_probabilities(model, {**meta, "temperature": t}, images)[0], expected, rtol=1e-6)


def test_fit_lookalike_threshold_picks_the_level_whose_sets_are_right_most_often():
    from diffractnet.tasks.spacegroup import fit_lookalike_threshold

    # A: physics allows only the true group 0; a wrong group sits at membership 0.65 → right only above 0.65
    # B: physics allows two groups; the true one sits at 0.45 and is not the most probable → right only ≤ 0.45
    a = ([0.9, 0.65, 0.1], [0.7, 0.2, 0.1], 0, 1)
    b = ([0.45, 0.95, 0.1], [0.3, 0.6, 0.1], 0, 2)
    unknown = ([0.9, 0.9, 0.9], [0.2, 0.7, 0.1], 0, 0)  # off a zone axis: no physics set, left out

    def fit(rows):
        member, probs, truth, size = (np.array(v) for v in zip(*rows))
        return fit_lookalike_threshold(member, probs, truth, size)

    assert fit([a, a, b, unknown, unknown]) == 0.7
    assert fit([a, b, b, unknown]) == 0.3
    assert fit([unknown]) == 0.5
