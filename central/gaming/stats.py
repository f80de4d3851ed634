"""The tests the patterns share, on plain numbers (scipy underneath)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats


def binom_greater(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p): more events than the rate explains."""
    if k <= 0:
        return 1.0
    return float(stats.binom.sf(k - 1, n, min(max(p, 0.0), 1.0)))


def binom_less(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p): fewer events than the rate explains."""
    return float(stats.binom.cdf(k, n, min(max(p, 0.0), 1.0)))


def variance_ratio_less(sample: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """(ratio, p) of the chi-square test that ``sample``'s variance is below the reference's.

    The reference's variance is estimated robustly ((1.4826 · MAD)², exact for a normal sample),
    so a gaming window's own presses inside the hall's sample cannot widen it and make every
    other window look regular."""
    ref = np.asarray(reference, dtype=float)
    mad = float(np.median(np.abs(ref - np.median(ref))))
    r2 = (1.4826 * mad) ** 2
    s2 = float(np.var(sample, ddof=1))
    if r2 <= 0:
        return 1.0, 1.0
    ratio = s2 / r2
    df = len(sample) - 1
    return ratio, float(stats.chi2.cdf(ratio * df, df))


def longest_run_at_least(run: int, n: int, p: float) -> float:
    """P(some run of ≥ ``run`` successes in ``n`` Bernoulli(p) trials), exactly.

    The chain's state is the current run length (0 … run−1); mass reaching ``run`` is absorbed
    and summed, so tiny probabilities keep their precision."""
    if run <= 0:
        return 1.0
    if run > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    state = np.zeros(run)
    state[0] = 1.0
    absorbed = 0.0
    for _ in range(n):
        absorbed += p * state[-1]
        total = state.sum()
        state[1:] = p * state[:-1]
        state[0] = (1 - p) * total
    return min(1.0, absorbed)


EXACT_MULTINOMIAL_MAX_N = 300


def multinomial_test(counts: Sequence[int], probs: Sequence[float]) -> float:
    """Goodness of fit of ``counts`` to ``probs`` (three classes): the exact multinomial test
    (the probability of every outcome no likelier than the one seen) up to
    ``EXACT_MULTINOMIAL_MAX_N`` presses, Pearson's chi-square beyond (expected counts are then
    large enough for it)."""
    n = int(sum(counts))
    p = np.clip(np.asarray(probs, dtype=float), 1e-12, None)
    p = p / p.sum()
    if n == 0:
        return 1.0
    if n > EXACT_MULTINOMIAL_MAX_N or len(counts) != 3:
        expected = n * p
        chi2 = float((((np.asarray(counts) - expected) ** 2) / expected).sum())
        return float(stats.chi2.sf(chi2, len(counts) - 1))
    lf = special.gammaln(np.arange(n + 1) + 1.0)  # log k!
    x, y = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = x + y <= n
    x, y = x[ok], y[ok]
    z = n - x - y
    logp = np.log(p)

    def logpmf(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        out: np.ndarray = lf[n] - lf[a] - lf[b] - lf[c] + a * logp[0] + b * logp[1] + c * logp[2]
        return out

    every = logpmf(x, y, z)
    seen = logpmf(*(np.asarray([k]) for k in counts))[0]
    return min(1.0, float(np.exp(every[every <= seen + 1e-7]).sum()))


def total_variation(observed: Sequence[float], expected: Sequence[float]) -> float:
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    if o.sum() <= 0 or e.sum() <= 0:
        return 0.0
    return float(0.5 * np.abs(o / o.sum() - e / e.sum()).sum())


def bh_adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (q-values), in the order given."""
    if not p_values:
        return []
    return [float(q) for q in stats.false_discovery_control(list(p_values), method="bh")]
