#!/usr/bin/env python3
"""Side by side, builds against each other: for each of ROUNDS rounds, every binary in turn
(the order reversed every other round) runs `lro-bench pair KIND` (TURNS operations of POLLS
polls, each beside its control, client on CPU 1) against one `lro-bench serve` (CPU 0); prints,
per binary, the median over the rounds of each round's median paired ratio.

usage: pair_ab.py KIND ROUNDS BINARY [BINARY ...]   (environment: POLLS=500, TURNS=21)

Builds to compare: copy `target/release/lro-bench` aside after each `cargo build --release -p
lro-bench`. Needs a machine with two CPUs.
"""
import json
import os
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    kind, rounds, binaries = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    polls, turns = os.environ.get("POLLS", "500"), os.environ.get("TURNS", "21")
    serve = subprocess.Popen([binaries[0], "serve", "--cpu", "0"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        url = serve.stdout.readline().strip()
        medians = {binary: [] for binary in binaries}
        for round_ in range(rounds):
            for binary in binaries if round_ % 2 == 0 else binaries[::-1]:
                out = subprocess.run([binary, "pair", kind, "--url", url, "--polls", polls,
                                      "--runs", turns, "--cpu", "1"],
                                     capture_output=True, text=True, check=True).stdout
                pairs = json.loads(out)
                ratios = [s["cpu_ns"] / c["cpu_ns"]
                          for s, c in zip(pairs["stack"], pairs["control"])]
                medians[binary].append(statistics.median(ratios))
    finally:
        serve.kill()
    for binary, values in medians.items():
        print(f"{binary}: median {statistics.median(values):.3f} "
              f"(rounds {min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()
