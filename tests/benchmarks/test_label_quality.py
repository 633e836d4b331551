import numpy as np
from scipy.stats import kendalltau

from benchmarks.label_quality import agreement, kendall_tau_b


def test_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    sizes = rng.integers(2, 12, 40)
    group = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.integers(0, 4, len(group)).astype(float)
    y = rng.integers(0, 5, len(group)).astype(float)
    ours = kendall_tau_b(x, y, group)
    for g in range(len(sizes)):
        rows = group == g
        expected = kendalltau(x[rows], y[rows]).statistic
        if np.isnan(expected):
            assert np.isnan(ours[g])
        else:
            assert abs(ours[g] - expected) < 1e-12


def test_agreement_of_the_truth_with_itself_is_perfect():
    rng = np.random.default_rng(1)
    request_id = np.repeat(np.arange(30), 6)
    truth = rng.integers(0, 5, len(request_id))
    table = agreement(truth, {"truth": truth, "reversed": -truth}, request_id)
    perfect = table.row(0, named=True)
    assert perfect["ndcg@10"] == 1.0 and perfect["kendall_tau"] == 1.0
    assert table.row(1, named=True)["kendall_tau"] == -1.0
