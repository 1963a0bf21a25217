#!/usr/bin/env python
"""`make demo`: NVT (Langevin, 300 K) molecular dynamics of aspirin with the bundled default model:
0.25 ps of equilibration from velocities drawn at 300 K (not recorded: half of that kinetic energy
flows into the potential at first, so the temperature dips before the thermostat heats it back),
then 1 ps of production. Prints the production's mean temperature with its statistical error
and spread (next to the canonical spread T·sqrt(2/N_f)) and where the trajectory, log and plots
are. Extra arguments are passed on to ``visnet md`` (e.g. ``--steps 200``)."""

import sys

import visnet.cli

DEMO = [
    "aspirin",
    "--ensemble",
    "langevin",
    "--temperature",
    "300",
    "--timestep",
    "0.5",
    "--equilibration-steps",
    "500",
    "--steps",
    "2000",
    "--log-interval",
    "5",
    "--traj-interval",
    "20",
    "--output-dir",
    "outputs/demo",
]

if __name__ == "__main__":
    sys.exit(visnet.cli.main(["md", *DEMO, *sys.argv[1:]]))
