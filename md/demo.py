#!/usr/bin/env python
"""`make demo`: a short NVT (Langevin, 300 K, 0.5 ps) simulation of aspirin with the bundled
default model; prints where the trajectory, log and plots are. Extra arguments are passed on to
``visnet md`` (e.g. ``--steps 200``)."""

import sys

from visnet.dynamics.cli import main

DEMO = [
    "aspirin",
    "--ensemble",
    "langevin",
    "--temperature",
    "300",
    "--timestep",
    "0.5",
    "--steps",
    "1000",
    "--output-dir",
    "outputs/demo",
]

if __name__ == "__main__":
    sys.exit(main([*DEMO, *sys.argv[1:]]))
