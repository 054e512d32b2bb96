"""Image optimizers, batched with independent per-image state.

Every quantity (step sizes, momentum, L-BFGS memory, line searches) is kept per image, so a
batch gives the same result as optimizing each image alone (up to floating point).

- :func:`gradient_descent`: the paper's GD with momentum (docs/method.md §4.2): learning rate
  decaying linearly, momentum, gradient normalized by its mean absolute value, multiplicative decay,
  optional jitter, clipping to bounds.
- :func:`lbfgs`: projected L-BFGS with box bounds (pixels stay valid), as the paper's L-BFGS-B
  on pixels (docs/method.md §4.3), with a backtracking Armijo line search per image. Variables
  held at a bound by their gradient are left out of the quasi-Newton step, which makes it reach
  L-BFGS-B's bounded optimum (``tests/test_optimize.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Objective = Callable[[torch.Tensor], torch.Tensor]  # (batch, ...) -> per-image loss (batch,)


@dataclass(frozen=True)
class GDSchedule:
    """Gradient descent settings; learning rate and decay change linearly over iterations.

    The defaults are the paper's DGN settings (docs/method.md §4.2): lr 2 → 1e-10, momentum 0.9,
    decay 0.01.
    """

    iterations: int = 200
    lr_start: float = 2.0
    lr_end: float = 1e-10
    momentum: float = 0.9
    decay_start: float = 0.01
    decay_end: float = 0.01
    jitter: int = 0


def _value_and_grad(objective: Objective, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    loss = objective(x)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _held(
    x: torch.Tensor, grad: torch.Tensor, lower: torch.Tensor | None, upper: torch.Tensor | None
) -> torch.Tensor:
    """Variables at a bound whose gradient pushes them further out (they cannot move)."""
    held = torch.zeros_like(x, dtype=torch.bool)
    if lower is not None:
        held |= (x <= lower) & (grad > 0)
    if upper is not None:
        held |= (x >= upper) & (grad < 0)
    return held


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


def gradient_descent(
    objective: Objective,
    start: torch.Tensor,
    schedule: GDSchedule,
    lower: torch.Tensor | None = None,
    upper: torch.Tensor | None = None,
    jitter_seeds: list[int] | None = None,
) -> tuple[torch.Tensor, list[list[float]]]:
    """Gradient descent with momentum on ``start`` (batch, ...).

    Parameters
    ----------
    objective : callable
        Per-image loss of a batch.
    start : tensor
        Initial values (pixels or generator latents).
    schedule : GDSchedule
    lower, upper : tensor, optional
        Bounds (broadcast against one image) applied after every step.
    jitter_seeds : list of int, optional
        Per-image seeds of the random shifts (``schedule.jitter`` pixels) so that a batch and a
        single image see the same shifts.

    Returns
    -------
    result : tensor
        The optimized values.
    curves : list of list of float
        Loss per iteration for each image.
    """
    x = start.detach().clone()
    velocity = torch.zeros_like(x)
    curves = [[] for _ in range(len(x))]
    generators = [torch.Generator().manual_seed(s) for s in (jitter_seeds or [0] * len(x))]
    n = schedule.iterations
    for t in range(n):
        lr = schedule.lr_start + t * (schedule.lr_end - schedule.lr_start) / n
        decay = schedule.decay_start + t * (schedule.decay_end - schedule.decay_start) / n
        shifts = None
        if schedule.jitter:
            shifts = [
                tuple(
                    int(v)
                    for v in torch.randint(-schedule.jitter, schedule.jitter + 1, (2,), generator=g)
                )
                for g in generators
            ]
            x = torch.stack([xi.roll(s, dims=(-2, -1)) for xi, s in zip(x, shifts, strict=True)])
        loss, grad = _value_and_grad(objective, x)
        for curve, value in zip(curves, loss.tolist(), strict=True):
            curve.append(value)
        scale = grad.abs().flatten(1).mean(dim=1).clamp_min(1e-30)
        velocity = schedule.momentum * velocity + grad / _per_image(scale, grad)
        x = (x - lr * velocity) * (1 - decay)
        if shifts is not None:
            x = torch.stack(
                [xi.roll((-s[0], -s[1]), dims=(-2, -1)) for xi, s in zip(x, shifts, strict=True)]
            )
        if lower is not None:
            x = torch.maximum(x, lower)
        if upper is not None:
            x = torch.minimum(x, upper)
    return x.detach(), curves


def lbfgs(
    objective: Objective,
    start: torch.Tensor,
    iterations: int = 200,
    lower: torch.Tensor | None = None,
    upper: torch.Tensor | None = None,
    history: int = 10,
    max_backtracks: int = 20,
) -> tuple[torch.Tensor, list[list[float]]]:
    """Projected L-BFGS with per-image memory and Armijo backtracking, within box bounds.

    Returns the optimized batch and the loss per iteration of each image (non-increasing).
    """

    def project(values: torch.Tensor) -> torch.Tensor:
        if lower is not None:
            values = torch.maximum(values, lower)
        if upper is not None:
            values = torch.minimum(values, upper)
        return values

    x = project(start.detach().clone())
    batch = len(x)
    flat = lambda v: v.reshape(batch, -1)  # noqa: E731
    loss, grad = _value_and_grad(objective, x)
    curves = [[v] for v in loss.tolist()]
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    active = torch.ones(batch, dtype=torch.bool, device=x.device)
    for _ in range(iterations):
        # variables held at a bound by their gradient stay out of the quasi-Newton step
        # (their gradient would otherwise steer the step of the free ones)
        held = flat(_held(x, grad, lower, upper))
        free_grad = torch.where(held, torch.zeros_like(flat(grad)), flat(grad))
        q = free_grad.clone()
        alphas = []
        for s, y in zip(reversed(s_hist), reversed(y_hist), strict=True):
            rho = 1.0 / (s * y).sum(dim=1).clamp_min(1e-30)
            a = rho * (s * q).sum(dim=1)
            q -= a[:, None] * y
            alphas.append((rho, a))
        if s_hist:
            s, y = s_hist[-1], y_hist[-1]
            gamma = (s * y).sum(dim=1) / (y * y).sum(dim=1).clamp_min(1e-30)
            q *= gamma[:, None]
        else:
            q /= free_grad.abs().mean(dim=1, keepdim=True).clamp_min(1e-30)
        for (s, y), (rho, a) in zip(
            zip(s_hist, y_hist, strict=True), reversed(alphas), strict=True
        ):
            b = rho * (y * q).sum(dim=1)
            q += (a - b)[:, None] * s
        direction = torch.where(held, torch.zeros_like(q), -q)
        slope = (direction * free_grad).sum(dim=1)
        direction = torch.where((slope < 0)[:, None], direction, -free_grad)
        step = torch.ones(batch, device=x.device, dtype=x.dtype)
        new_x, new_loss, new_grad = x, loss, grad
        accepted = torch.zeros(batch, dtype=torch.bool, device=x.device)
        for _ in range(max_backtracks):
            trial = project(x + (step[:, None] * direction).reshape(x.shape))
            # the gradient comes with the trial: an accepted step needs no second pass
            trial_loss, trial_grad = _value_and_grad(objective, trial)
            decrease = 1e-4 * (flat(grad) * flat(trial - x)).sum(dim=1)
            ok = active & ~accepted & (trial_loss <= loss + decrease)
            new_x = torch.where(_per_image(ok, x), trial, new_x)
            new_loss = torch.where(ok, trial_loss, new_loss)
            new_grad = torch.where(_per_image(ok, x), trial_grad, new_grad)
            accepted |= ok
            if bool((accepted | ~active).all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        active &= accepted  # an image whose line search failed has converged
        s_new, y_new = flat(new_x - x), flat(new_grad - grad)
        keep = (s_new * y_new).sum(dim=1) > 1e-10
        s_hist.append(torch.where(keep[:, None], s_new, torch.zeros_like(s_new)))
        y_hist.append(torch.where(keep[:, None], y_new, torch.zeros_like(y_new)))
        s_hist, y_hist = s_hist[-history:], y_hist[-history:]
        x, loss, grad = new_x, torch.where(active, new_loss, loss), new_grad
        for curve, value in zip(curves, loss.tolist(), strict=True):
            curve.append(value)
        if not bool(active.any()):
            break
    return x.detach(), curves
