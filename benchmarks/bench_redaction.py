"""Throughput of ``redact()`` on one large feature string, in MB/s.

    python benchmarks/bench_redaction.py [--mb 1] [--repeat 3]

Inputs (ASCII, so 1 MB = 1,000,000 characters), each the value of one feature:

- ``digit groups``: random 4-digit groups separated by spaces (what blocked a request thread);
- ``digits, mixed separators``: random 1-6 digit groups separated by ``" "``, ``"-"``, ``"."``,
  ``"/"``;
- ``prose``: English-like words, punctuation, numbers, dates and amounts;
- ``prose with hits``: the same with an e-mail address, a phone number and a card number about
  every 2 KB.

The best of ``--repeat`` runs is reported. Pure Python, no Django set-up needed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml_audit.redaction import RedactionPolicy, redact

WORDS = [
    *("the", "model", "scored", "applicant", "loan", "income", "rate", "of", "with", "and"),
    *("for", "risk", "band", "review", "approved", "declined", "manual", "check", "amount"),
    *("total", "order", "customer", "segment", "region", "score", "label"),
]


def digit_groups(size: int, rng: random.Random) -> str:
    parts: list[str] = []
    n = 0
    while n < size:
        group = f"{rng.randrange(10000):04d}"
        parts.append(group)
        n += 5
    return " ".join(parts)[:size]


def mixed_digits(size: int, rng: random.Random) -> str:
    parts: list[str] = []
    n = 0
    while n < size:
        group = str(rng.randrange(10 ** rng.randint(1, 6)))
        parts.append(group + rng.choice(" -./"))
        n += len(parts[-1])
    return "".join(parts)[:size]


def prose(size: int, rng: random.Random, hits: bool = False) -> str:
    parts: list[str] = []
    n = 0
    while n < size:
        r = rng.random()
        if r < 0.08:
            word = f"{rng.randrange(100000)}.{rng.randrange(100):02d}"
        elif r < 0.1:
            word = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        else:
            word = rng.choice(WORDS)
        if rng.random() < 0.1:
            word += rng.choice(",.;:")
        if hits and rng.random() < 0.003:
            word = rng.choice(["jane.doe@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"])
        parts.append(word)
        n += len(word) + 1
    return " ".join(parts)[:size]


def measure(text: str, policy: RedactionPolicy, repeat: int) -> float:
    best = float("inf")
    payload = {"notes": text}
    for _ in range(repeat):
        start = time.perf_counter()
        redact(payload, policy)
        best = min(best, time.perf_counter() - start)
    return len(text.encode("utf-8")) / 1e6 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    rng = random.Random(7)
    inputs: dict[str, Callable[[], str]] = {
        "digit groups": lambda: digit_groups(size, rng),
        "digits, mixed separators": lambda: mixed_digits(size, rng),
        "prose": lambda: prose(size, rng),
        "prose with hits": lambda: prose(size, rng, hits=True),
    }
    policy = RedactionPolicy()
    for name, make in inputs.items():
        text = make()
        print(f"  {name:<26} {measure(text, policy, args.repeat):8.2f} MB/s")


if __name__ == "__main__":
    main()
