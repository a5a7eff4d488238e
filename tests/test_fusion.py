"""Multi-pattern fusion: Bayes product with the prior divided out, seed 003's mean, prediction sets."""

from __future__ import annotations

import numpy as np
import pytest

from diffractnet.errors import DataError
from diffractnet.index import ensemble_mean, fuse_posteriors, prediction_set
from diffractnet.tasks.spacegroup import coarse_probabilities


def test_seed003_example_mean_ensemble():
    # [001]: 221/225/227/229 equally likely; [103]: unique to 225 → mean gives 62.5 % / 12.5 % (seed 003, Fig. 7)
    classes = [213, 221, 225, 227, 229]
    p001 = np.array([0.0, 0.25, 0.25, 0.25, 0.25])
    p103 = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(ensemble_mean(np.stack([p001, p103])), [0, 0.125, 0.625, 0.125, 0.125])
    assert classes[int(np.argmax(fuse_posteriors(np.stack([p001, p103]))))] == 225
    assert fuse_posteriors(np.stack([p001, p103]))[2] > 0.999


def test_bayes_fusion_divides_the_prior_out():
    prior = np.array([0.7, 0.2, 0.1])
    # two patterns that carry no information return the prior itself
    np.testing.assert_allclose(fuse_posteriors(np.stack([prior, prior]), prior), prior, atol=1e-12)
    # likelihoods l1, l2 → posteriors ∝ prior·l; fusion must give ∝ prior·l1·l2
    l1, l2 = np.array([0.2, 0.5, 0.9]), np.array([0.3, 0.6, 0.8])
    post = lambda l: prior * l / (prior * l).sum()  # noqa: E731
    expected = prior * l1 * l2 / (prior * l1 * l2).sum()
    np.testing.assert_allclose(fuse_posteriors(np.stack([post(l1), post(l2)]), prior), expected, rtol=1e-9)
    # one pattern: fusion is the identity
    np.testing.assert_allclose(fuse_posteriors(post(l1)[None], prior), post(l1), rtol=1e-9)


def test_prediction_sets():
    probs = np.array([[0.26, 0.25, 0.25, 0.24], [0.97, 0.01, 0.01, 0.01], [0.5, 0.45, 0.05, 0.0]])
    sets = prediction_set(probs, coverage=0.9)
    assert [sorted(s.tolist()) for s in sets] == [[0, 1, 2, 3], [0], [0, 1]]
    assert [len(s) for s in prediction_set(probs, coverage=0.5)] == [2, 1, 1]


def test_coarse_levels_sum_space_groups():
    probs = np.array([[0.1, 0.2, 0.3, 0.4]])
    out = coarse_probabilities(probs, (194, 225, 227, 229), "crystal_system")
    assert dict(zip(out["names"], out["probs"][0])) == pytest.approx({"cubic": 0.9, "hexagonal": 0.1})
    bravais = coarse_probabilities(probs, (194, 225, 227, 229), "bravais_lattice")
    assert dict(zip(bravais["names"], bravais["probs"][0])) == pytest.approx({"cF": 0.5, "cI": 0.4, "hP": 0.1})


@pytest.mark.parametrize("bad", [np.array([0.5, 0.5]), np.array([[np.nan, 1.0]]), np.array([[-0.1, 1.1]])])
def test_bad_probabilities(bad):
    with pytest.raises(DataError):
        fuse_posteriors(bad)
    with pytest.raises(DataError):
        fuse_posteriors(np.array([[0.5, 0.5]]), prior=np.array([1.0, 0.0]))


def test_lookalike_set_keeps_members_and_the_top_group_most_probable_first():
    from diffractnet.index.fusion import fuse_membership, lookalike_set

    probs = np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]])
    member = np.array([[0.9, 0.2, 0.8], [0.1, 0.4, 0.6]])
    sets = lookalike_set(member, probs)
    assert [s.tolist() for s in sets] == [[1, 2, 0], [0, 2]]  # row 0: the top group 1 joins; order by probability
    assert [s.tolist() for s in lookalike_set(member, probs, threshold=0.85)] == [[1, 0], [0]]
    np.testing.assert_array_equal(fuse_membership(member), [0.1, 0.2, 0.6])
    with pytest.raises(DataError, match="threshold"):
        lookalike_set(member, probs, threshold=1.0)
    with pytest.raises(DataError, match="membership"):
        lookalike_set(member[:, :2], probs)
    with pytest.raises(DataError, match="membership"):
        lookalike_set(np.full_like(member, np.nan), probs)
    with pytest.raises(DataError, match="shape"):
        fuse_membership(np.ones(3))
