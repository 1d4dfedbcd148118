"""Mixture-of-experts routing arithmetic, vectorized: how many experts a batch of tokens wakes.

An MoE block's router sends each of N tokens to k of E experts. Each expert that receives at
least one token loads its weights once per forward pass, so the weight traffic of a block is
that of the experts woken, not of all E. With routing uniform and independent across tokens, an
expert is missed by one token with probability 1 - k/E, so the expected number woken is
E (1 - (1 - k/E)^N): k at N = 1 (decode of one sequence), nearly all E once N k >> E.

The expert GEMMs then run at N k / (experts woken) tokens each on average. Routing in real
models is skewed (the kernel database measures power-law token distributions next to balanced
ones): fewer experts wake and the busiest gets more than the mean. ``imbalance`` (the busiest
expert's tokens over the mean) scales the tokens of the GEMM the calibrated time runs at; the
default 1.0 is balanced routing. Under expert *tensor* parallelism (the only MoE sharding this
slice models: every chip holds a d_ff slice of every expert, split over the layout's mlp axes)
one grouped kernel runs all experts' tiles together, so its time follows the total work rather
than the busiest expert; expert parallelism (experts placed on chips, all-to-all dispatch) is a
later slice, and that is where imbalance sets the step time.
"""

from __future__ import annotations

import numpy as np

#: Busiest expert's tokens over the mean, applied to the calibrated expert GEMMs. 1.0: balanced
#: routing (see the module docstring for why expert tensor parallelism is insensitive to it). The
#: kernel data agree: with expert parallelism 1, the measured fused-MoE latency under power-law
#: routing is 0.96 (exponent 1.01, 173 matched shapes) and 0.99 (1.2, 149) of the balanced one
#: in the median (p10-p90 0.72-1.16), data/kernels/moe_perf.csv.gz.
DEFAULT_IMBALANCE = 1.0


def experts_woken(tokens, experts, experts_per_token) -> np.ndarray:
    """Expected number of distinct experts that receive at least one of ``tokens`` tokens, each
    routed to ``experts_per_token`` of ``experts`` uniformly: E (1 - (1 - k/E)^N). 0 where there
    are no experts (a dense model)."""
    e = np.asarray(experts, dtype=np.float64)
    safe = np.where(e > 0, e, 1.0)
    miss = np.clip(1.0 - np.asarray(experts_per_token, dtype=np.float64) / safe, 0.0, 1.0)
    return np.where(e > 0, e * (1.0 - miss ** np.asarray(tokens, dtype=np.float64)), 0.0)


def tokens_per_expert(tokens, experts, experts_per_token, imbalance=DEFAULT_IMBALANCE) -> np.ndarray:
    """Tokens the GEMM of one woken expert multiplies: N k over the experts woken (the mean),
    times ``imbalance``, capped at N (an expert sees each token at most once)."""
    woken = experts_woken(tokens, experts, experts_per_token)
    n = np.asarray(tokens, dtype=np.float64)
    mean = np.divide(n * experts_per_token, woken, out=np.zeros_like(woken), where=woken > 0)
    return np.minimum(mean * imbalance, n)


#: Expert parallelism: the busiest EP rank's routed tokens over the mean, applied to the expert
#: GEMMs' work on every rank (the step waits for the busiest). 1.0, from the measurements: in the
#: shared fused-MoE kernel database (AIConfigurator, ../shared/measurements/kernels/moe_perf.csv.gz,
#: 51,000 rows), one EP rank's kernel under power-law routing (exponents 1.01 and 1.2) against
#: the same shape balanced has median ratios 0.88-0.98 for EP 2 to 256 (p10 0.74-0.90, p90
#: 1.12-1.41; 40-350 matched shapes per EP size and exponent), and 0.90-1.04 where each expert
#: gets >= 8 tokens on average. The kernels absorb the skew in the median; the p90 (up to 1.3)
#: is the spread a user can set through this factor.
EP_IMBALANCE = 1.0


def ep_dispatch_bytes_per_chip(tokens, experts_per_token, d_model, act_bytes) -> np.ndarray:
    """Bytes one chip's all-to-all dispatch (or combine) moves: each of its ``tokens`` goes to
    its ``experts_per_token`` experts as a d_model-wide activation (DeepEP / pplx-kernels send one
    copy per routed expert; the (EP-1)/EP that stays local is the collective's own factor)."""
    return np.asarray(tokens, dtype=np.float64) * experts_per_token * d_model * act_bytes


