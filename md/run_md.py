#!/usr/bin/env python
"""Molecular dynamics with a ViSNet model: the same options as ``visnet md`` (see --help).

python md/run_md.py aspirin --ensemble langevin --temperature 300 --steps 2000
python md/run_md.py "CC(=O)Nc1ccc(O)cc1" --ensemble bussi --temperature 500 --model my_model.pt
"""

import sys

import visnet.cli

if __name__ == "__main__":
    sys.exit(visnet.cli.main(["md", *sys.argv[1:]]))
