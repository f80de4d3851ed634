import itertools
import math
import random

import pytest

from central.gaming.stats import (
    bh_adjust,
    binom_greater,
    binom_less,
    longest_run_at_least,
    multinomial_test,
    total_variation,
    variance_ratio_less,
)


def _brute_run(run: int, n: int, p: float) -> float:
    total = 0.0
    for seq in itertools.product((0, 1), repeat=n):
        best = cur = 0
        for x in seq:
            cur = cur + 1 if x else 0
            best = max(best, cur)
        if best >= run:
            total += p ** sum(seq) * (1 - p) ** (n - sum(seq))
    return total


@pytest.mark.parametrize(
    ("run", "n", "p"), [(2, 3, 0.5), (3, 10, 0.7), (5, 12, 0.9), (1, 4, 0.2), (13, 12, 0.9)]
)
def test_longest_run_matches_enumeration(run: int, n: int, p: float) -> None:
    assert longest_run_at_least(run, n, p) == pytest.approx(_brute_run(run, n, p), abs=1e-12)


def _brute_multinomial(counts: list[int], probs: list[float]) -> float:
    n = sum(counts)

    def pmf(c: tuple[int, ...]) -> float:
        coef = math.factorial(n) / math.prod(math.factorial(k) for k in c)
        return coef * math.prod(q**k for q, k in zip(probs, c, strict=True))

    seen = pmf(tuple(counts))
    outcomes = [(a, b, n - a - b) for a in range(n + 1) for b in range(n + 1 - a)]
    return sum(pmf(o) for o in outcomes if pmf(o) <= seen * (1 + 1e-7))


@pytest.mark.parametrize(
    ("counts", "probs"),
    [
        ([10, 0, 0], [0.8, 0.12, 0.08]),
        ([6, 2, 2], [0.8, 0.12, 0.08]),
        ([3, 3, 6], [0.8, 0.12, 0.08]),
        ([20, 5, 1], [0.7, 0.2, 0.1]),
    ],
)
def test_exact_multinomial_matches_enumeration(counts: list[int], probs: list[float]) -> None:
    assert multinomial_test(counts, probs) == pytest.approx(
        _brute_multinomial(counts, probs), rel=1e-6
    )


@pytest.mark.parametrize(
    ("k", "n", "p", "greater", "less"),
    [(3, 3, 0.5, 0.125, 1.0), (0, 10, 0.1, 1.0, 0.9**10), (1, 2, 0.5, 0.75, 0.75)],
)
def test_binomial_tails(k: int, n: int, p: float, greater: float, less: float) -> None:
    assert binom_greater(k, n, p) == pytest.approx(greater)
    assert binom_less(k, n, p) == pytest.approx(less)


def test_variance_ratio_and_distance_and_bh() -> None:
    rng = random.Random(5)
    hall = [rng.gauss(0, 1) for _ in range(2000)]
    ratio, p = variance_ratio_less([rng.gauss(0, 0.1) for _ in range(25)], hall)
    assert ratio < 0.05 and p < 1e-9
    ratio, p = variance_ratio_less([rng.gauss(0, 1) for _ in range(40)], hall)
    assert 0.6 < ratio < 1.5 and p > 0.05
    # a tenth of the hall pressing at once does not make honest windows look regular
    widened = hall + [-5.0 + rng.gauss(0, 0.1) for _ in range(200)]
    assert variance_ratio_less([rng.gauss(0, 1) for _ in range(40)], widened)[1] > 0.05
    assert total_variation([50, 25, 25], [0.5, 0.5, 0.0]) == pytest.approx(0.25)
    assert bh_adjust([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
