"""The hand-written batched L-BFGS against SciPy's L-BFGS-B on small bounded problems."""

from __future__ import annotations

import numpy as np
import pytest
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

    def objective(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        a_rows, b_rows = (a_t, b_t) if rows is None else (a_t[rows], b_t[rows])
        residual = torch.einsum("nij,nj->ni", a_rows, x) - b_rows  # per-image least squares
        return residual.pow(2).sum(dim=1)

    x, trace = lbfgs(
        objective,
        torch.zeros(n_images, dim, dtype=torch.float64),
        200,
        torch.tensor(lower, dtype=torch.float64),
        torch.tensor(upper, dtype=torch.float64),
        ftol=1e-15,  # as SciPy's below: float64, run to the optimum
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
        assert abs(trace.curves[k][-1] - reference.fun) <= 1e-8 * max(1.0, reference.fun)
        steps = zip(trace.curves[k], trace.curves[k][1:], strict=False)
        assert all(later <= earlier + 1e-12 for earlier, later in steps)


def test_lbfgs_stops_converged_images_and_spends_no_passes_on_them():
    rng = np.random.default_rng(1)
    a = torch.as_tensor(rng.normal(size=(2, 30, 10)))
    a[0] = torch.linalg.qr(a[0]).Q  # image 0: a round bowl, solved in a few iterations
    b = torch.as_tensor(rng.normal(size=(2, 30)))
    evaluated: list[int] = []

    def objective(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        a_rows, b_rows = (a, b) if rows is None else (a[rows], b[rows])
        evaluated.append(len(x))
        return (torch.einsum("nij,nj->ni", a_rows, x) - b_rows).pow(2).sum(dim=1)

    start = torch.zeros(2, 10, dtype=torch.float64)
    x, trace = lbfgs(objective, start, 100)
    assert sum(evaluated) == sum(trace.passes)  # stopped images are not evaluated
    assert trace.passes[0] < trace.passes[1] / 2 and len(trace.curves[0]) < len(trace.curves[1])
    for k in range(2):
        evaluated.clear()
        alone, alone_trace = lbfgs(
            lambda v, rows, k=k: objective(v, torch.tensor([k])), start[k : k + 1], 100
        )
        assert alone_trace.passes[0] == trace.passes[k]  # as many passes as alone
        assert alone_trace.curves[0] == pytest.approx(trace.curves[k], rel=1e-12)
        torch.testing.assert_close(alone[0], x[k])
