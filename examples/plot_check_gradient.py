"""
Checking a gradient with ``check_gradient``
===========================================

L-BFGS trusts the gradient it is given: a wrong gradient does not raise an error, it just makes
the optimiser stop early at a poor point. The UFLDL notes therefore recommend checking every
analytic gradient against central finite differences before trusting it.
:func:`skae.check_gradient` does exactly that for any function ``fun(theta) -> (J, grad)`` and
returns the relative difference

.. math::

   \\frac{\\|g_\\text{num} - g_\\text{ana}\\|}{\\|g_\\text{num} + g_\\text{ana}\\|},
   \\qquad g_{\\text{num}, i} = \\frac{J(\\theta + \\varepsilon e_i)
   - J(\\theta - \\varepsilon e_i)}{2 \\varepsilon}.

Here we check the gradient of an L2-regularised logistic regression loss, once correct and once
with a classic bug.
"""

# %%
# A small logistic regression objective
# -------------------------------------
# ``theta`` holds the weights; ``fun`` returns the mean log-loss plus an L2 penalty, and its
# gradient.
import numpy as np

from skae import check_gradient

rng = np.random.default_rng(0)
X = rng.normal(size=(50, 5))
y = (X @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) + rng.normal(size=50) > 0).astype(float)
lam = 0.1


def loss_and_grad(theta):
    p = 1.0 / (1.0 + np.exp(-(X @ theta)))
    J = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)) + lam / 2 * theta @ theta
    grad = X.T @ (p - y) / len(y) + lam * theta
    return J, grad


def buggy_loss_and_grad(theta):
    # Forgot the derivative of the penalty: a typical mistake.
    J, grad = loss_and_grad(theta)
    return J, grad - lam * theta


theta = rng.normal(size=5)
good = check_gradient(loss_and_grad, theta)
bad = check_gradient(buggy_loss_and_grad, theta)
print(f"correct gradient: relative difference = {good:.2e}")
print(f"buggy gradient:   relative difference = {bad:.2e}")

# %%
# What the number means
# ---------------------
# For a correct gradient in float64 the difference comes only from the finite-difference
# approximation (an error of order :math:`\varepsilon^2`) and rounding: values around
# :math:`10^{-9}` or below. A wrong gradient gives a value many orders of magnitude larger,
# often of order :math:`10^{-2}` to 1. skae's own test suite checks the autoencoder objective of
# every valid combination of options this way and requires less than :math:`10^{-8}`.
#
# The step ``epsilon`` (default ``1e-4``) trades the two sources of error: a much smaller step
# amplifies rounding error, a much larger one the curvature error.
import matplotlib.pyplot as plt

epsilons = np.logspace(-10, -1, 19)
differences = [check_gradient(loss_and_grad, theta, epsilon=eps) for eps in epsilons]

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(epsilons, differences, "o-", label="correct gradient")
ax.axhline(bad, color="C3", linestyle="--", label="buggy gradient (epsilon=1e-4)")
ax.axvline(1e-4, color="gray", linewidth=0.8)
ax.set_xlabel("epsilon")
ax.set_ylabel("relative difference")
ax.set_ylim(top=1e3)  # room for the legend above the buggy gradient's line
ax.set_title("check_gradient: finite-difference step vs. accuracy")
ax.legend(loc="upper right")
fig.tight_layout()
plt.show()
