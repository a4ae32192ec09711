"""Validates notebooks written by `qat export notebook` and runs their Python cells headless.

    $V/bin/python scripts/reference/check_notebook.py notebooks-export/chips-bits.ipynb

Checks the file against the nbformat 4 JSON schema (nbformat.validate), then executes every code cell
in order with matplotlib's Agg backend, so each plot cell really redraws its figure from the embedded
data. Needs nbformat and matplotlib (both in the reference venv of ../shared/tools/reference/setup.sh).
"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    env = {}
    figures = 0
    shown = []
    plt.show = lambda *a, **k: shown.append(len(plt.get_fignums()))
    for cell in nb.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, f"{path}:{cell.id}", "exec"), env)
    print(f"{path}: valid nbformat {nb.nbformat}.{nb.nbformat_minor}, {len(nb.cells)} cells, {len(shown)} figures drawn")
