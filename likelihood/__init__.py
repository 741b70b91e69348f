"""Exact likelihood through the probability-flow ODE, and bits/dim of 8-bit data (MATH.md §6)."""
from likelihood.bpd import DEQUANTIZATIONS, BitsPerDimResult, bits_per_dim, bpd_from_logp
from likelihood.divergence import DIVERGENCES, NOISES
from likelihood.ode_logp import SOLVERS, LikelihoodResult, log_likelihood

__all__ = ["log_likelihood", "bits_per_dim", "bpd_from_logp", "LikelihoodResult", "BitsPerDimResult",
           "DIVERGENCES", "NOISES", "SOLVERS", "DEQUANTIZATIONS"]