def busiest_rank_woken_factor(tokens, experts, experts_per_token, expert_parallel) -> np.ndarray:
    """Experts woken on the busiest of ``expert_parallel`` ranks over the mean rank's, when
    ``tokens`` tokens each go to ``experts_per_token`` of ``experts`` uniformly (1 where EP is 1,
    there are no experts or no tokens).

    Under expert parallelism each rank holds n = E / EP experts and a step waits for the slowest
    rank (the combine all-to-all, or the TP all-reduce where EP = TP): the rank that streams the
    most woken experts' weights. With each expert woken independently with probability
    p = 1 - (1 - k/E)^N (:func:`experts_woken`), a rank's woken count is Binomial(n, p), and the
    busiest of EP ranks wakes E[max] = sum_{j<n} (1 - F(j)^EP), F the binomial CDF; the mean is
    n p. DeepSeek-V3 (E 256, k 8) at EP 8: 2.54 at N = 1 (8 experts on 8 ranks: the busiest
    rank holds 2-3 of them), 1.48 at N = 8, 1.09 at 64, 1.00 from 256 (a Monte Carlo of 3000
    routings: 1.485 and 1.090). Experts are woken with a slight negative correlation (a token's
    k are distinct), which the independent model ignores. Uniform routing: real routers are
    skewed, which raises the busiest rank's share further (EPLB's replicas lower it)."""
    n_tokens, e, k, ep = (
        a.ravel()
        for a in np.broadcast_arrays(
            *(np.asarray(x, dtype=np.float64) for x in (tokens, experts, experts_per_token, expert_parallel))
        )
    )
    shape = np.broadcast_shapes(*(np.shape(x) for x in (tokens, experts, experts_per_token, expert_parallel)))
    out = np.ones(n_tokens.shape)
    safe_e = np.where(e > 0, e, 1.0)
    log_miss_all = n_tokens * np.log1p(-np.minimum(k / safe_e, 1.0))  # log(1 - p)
    # Rows where some rank may miss one of its experts: P <= EP x n x (1 - p) = E (1 - p); below
    # 1e-9 the factor is 1 within 1e-9 (every prefill of a few hundred tokens or more).
    rows = np.flatnonzero(
        (ep > 1) & (e > 0) & (n_tokens > 0) & (k < e) & (log_miss_all > np.log(1e-9) - np.log(safe_e))
    )
    if not len(rows):
        return out.reshape(shape)
    # The distinct (tokens, E, k, EP) alone (a design space holds few): one integer key of the
    # token count's rank and the model's (E, k, EP).
    _, token_rank = np.unique(n_tokens[rows], return_inverse=True)
    shapes, shape_rank = np.unique(e[rows] * 1e8 + k[rows] * 1e4 + ep[rows], return_inverse=True)
    key = token_rank.reshape(-1).astype(np.int64) * len(shapes) + shape_rank.reshape(-1)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    n_tok, n_exp, top_k, ranks = (x[rows][first] for x in (n_tokens, e, k, ep))
    per_rank = np.floor(n_exp / ranks)  # EP divides the experts (deployments refuse otherwise)
    log_miss = n_tok * np.log1p(-top_k / n_exp)  # log(1 - p), exact for small p
    p = -np.expm1(log_miss)
    log_odds = np.log(np.maximum(p, 1e-300)) - log_miss
    log_pmf = per_rank * log_miss  # log P(0 woken on a rank)
    cdf = np.zeros(len(first))
    busiest = np.zeros(len(first))
    for j in range(int(per_rank.max())):
        live = j < per_rank
        cdf = np.minimum(cdf + np.exp(np.minimum(log_pmf, 0.0)), 1.0)  # (a probability: <= 1)
        busiest += np.where(live, 1.0 - cdf**ranks, 0.0)
        # P(j + 1) from P(j); a rank past its n experts keeps its last (unused) value.
        step = np.log(np.maximum(per_rank - j, 1.0)) - np.log(j + 1.0) + log_odds
        log_pmf = np.where(live, log_pmf + step, log_pmf)
    mean = per_rank * p
    factor = np.divide(busiest, mean, out=np.ones_like(mean), where=mean > 0)
    out[rows] = np.maximum(factor, 1.0)[inverse.reshape(-1)]
    return out.reshape(shape)
