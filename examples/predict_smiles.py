"""Molecular properties from SMILES with the bundled QM9 models (HOMO, LUMO, gap, U0, dipole).

    python examples/predict_smiles.py

SMILES go through RDKit (hydrogens added, ETKDG 3D embedding with a fixed seed, MMFF
optimisation); each result carries its properties in explicit units (eV, Debye). From the shell:
``visnet predict --smiles CCO c1ccccc1O --model qm9 --output results.csv``.
"""

from __future__ import annotations

import visnet

smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "not-a-smiles"]
results = visnet.predict(smiles, model="qm9", errors="skip")  # a bad SMILES is recorded, not fatal
for r in results:
    if r.error:
        print(f"{r.source}: {r.error}")
    else:
        print(f"{r.source}: gap {r['gap']:.2f} {r.units['gap']}, mu {r['mu']:.2f} {r.units['mu']}")
visnet.write_csv(results, "properties.csv")  # or write_json, results_to_table, to_dataframe
print("wrote properties.csv")
