#!/usr/bin/env python3
"""Regenerate symbols/<preset>-symbol.json, the reference graph of every preset (no weights).

Run this only when a network's structure is meant to change; tests/test_symbols.py fails whenever a
fresh trace differs from the committed file, so every structural change is seen in review.

    python tools/update_symbols.py            # rewrite all
    python tools/update_symbols.py --check    # exit 1 if any file is stale or missing
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from gluonfuse.export import symbol_json  # noqa: E402  (gluonfuse first: it sizes mxnet's threads)
from gluonfuse.io import atomic_path  # noqa: E402
from gluonfuse.models import list_models  # noqa: E402

SYMBOLS = os.path.join(REPO, "symbols")


def path_for(name):
    return os.path.join(SYMBOLS, f"{name}-symbol.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name in list_models(kind="preset"):
        text = symbol_json(name)
        path = path_for(name)
        current = open(path).read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            with atomic_path(path) as tmp:
                with open(tmp, "w") as f:
                    f.write(text)
            print(f"wrote {os.path.relpath(path, REPO)}")
    if args.check and stale:
        print("stale or missing: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
