#!/usr/bin/python3
"""How robust rules combine scaled-sign updates with error feedback, on synthetic non-IID updates (no training).

Each honest device i has update Δ_i = μ + h_i + noise (h_i: a fixed per-device drift, the non-IID part). Devices
compress with EF14 + scaled sign (one scale per block of 4096, algorithms.md §1); attackers forge before their own
EF + sign. For every rule we report, averaged over T rounds:
  progress = <agg, μ>/‖μ‖²      (1 = the full mean step FedAvg would take, <0 = moving backwards)
  off      = ‖agg − progress·μ‖/‖μ‖ (the part of the step that is not along μ: drift, noise, attack)
Usage: /usr/bin/python3 bench/learning/sign_rules_synthetic.py
"""
import numpy as np
from statistics import NormalDist

d, n, f, T, B = 8192, 20, 4, 30, 4096
rng = np.random.default_rng(0)
mu = rng.normal(0, 1, d) * 0.01
drift = rng.normal(0, 1, (n, d)) * 0.02     # non-IID: per-device drift twice the signal
noise = 0.02

def scaled_sign(v):
    out = np.empty_like(v)
    for s in range(0, len(v), B):
        blk = v[s:s + B]
        out[s:s + B] = np.abs(blk).mean() * np.sign(blk)
    return out

def trimmed(x, b):
    s = np.sort(x, axis=0)
    return s[b:len(x) - b].mean(axis=0)

def cclip(x, tau, v0, iters=3):
    v = v0.copy()
    for _ in range(iters):
        diff = x - v
        norms = np.linalg.norm(diff, axis=1, keepdims=True)
        v = v + (diff * np.minimum(1, tau / np.maximum(norms, 1e-12))).mean(axis=0)
    return v

def bucket(x, s, r):
    idx = r.permutation(len(x))
    return np.stack([x[idx[k:k + s]].mean(axis=0) for k in range(0, len(x), s)])

def nnm(x, f):
    """Nearest-neighbour mixing (Allouah et al. 2023): each row -> mean of its n - f nearest rows (itself included)."""
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :len(x) - f]
    return x[idx].mean(axis=1)

rules = {
    "mean": lambda x, prev, r: x.mean(axis=0),
    "median": lambda x, prev, r: np.median(x, axis=0),
    "trimmed-mean": lambda x, prev, r: trimmed(x, f),
    "bucket2+trimmed-mean": lambda x, prev, r: trimmed(bucket(x, 2, r), (f + 1) // 2 + (f + 1) % 2),
    "centered-clip tau=10": lambda x, prev, r: cclip(x, 10.0, prev),
    "bucket2+median": lambda x, prev, r: np.median(bucket(x, 2, r), axis=0),
    "nnm+trimmed-mean": lambda x, prev, r: trimmed(nnm(x, f), f),
    "nnm+median": lambda x, prev, r: np.median(nnm(x, f), axis=0),
}

def forge(attack, honest_raw, own):
    m, s = honest_raw.mean(axis=0), honest_raw.std(axis=0)
    if attack == "sign-flip": return -own
    if attack == "gaussian": return rng.normal(0, np.sqrt(200), d)
    if attack == "ipm": return -0.1 * m
    if attack == "alie":
        s_ = n // 2 + 1 - f
        z = NormalDist().inv_cdf((n - f - s_) / (n - f))
        return m - z * s
    return own

for attack in ["none", "sign-flip", "gaussian", "ipm", "alie"]:
    print(f"\nattack {attack} ({0 if attack == 'none' else f}/{n} attackers), sign + EF14:")
    for name, rule in rules.items():
        err = np.zeros((n, d)); prev = np.zeros(d); prog = off = 0.0
        r = np.random.default_rng(1)
        for t in range(T):
            raw = mu + drift + rng.normal(0, noise, (n, d))
            bad = 0 if attack == "none" else f
            honest = raw[bad:]
            msgs = np.empty_like(raw)
            for i in range(n):
                delta = forge(attack, honest, raw[i]) if i < bad else raw[i]
                err[i] += delta
                c = scaled_sign(err[i]); err[i] -= c; msgs[i] = c
            agg = rule(msgs, prev, r); prev = agg
            p = agg @ mu / (mu @ mu); prog += p; off += np.linalg.norm(agg - p * mu) / np.linalg.norm(mu)
        print(f"  {name:24s} progress {prog / T:+.3f}   off-direction {off / T:.3f}")
