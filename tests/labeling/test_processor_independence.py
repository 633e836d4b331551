"""The labels and the data are the same bits whatever processor computes them.

No second kind of processor is at hand in a test, so one is emulated: a child process whose
math libraries are held to the code paths of an older x86-64 processor (OpenBLAS's Nehalem
kernels, NumPy and PyTorch without AVX2 or AVX-512, MKL limited to SSE4.2). SciPy's L-BFGS-B,
which fitted the click-rate priors before, moved its optimum in 32 of the ci preset's 36
fits under this emulation (its inner products run in BLAS), and through the graded labels
so did the dataset fingerprint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln

from labeling.click_rates import fit_beta_prior

ROOT = Path(__file__).resolve().parents[2]
OLDER_PROCESSOR = {
    "OPENBLAS_CORETYPE": "Nehalem",
    "OPENBLAS_NUM_THREADS": "1",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX2 FMA3 AVX F16C",
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
}

_PRIORS = """
import json, sys
import numpy as np
from labeling.click_rates import fit_beta_prior
rng = np.random.default_rng(0)
out = []
for _ in range(12):  # pairs like a log's: most shown once or twice, exposure fractional
    shows = rng.geometric(0.6, 1000)
    exposure = shows * rng.choice([1.0, 1.0, 0.55, 0.8], 1000)
    clicks = rng.binomial(shows, rng.beta(0.6, 2.0, 1000)).astype(float)
    prior = fit_beta_prior(clicks, exposure)
    out.append([prior.alpha.hex(), prior.beta.hex()])
print(json.dumps(out))
"""


def _run(code: str, *args: str, emulate: bool, cache: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RANKBENCH_CACHE": str(cache)}
    env.update(OLDER_PROCESSOR if emulate else {"OPENBLAS_NUM_THREADS": "1"})
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_beta_priors_are_the_same_bits_on_an_emulated_older_processor(tmp_path):
    here = _run(_PRIORS, emulate=False, cache=tmp_path / "a")
    there = _run(_PRIORS, emulate=True, cache=tmp_path / "b")
    assert json.loads(here) == json.loads(there)


def test_the_prior_is_the_maximum_likelihood_an_independent_optimizer_finds():
    rng = np.random.default_rng(3)
    shows = rng.geometric(0.3, 5000)
    exposure = shows * rng.uniform(0.4, 1.0, 5000)
    clicks = np.minimum(rng.binomial(shows, rng.beta(1.5, 12.0, 5000)), exposure)
    failures = exposure - clicks

    def negative_log_likelihood(log_params):
        a, b = np.exp(log_params)
        return -np.sum(betaln(clicks + a, failures + b) - betaln(a, b))

    reference = minimize(
        negative_log_likelihood,
        [0.0, 2.0],
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-9, "maxiter": 5000},
    )
    prior = fit_beta_prior(clicks, exposure)
    fitted = np.log([prior.alpha, prior.beta])
    np.testing.assert_allclose(fitted, reference.x, atol=1e-5)
    assert negative_log_likelihood(fitted) <= reference.fun + 1e-9
