#!/usr/bin/env python
"""`make demo`: NVT (Langevin, 300 K) molecular dynamics of aspirin with the bundled default model:
0.25 ps of equilibration from velocities drawn at 300 K (not recorded: half of that kinetic energy
flows into the potential at first, so the temperature dips before the thermostat heats it back),
then 1 ps of production. Prints the production's mean temperature with its statistical error
and spread (next to the canonical spread T·sqrt(2/N_f)) and where the trajectory, log and plots
are. Extra arguments are passed on to ``visnet md`` (e.g. ``--steps 200``).

The model runs in its fastest form by default (``--accel auto``): the first demo runs eagerly while
the model's exported package is built in the background (the summary's ``model:`` line says so, or
gives the steps/s before and after the switch when the package is ready during the run); a second
``make demo`` runs from the package throughout (about twice the steps/s; ``--accel eager`` to compare)."""

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
