#!/usr/bin/python3
"""NumPy peer for `fededge bench aggregate`: times mean, median, trimmed mean, Krum and Multi-Krum on the same input.

Usage: /usr/bin/python3 bench/aggregate_peer_numpy.py U.npy [--f 5] [--reps 3]

Produce U.npy with `fededge bench aggregate --n 50 --d 1000000 --save U.npy`. Each rule is timed in the form the
reference implementations use (epfml/byzantine-robust-noniid-optimizer, ByzFL), and for fairness also in the
other straightforward NumPy form (np.partition for the trimmed mean, a BLAS Gram matrix for Krum's distances);
the ratio to FedEdge is taken against the faster of the two. Prints the best of --reps runs after one warm-up,
in milliseconds, with the process CPU time of that run (NumPy runs these on one core).
"""
import argparse
import time

import numpy as np


def mean(u):
    return u.mean(axis=0)


def median(u):
    return np.median(u, axis=0)


def trimmed_mean_sort(u, f):
    n = u.shape[0]
    return np.sort(u, axis=0)[f:n - f].mean(axis=0)


def trimmed_mean_partition(u, f):
    n = u.shape[0]
    part = np.partition(u, [f, n - f - 1], axis=0)
    return part[f:n - f].mean(axis=0)


def krum_scores(distances, n, f):
    k = n - f - 2  # Blanchard et al.: n - f - 2 nearest others (FedEdge uses the same)
    scores = []
    for i in range(n):
        others = np.delete(distances[i], i)
        scores.append(np.sort(others)[:k].sum())
    return np.array(scores)


def krum_pairwise(u, f):
    """Distances by differences of rows, as the reference implementations compute them."""
    n = u.shape[0]
    distances = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            diff = u[i] - u[j]
            distances[i, j] = distances[j, i] = float(np.dot(diff, diff))
    return u[int(np.argmin(krum_scores(distances, n, f)))]


def krum_gram(u, f):
    """Distances from the Gram matrix (one BLAS sgemm): fastest in NumPy, but float32 cancellation when rows are close."""
    n = u.shape[0]
    gram = (u @ u.T).astype(np.float64)
    sq = np.diag(gram)
    distances = np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0)
    return u[int(np.argmin(krum_scores(distances, n, f)))]


def multi_krum_gram(u, f):
    """Average of the n - f lowest Krum scores (ByzFL's default m), distances from the Gram matrix."""
    n = u.shape[0]
    gram = (u @ u.T).astype(np.float64)
    sq = np.diag(gram)
    distances = np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0)
    selected = np.argsort(krum_scores(distances, n, f))[:n - f]
    return u[selected].mean(axis=0)


def best(reps, fn):
    """Best wall time of reps runs after a warm-up, with the process CPU time of that run."""
    fn()
    runs = []
    for _ in range(reps):
        cpu, start = time.process_time(), time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    return min(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--f", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    u = np.load(args.input)
    if u.dtype != np.float32 or u.ndim != 2:
        raise SystemExit(f"{args.input}: expected an n×d float32 matrix, got {u.dtype} {u.shape}")
    n, d = u.shape
    print(f"numpy {np.__version__}, n = {n}, d = {d}, f = {args.f}, input {u.nbytes / 1e6:.0f} MB")
    rules = [
        ("mean (u.mean(axis=0))", lambda: mean(u)),
        ("median (np.median)", lambda: median(u)),
        ("trimmed-mean (np.sort)", lambda: trimmed_mean_sort(u, args.f)),
        ("trimmed-mean (np.partition)", lambda: trimmed_mean_partition(u, args.f)),
        ("krum (pairwise differences)", lambda: krum_pairwise(u, args.f)),
        ("krum (Gram matrix, BLAS)", lambda: krum_gram(u, args.f)),
        ("multi-krum (Gram, m = n - f)", lambda: multi_krum_gram(u, args.f)),
    ]
    print(f"{'rule':<30} {'time ms':>10} {'GB/s':>8} {'cpu ms':>8}")
    for name, fn in rules:
        seconds, cpu = best(args.reps, fn)
        print(f"{name:<30} {seconds * 1e3:>10.1f} {u.nbytes / seconds / 1e9:>8.2f} {cpu * 1e3:>8.1f}")


if __name__ == "__main__":
    main()
