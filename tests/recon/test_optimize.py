"""The hand-written batched L-BFGS against SciPy's L-BFGS-B on small bounded problems."""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

from bids_recon.recon.optimize import lbfgs


def test_lbfgs_reaches_scipys_bounded_optimum_for_each_image_of_a_batch():
    rng = np.random.default_rng(0)
    n_images, dim = 3, 12
    a = rng.normal(size=(n_images, 20, dim))
    b = rng.normal(size=(n_images, 20)) * 3
    lower, upper = -0.5, 0.4  # tight enough that several coordinates end on a bound
    a_t, b_t = torch.as_tensor(a), torch.as_tensor(b)

    def objective(x: torch.Tensor) -> torch.Tensor:  # per-image least squares
        residual = torch.einsum("nij,nj->ni", a_t, x) - b_t
        return residual.pow(2).sum(dim=1)

    x, curves = lbfgs(
        objective,
        torch.zeros(n_images, dim, dtype=torch.float64),
        200,
        torch.tensor(lower, dtype=torch.float64),
        torch.tensor(upper, dtype=torch.float64),
    )
    for k in range(n_images):

        def f(v, k=k):
            r = a[k] @ v - b[k]
            return float(r @ r), 2 * a[k].T @ r

        reference = scipy.optimize.minimize(
            f, np.zeros(dim), jac=True, method="L-BFGS-B", bounds=[(lower, upper)] * dim,
            options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-12},
        )  # fmt: skip
        on_bound = np.isclose(reference.x, lower) | np.isclose(reference.x, upper)
        assert on_bound.sum() >= 2  # the bounds matter in this problem
        np.testing.assert_allclose(x[k].numpy(), reference.x, atol=1e-5)
        assert abs(curves[k][-1] - reference.fun) <= 1e-8 * max(1.0, reference.fun)
        steps = zip(curves[k], curves[k][1:], strict=False)
        assert all(later <= earlier + 1e-12 for earlier, later in steps)
