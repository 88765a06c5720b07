#!/usr/bin/env python3
"""Prints the benchmark report table from criterion's results of the last run.

Usage: cargo bench --bench oprf && python3 benches/report.py [target/criterion]
Per-element times are criterion's mean estimate divided by the batch size; every ratio compares
two measurements of the same run.
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")


def per_element(path):
    """Mean ns per element of one benchmark, or None if it was not run."""
    d = os.path.join(root, *path.split("/"), "new")
    try:
        est = json.load(open(os.path.join(d, "estimates.json")))
        bench = json.load(open(os.path.join(d, "benchmark.json")))
    except FileNotFoundError:
        return None
    n = (bench.get("throughput") or {}).get("Elements", 1)
    return est["mean"]["point_estimate"] / n


def us(x):
    return "—" if x is None else f"{x / 1000:.2f} µs"


rows = []
raw = per_element("raw/scalar_mul")
rows.append(("raw variable-base scalar multiplication", us(raw), "1.00 (baseline)"))
rows.append(("raw decompress + multiply + compress", us(per_element("raw/decompress_mul_compress")), ""))


def ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}"


checks = []
for n in (16, 256, 5000):
    for t in ("1thread", "all"):
        o = per_element(f"server_{t}/ours_oprf/{n}")
        rows.append((f"server OPRF batch {n}, {t}", us(o), f"{ratio(o, raw)} × raw"))
        if n == 5000:
            checks.append((f"server OPRF per element vs raw scalar mult ({t}), target ≤ 1.2", ratio(o, raw)))
for n in (16, 256, 5000):
    v = per_element(f"server_1thread/voprf_batch_blind_evaluate/{n}")
    rows.append((f"voprf batch_blind_evaluate {n}", us(v), ""))
    for t in ("1thread", "all"):
        o = per_element(f"server_{t}/ours_voprf_proof/{n}")
        rows.append((f"server VOPRF+proof batch {n}, {t}", us(o), f"{ratio(v, o)} × faster than voprf"))
        if n == 5000:
            checks.append((f"server VOPRF+proof speed-up over voprf ({t}), target ≥ 2.5", ratio(v, o)))
for n in (256, 5000):
    vb = per_element(f"client_1thread/voprf_blind/{n}")
    vf = per_element(f"client_1thread/voprf_batch_finalize/{n}")
    rows.append((f"voprf blind ×{n}", us(vb), ""))
    rows.append((f"voprf batch_finalize {n}", us(vf), ""))
    for t in ("1thread", "all"):
        b = per_element(f"client_{t}/ours_blind/{n}")
        f = per_element(f"client_{t}/ours_verify_finalize/{n}")
        rows.append((f"client blind batch {n}, {t}", us(b), f"{ratio(vb, b)} × faster than voprf"))
        rows.append((f"client verify+finalize batch {n}, {t}", us(f), f"{ratio(vf, f)} × faster than voprf"))
        if n == 5000:
            checks.append((f"client verify+finalize speed-up over voprf ({t}), target ≥ 2", ratio(vf, f)))

print("| operation (per element) | time | ratio |")
print("|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} |")
print()
print("| target | measured ratio |")
print("|---|---|")
for c in checks:
    print(f"| {c[0]} | {c[1]} |")
