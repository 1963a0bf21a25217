#!/usr/bin/env python
"""NVE energy-conservation check: runs NVE and reports the drift of the total energy in eV/atom/ps.

    python md/check_nve.py aspirin --steps 2000 --timestep 0.5 --dtype float64 [--max-drift 1e-3]

Same options as ``visnet md`` (equivalent to ``visnet md --check-nve ...``); exits with status 1
when ``--max-drift`` is given and exceeded.
"""

import sys

import visnet.cli

if __name__ == "__main__":
    sys.exit(visnet.cli.main(["md", "--check-nve", *sys.argv[1:]]))
