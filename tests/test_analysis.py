"""Tests of fliplib.analysis: directions, PCA, rank-revealing QR, trust, mistake detection and
the verdicts of the paper-vs-book tables."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fliplib.analysis import (
    VERDICTS,
    bootstrap_interval,
    detection_auroc,
    detection_roc,
    flip_directions,
    leading_features,
    mean_interval,
    principal_directions,
    rank_revealing_qr,
    share_interval,
    trust_frame,
    verdict,
)
from fliplib.flip import FlipResult

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def fake_result(x_hat, success, distance=None, target=None):
    """A FlipResult with the fields the analysis reads (no solver needed)."""
    x_hat = np.asarray(x_hat, dtype=float)
    success = np.asarray(success, dtype=bool)
    shape = success.shape
    if distance is None:
        distance = np.where(success, 1.0, np.inf)
    zeros = np.zeros(shape)
    return FlipResult(
        x=x_hat, distance=np.asarray(distance, dtype=float), success=success, status=np.where(success, 0, 2),
        message=np.full(shape, "", dtype=object), source=np.zeros(shape, dtype=int),
        target=np.ones(shape, dtype=int) if target is None else target, logit_gap=zeros, min_margin=zeros,
        bound_violation=zeros, optimality=zeros, n_jacobian_evals=np.zeros(shape, dtype=int),
        n_homotopy_steps=np.zeros(shape, dtype=int), search_radius=zeros, n_starts=np.ones(shape, dtype=int),
    )


# ---------------------------------------------------------------------------------------------
# flip_directions


def test_flip_directions_subtracts_and_masks_failures(rng):
    x = rng.normal(size=(5, 3))
    x_hat = x + rng.normal(size=(5, 3))
    success = np.array([True, False, True, True, False])
    d = flip_directions(x, fake_result(x_hat, success))
    np.testing.assert_allclose(d[success], (x_hat - x)[success])
    assert np.all(np.isnan(d[~success]))


def test_flip_directions_handles_a_class_axis(rng):
    x = rng.normal(size=(4, 3))
    x_hat = x[:, None, :] + rng.normal(size=(4, 2, 3))
    success = np.array([[True, False], [True, True], [False, False], [False, True]])
    d = flip_directions(x, fake_result(x_hat, success))
    assert d.shape == (4, 2, 3)
    np.testing.assert_allclose(d[success], (x_hat - x[:, None, :])[success])
    assert np.all(np.isnan(d[~success]))


def test_flip_directions_rejects_mismatched_inputs(rng):
    result = fake_result(rng.normal(size=(5, 3)), np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="does not match"):
        flip_directions(rng.normal(size=(4, 3)), result)
    with pytest.raises(ValueError, match="does not match"):
        flip_directions(rng.normal(size=(5, 2)), result)


# ---------------------------------------------------------------------------------------------
# principal_directions


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 6)), elements=finite), st.booleans())
def test_pca_components_are_orthonormal_and_ordered(a, center):
    pca = principal_directions(a, center=center)
    k = len(pca.components)
    assert k == min(a.shape)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(k), atol=1e-8)
    assert np.all(np.diff(pca.singular_values) <= 1e-9 * max(1.0, pca.singular_values[0]))
    assert pca.explained_variance_ratio.sum() <= 1 + 1e-9
    # Largest-magnitude entry of each component is positive (deterministic signs).
    assert np.all(pca.components[np.arange(k), np.argmax(np.abs(pca.components), axis=1)] > 0)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 6)), elements=finite), st.booleans())
def test_pca_reconstructs_the_matrix_from_all_components(a, center):
    pca = principal_directions(a, center=center)
    centred = a - pca.mean
    rebuilt = (centred @ pca.components.T) @ pca.components
    np.testing.assert_allclose(rebuilt, centred, atol=1e-8 * max(1.0, np.abs(a).max()))
    ddof = 1 if center else 0
    np.testing.assert_allclose(pca.explained_variance.sum(), np.sum(centred**2) / (len(a) - ddof), rtol=1e-9, atol=1e-9)


def test_pca_agrees_with_scikit_learn(rng):
    from sklearn.decomposition import PCA

    a = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6))
    ours = principal_directions(a, n_components=3)
    theirs = PCA(n_components=3).fit(a)
    np.testing.assert_allclose(np.abs(ours.components @ theirs.components_.T), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(ours.explained_variance, theirs.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_ratio, theirs.explained_variance_ratio_, rtol=1e-10)


def test_pca_first_component_finds_a_dominant_direction(rng):
    u = np.array([0.0, 3.0, 0.0, -4.0]) / 5.0
    a = rng.normal(size=(200, 1)) * 10.0 * u + 0.01 * rng.normal(size=(200, 4))
    pca = principal_directions(a, n_components=1)
    assert abs(pca.components[0] @ u) > 0.999
    uncentred = principal_directions(np.abs(rng.normal(size=(200, 1))) * u + 1e-3 * rng.normal(size=(200, 4)),
                                     n_components=1, center=False)
    assert abs(uncentred.components[0] @ u) > 0.999


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "failed flip points"),
    (np.zeros(3), "matrix"),
    (np.zeros((0, 3)), "empty"),
])
def test_pca_rejects_bad_matrices(bad, match):
    with pytest.raises(ValueError, match=match):
        principal_directions(bad)


@pytest.mark.parametrize("n_components", [0, 4, 2.5])
def test_pca_rejects_bad_component_counts(rng, n_components):
    with pytest.raises(ValueError, match="n_components"):
        principal_directions(rng.normal(size=(5, 3)), n_components=n_components)


def test_pca_needs_two_rows_to_centre():
    with pytest.raises(ValueError, match="at least 2"):
        principal_directions(np.ones((1, 3)))
    assert principal_directions(np.ones((1, 3)), center=False).components.shape == (1, 3)


# ---------------------------------------------------------------------------------------------
# leading_features


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(1, 10), elements=finite), st.data())
def test_leading_features_ranks_by_magnitude(c, data):
    k = data.draw(st.integers(1, c.size))
    frame = leading_features(c, [f"f{i}" for i in range(c.size)], k=k)
    assert list(frame.index) == list(range(1, k + 1))
    assert np.all(np.diff(np.abs(frame["loading"].to_numpy())) <= 0)
    # Nothing left out is larger than what was listed.
    rest = np.delete(np.abs(c), frame["index"].to_numpy())
    assert rest.size == 0 or rest.max() <= np.abs(frame["loading"]).min()
    np.testing.assert_array_equal(frame["loading"], c[frame["index"]])
    assert list(frame["feature"]) == [f"f{i}" for i in frame["index"]]
    if np.any(c):
        assert frame["share"].sum() <= 1 + 1e-12


def test_leading_features_default_names_and_errors():
    frame = leading_features(np.array([0.1, -2.0, 0.5]), k=2)
    assert list(frame["feature"]) == ["feature 1", "feature 2"]
    with pytest.raises(ValueError, match="feature names"):
        leading_features(np.ones(3), ["a", "b"])
    with pytest.raises(ValueError, match="k must"):
        leading_features(np.ones(3), k=4)
    with pytest.raises(ValueError, match="NaN"):
        leading_features(np.array([1.0, np.nan]), k=1)


# ---------------------------------------------------------------------------------------------
# rank_revealing_qr


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(0, 3), st.integers(0, 2**31 - 1))
def test_rrqr_finds_the_rank_and_the_unmoved_features(rank, n_zero, seed):
    rng = np.random.default_rng(seed)
    n_features = rank + 2 + n_zero
    a = rng.normal(size=(30, rank)) @ rng.normal(size=(rank, n_features))
    zero = rng.choice(n_features, size=n_zero, replace=False)
    a[:, zero] = 0.0
    qr = rank_revealing_qr(a)
    assert qr.rank == np.linalg.matrix_rank(a)
    np.testing.assert_array_equal(qr.no_influence, np.sort(zero))
    assert set(qr.no_influence) <= set(qr.redundant)
    assert sorted(qr.pivots) == list(range(n_features))
    np.testing.assert_array_equal(np.concatenate([qr.basis, qr.redundant]), qr.pivots)
    assert np.all(np.diff(qr.r_diagonal) <= 1e-9 * qr.r_diagonal[0])
    # The basis columns really span the matrix.
    coef, *_ = np.linalg.lstsq(a[:, qr.basis], a, rcond=None)
    np.testing.assert_allclose(a[:, qr.basis] @ coef, a, atol=1e-8 * np.abs(a).max())


def test_rrqr_of_a_zero_matrix():
    qr = rank_revealing_qr(np.zeros((4, 3)))
    assert qr.rank == 0 and list(qr.no_influence) == [0, 1, 2] and qr.basis.size == 0


def test_rrqr_rejects_nan():
    with pytest.raises(ValueError, match="failed flip points"):
        rank_revealing_qr(np.array([[np.nan, 1.0]]))


# ---------------------------------------------------------------------------------------------
# detection_roc and detection_auroc


def brute_force_auroc(scores, mistake):
    """P(score of a mistake < score of a correct classification), ties one half."""
    m, c = scores[mistake], scores[~mistake]
    return (np.sum(m[:, None] < c[None, :]) + 0.5 * np.sum(m[:, None] == c[None, :])) / (m.size * c.size)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6).map(float), st.booleans()), min_size=2, max_size=30))
def test_auroc_is_the_mann_whitney_probability(pairs):
    scores = np.array([p[0] for p in pairs])
    mistake = np.array([p[1] for p in pairs])
    if mistake.all() or not mistake.any():
        with pytest.raises(ValueError, match="both"):
            detection_auroc(scores, mistake)
        return
    auc = detection_auroc(scores, mistake)
    assert auc == pytest.approx(brute_force_auroc(scores, mistake))
    # A monotone increasing transform changes nothing; reversing the order flips it.
    assert detection_auroc(np.exp(scores), mistake) == pytest.approx(auc)
    assert detection_auroc(-scores, mistake) == pytest.approx(1.0 - auc)


def test_auroc_extremes():
    mistake = np.array([True, True, False, False, False])
    assert detection_auroc([0.1, 0.2, 0.5, 0.7, 0.9], mistake) == 1.0
    assert detection_auroc([0.9, 0.8, 0.1, 0.2, 0.3], mistake) == 0.0
    assert detection_auroc(np.ones(5), mistake) == 0.5


def test_roc_curve_runs_from_nothing_to_everything_flagged(rng):
    scores = rng.normal(size=40)
    mistake = rng.random(40) < 0.3
    fpr, tpr, thresholds = detection_roc(scores, mistake)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thresholds) >= 0)
    for f, t, thr in zip(fpr[1:], tpr[1:], thresholds[1:]):
        flagged = scores <= thr
        assert t == pytest.approx(flagged[mistake].mean()) and f == pytest.approx(flagged[~mistake].mean())
    assert np.trapezoid(tpr, fpr) == pytest.approx(detection_auroc(scores, mistake))


@pytest.mark.parametrize("scores, mistake, match", [
    ([0.1, np.nan, 0.3], [True, False, False], "NaN"),
    ([0.1, 0.2], [True, False, False], "same length"),
    ([0.1, 0.2, 0.3], [0, 2, 1], "boolean"),
])
def test_detection_rejects_bad_input(scores, mistake, match):
    with pytest.raises(ValueError, match=match):
        detection_auroc(scores, mistake)


# ---------------------------------------------------------------------------------------------
# trust_frame


def test_trust_frame_columns_and_values():
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 1])
    success = np.array([True, True, False, True])
    result = fake_result(np.zeros((4, 2)), success, distance=[0.5, 0.1, 7.0, 0.3])
    frame = trust_frame(proba, labels, result)
    assert list(frame.columns) == ["label", "predicted", "correct", "softmax", "distance", "flip_found"]
    np.testing.assert_array_equal(frame["predicted"], [0, 1, 0, 1])
    np.testing.assert_array_equal(frame["correct"], [True, False, True, True])
    np.testing.assert_allclose(frame["softmax"], [0.9, 0.7, 0.6, 0.8])
    np.testing.assert_allclose(frame["distance"], [0.5, 0.1, np.nan, 0.3])
    np.testing.assert_array_equal(frame["flip_found"], success)


def test_trust_frame_takes_the_closest_of_several_targets():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    success = np.array([[False, True, True], [False, False, False]])
    distance = np.array([[np.inf, 0.4, 0.2], [1.0, 2.0, np.inf]])
    result = fake_result(np.zeros((2, 3, 2)), success, distance=distance, target=np.tile(np.arange(3), (2, 1)))
    frame = trust_frame(proba, np.array([0, 1]), result)
    np.testing.assert_allclose(frame["distance"], [0.2, np.nan])
    np.testing.assert_array_equal(frame["flip_found"], [True, False])


def test_trust_frame_rejects_mismatches():
    result = fake_result(np.zeros((3, 2)), np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="same inputs"):
        trust_frame(np.full((2, 2), 0.5), np.array([0, 1]), result)
    with pytest.raises(ValueError, match="labels"):
        trust_frame(np.full((3, 2), 0.5), np.array([0, 1]), result)
    with pytest.raises(ValueError, match="integer classes"):
        trust_frame(np.full((3, 2), 0.5), np.array([0, 1, 2]), result)
    assert isinstance(trust_frame(np.full((3, 2), 0.5), np.array([0, 1, 1]), result), pd.DataFrame)


# --- Intervals and verdicts --------------------------------------------------------------------


def test_share_interval_is_wilsons_and_covers_as_promised():
    # Wilson's interval for 8 of 10 at 95%, from the closed form (Wilson 1927; Agresti & Coull 1998).
    low, high = share_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    for n in (20, 2300, 10**6):  # all or none: the interval reaches 1 or 0 exactly
        assert share_interval(0, n)[0] == 0.0 and share_interval(n, n)[1] == 1.0
        assert verdict(share_interval(n, n), value=1.0) == "reproduced"
    # Coverage over 4,000 binomial samples of a known share.
    rng = np.random.default_rng(0)
    p, n = 0.3, 60
    covered = np.mean([lo <= p <= hi for lo, hi in (share_interval(k, n) for k in rng.binomial(n, p, 4000))])
    assert 0.93 <= covered <= 0.97
    with pytest.raises(ValueError, match="successes <= n"):
        share_interval(11, 10)


def test_bootstrap_interval_of_a_mean_matches_the_normal_interval():
    x = np.random.default_rng(1).normal(2.0, 1.0, size=400)
    low, high = bootstrap_interval(x, seed=3)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert low == pytest.approx(x.mean() - half, abs=0.2 * half)
    assert high == pytest.approx(x.mean() + half, abs=0.2 * half)
    assert bootstrap_interval(x, seed=3) == (low, high)  # seeded: the same numbers again
    with pytest.raises(ValueError, match="finite"):
        bootstrap_interval([1.0, np.nan, 2.0])


def test_a_stratified_bootstrap_keeps_each_group_at_its_size():
    # 30 ones and 70 zeros: resampled within the groups, the mean is always 0.3; resampled
    # as one sample, it varies
    values = np.r_[np.ones(30), np.zeros(70)]
    assert bootstrap_interval(values, strata=values, n_boot=200) == pytest.approx((0.3, 0.3))
    low, high = bootstrap_interval(values, n_boot=200)
    assert low < 0.29 and high > 0.31
    # a difference between two groups: the stratified interval matches the normal one
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 2.0, 600)
    both, group = np.r_[a, b], np.r_[np.zeros(300), np.ones(600)]
    diff = lambda v: v[:300].mean() - v[300:].mean()  # noqa: E731 (rows of group 0 come first)
    low, high = bootstrap_interval(both, diff, strata=group, seed=1)
    half = 1.96 * np.sqrt(a.var(ddof=1) / 300 + b.var(ddof=1) / 600)
    assert low == pytest.approx(diff(both) - half, abs=0.2 * half)
    assert high == pytest.approx(diff(both) + half, abs=0.2 * half)
    with pytest.raises(ValueError, match="one label per row"):
        bootstrap_interval(values, strata=values[:-1])


@pytest.mark.parametrize(
    "interval, claim, tolerance, expected",
    [
        ((0.96, 0.97), dict(value=0.9798), 0.0, "not reproduced"),
        ((0.96, 0.97), dict(value=0.9798), 0.01, "reproduced"),
        ((0.70, 0.80), dict(at_least=0.73), 0.0, "inconclusive at this scale"),
        ((0.75, 0.80), dict(at_least=0.73), 0.0, "reproduced"),
        ((0.50, 0.60), dict(at_least=0.73), 0.0, "not reproduced"),
        ((-0.02, 0.01), dict(at_least=0.0), 0.0, "inconclusive at this scale"),
        ((0.01, 0.05), dict(at_most=0.07), 0.0, "reproduced"),
        ((0.10, 0.20), dict(at_most=0.07), 0.0, "not reproduced"),
    ],
)
def test_verdict_follows_the_stated_criterion(interval, claim, tolerance, expected):
    assert verdict(interval, tolerance=tolerance, **claim) == expected


@given(st.floats(-5, 5), st.floats(0, 3), st.floats(-5, 5))
def test_a_bound_and_its_mirror_get_the_same_verdict(low, width, claim):
    interval = (low, low + width)
    assert verdict(interval, at_least=claim) == verdict((-low - width, -low), at_most=-claim)
    assert verdict(interval, value=claim) in VERDICTS[:2]  # a value claim is always decided


def test_verdict_rejects_an_ill_posed_claim():
    with pytest.raises(ValueError, match="exactly one"):
        verdict((0, 1), value=0.5, at_least=0.2)
    with pytest.raises(ValueError, match="low <= high"):
        verdict((1, 0), value=0.5)


def test_mean_interval_is_students_and_a_single_run_gets_a_prediction_interval():
    v = np.array([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.3027
    low, high = mean_interval(v)
    assert (low, high) == pytest.approx((2 - 4.3027 / np.sqrt(3), 2 + 4.3027 / np.sqrt(3)), abs=1e-4)
    low, high = mean_interval([5.0], spread=v)
    assert (low, high) == pytest.approx((5 - 4.3027 * np.sqrt(4 / 3), 5 + 4.3027 * np.sqrt(4 / 3)), abs=1e-4)
    # Coverage of the mean of 5 normal draws, over 3,000 repetitions.
    rng = np.random.default_rng(2)
    covered = np.mean([lo <= 0 <= hi for lo, hi in (mean_interval(rng.normal(size=5)) for _ in range(3000))])
    assert 0.93 <= covered <= 0.97
    with pytest.raises(ValueError, match="at least two runs"):
        mean_interval([1.0])
