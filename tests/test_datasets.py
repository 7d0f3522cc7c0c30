"""The tutorial's cohorts: exact random streams of the reference tutorial, and other draws."""

import numpy as np
import pandas as pd

from spectranorm_neuro.datasets import SITES, tutorial_cohorts


def _legacy_global_draw(seed: int, n: int) -> pd.DataFrame:
    """The tutorial's own first draws, with numpy's legacy global generator (state restored after)."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return pd.DataFrame({"age": np.random.uniform(10, 80, size=n),
                             "site": np.random.choice(list(SITES), size=n)})
    finally:
        np.random.set_state(state)


def test_default_seeds_reproduce_the_tutorial_draws_without_touching_global_state():
    before = np.random.get_state()[1].copy()
    (train, mean, sd, obs, eps), (test, *_rest) = tutorial_cohorts(40, 20)
    assert np.array_equal(np.random.get_state()[1], before)
    pd.testing.assert_frame_equal(train, _legacy_global_draw(42, 40))
    pd.testing.assert_frame_equal(test, _legacy_global_draw(43, 20))
    # the process: observed = mean + eps * sd with sd = 0.1 mean + 0.01 age
    np.testing.assert_allclose(obs, mean + eps[:, None] * sd, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sd, 0.1 * mean + 0.01 * train["age"].to_numpy()[:, None], atol=1e-12)


def test_other_seeds_draw_other_cohorts_reproducibly():
    a = tutorial_cohorts(30, 10, seeds=(1, 2))
    b = tutorial_cohorts(30, 10, seeds=(1, 2))
    default = tutorial_cohorts(30, 10)
    np.testing.assert_array_equal(a[0][3], b[0][3])
    np.testing.assert_array_equal(a[1][4], b[1][4])
    assert not np.allclose(a[0][3], default[0][3])
    pd.testing.assert_frame_equal(a[0][0], _legacy_global_draw(1, 30))
