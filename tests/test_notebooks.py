"""The notebooks in notebooks/ run top to bottom with small settings, and show what they promise.

Each notebook reads its settings from ``CELLST_NB_*`` environment variables (its first code cell), so the test runs the
committed notebook unchanged, only smaller: 48 images of 32 px, the micro model, one epoch. The three run at the same
time, each in its own kernel with one thread: a kernel spends as long importing and drawing as training, and on a
2-core machine the overlap keeps the three to about the time of the slowest.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("quickstart", "your_own_data", "classification")
SMALL = {"IMAGES": 48, "SIZE": 32, "PRESET": "micro", "EPOCHS": 1.0, "BATCH": 8, "HELDOUT": 32, "FOLDS": 4}


async def _execute(name: str, folder: Path):
    """Run one notebook in a fresh ``python3`` kernel whose working folder and outputs are under ``folder``."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    folder.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CELLST_NB_OUT": str(folder / "out"),
           **{f"CELLST_NB_{key}": str(value) for key, value in SMALL.items()}}
    client = NotebookClient(notebook, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(folder)}})
    await client.async_execute(env=env)  # raises CellExecutionError, with the cell's traceback, if any cell fails
    return notebook


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict:
    """name -> (executed notebook or the exception it raised, its output folder)."""
    root = tmp_path_factory.mktemp("notebooks")

    async def run_all():
        return await asyncio.gather(*(_execute(name, root / name) for name in NAMES), return_exceptions=True)

    return {name: (result, root / name / "out") for name, result in zip(NAMES, asyncio.run(run_all()))}


def _run(executed: dict, name: str):
    """The executed notebook and its output folder; fails the test with the notebook's own error."""
    notebook, out = executed[name]
    if isinstance(notebook, BaseException):
        raise notebook
    return notebook, out


def _outputs(notebook, kind: str) -> list:
    """All outputs of one MIME type (``text/plain``, ``image/png``...) or stream text (``stream``), in order."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output["output_type"] == "stream":
                found.append(output["text"])
            elif kind in output.get("data", {}):
                found.append(output["data"][kind])
    return found


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_clean(name):
    """Notebooks are committed without outputs, and their first code cell holds the settings the tests override."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert "def setting" in code[0].source and "CELLST_NB_OUT" in code[0].source
    assert not any("setting(" in cell.source for cell in code[1:]), "settings belong in the first code cell"


def test_quickstart(executed):
    notebook, out = _run(executed, "quickstart")
    assert len((out / "data" / "attributes.csv").read_text().splitlines()) == 1 + SMALL["IMAGES"]  # settings honoured
    printed = "".join(_outputs(notebook, "stream"))
    assert "text_to_image caption non-specific" in printed and "chance@5" in printed  # format_table of evaluate
    headline = "".join(_outputs(notebook, "text/html"))
    assert "cell-type zero-shot accuracy" in headline and "chance" in headline
    # Contact sheet, four report figures and the search grid, shown inline.
    assert len(_outputs(notebook, "image/png")) >= 6
    assert {p.name for p in (out / "run" / "figures").glob("*.png")} >= {"training_curves.png", "retrieval_grid.png"}
    assert (out / "search_grid.png").stat().st_size > 0
    index = json.loads((out / "index" / "index.json").read_text())
    assert index["count"] == SMALL["IMAGES"]
    assert "Granules: dark purple. -> [('cell_" in printed  # a text query returned image hits


def test_your_own_data(executed):
    notebook, out = _run(executed, "your_own_data")
    table = (out / "cells" / "my_attributes.csv").read_text().splitlines()
    assert table[0] == "file,cell_type,cell_size,nuclear_shape,chromatin,cytoplasm_colour,granules"
    train = (out / "splits" / "train_split.csv").read_text()
    assert "The chromatin is" in train  # the default template for a descriptor without templates
    for loss in ("mnrl", "contrastive", "cosine"):
        metrics = json.loads((out / "runs" / loss / "metrics.json").read_text())
        assert metrics["loss"] == loss and metrics["after"], loss
    comparison = "".join(_outputs(notebook, "text/html"))
    assert all(f">{loss}<" in comparison for loss in ("mnrl", "contrastive", "cosine"))
    assert "caption acc@5" in comparison and "zero-shot acc" in comparison
    assert (out / "loss_comparison.png").stat().st_size > 0
    assert _outputs(notebook, "image/png")  # the comparison chart is shown inline


def test_classification(executed):
    notebook, out = _run(executed, "classification")
    for name in ("before_training", "after_training"):
        result = json.loads((out / "classify" / name / "classification.json").read_text())
        assert result["n_images"] == SMALL["HELDOUT"] and result["folds"] == SMALL["FOLDS"]
        assert set(result["methods"]) == {"zero_shot", "probe", "fused"}
        confusion = result["methods"]["probe"]["confusion"]
        assert sum(map(sum, confusion)) == SMALL["HELDOUT"]  # every held-out image predicted once
    printed = "".join(_outputs(notebook, "stream"))
    assert "majority-class accuracy" in printed and "macro F1" in printed
    assert len(_outputs(notebook, "image/png")) == 4  # zero-shot and probe confusion matrices, before and after
