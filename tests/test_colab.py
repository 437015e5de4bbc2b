"""Executes every colab/*.ipynb top to bottom, in demo mode, in a scratch folder.

Needs nbclient, nbformat and ipykernel (skipped without them). TFBERTOPT_NOTEBOOK_QUICK=1 makes the notebooks use
the tiny demo model and the synthetic demo data, so each runs offline in well under a minute on two CPU cores.
"""

import ast
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parent.parent
COLAB = REPO / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
CELL_TIMEOUT = 180  # seconds per cell; the slowest demo cell takes ~20 s


@pytest.fixture()
def notebook_env(monkeypatch):
    """The kernel inherits this process's environment: demo mode, quiet TensorFlow."""
    monkeypatch.setenv("TFBERTOPT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.delenv("TFBERTOPT_GLUE_DIR", raising=False)


def execute(nb, cwd: Path):
    """Runs `nb` in `cwd` with a fresh python3 kernel; fails with the cell's traceback on the first error."""
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    for cell in nb.cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"cell {cell.get('id')} raised {errors[0]['ename']}: {errors[0]['evalue']}"
    return nb


def text_of(cell) -> str:
    """Everything a code cell showed: streams, results and displays (plain text and markdown)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        for mime in ("text/plain", "text/markdown"):
            parts.append(output.get("data", {}).get(mime, ""))
    return "".join(p if isinstance(p, str) else "".join(p) for p in parts)


def tagged(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"quickstart.ipynb", "recipes.ipynb", "pruning.ipynb", "qat_int8.ipynb", "distillation.ipynb"} <= names
    for path in NOTEBOOKS:
        nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, notebook_env):
    nb = execute(nbformat.read(path, as_version=4), tmp_path)
    if path.stem == "quickstart":
        code = [c for c in nb.cells if c.cell_type == "code"]
        table = text_of(code[-1])
        assert "float32" in table and "dynamic" in table, table
        assert list(tmp_path.glob("quickstart/model_*.tflite")), "no .tflite written"
    if path.stem == "recipes":
        assert "Wrote the demo recipe" in text_of(tagged(nb, "recipe-file"))
        report = text_of(tagged(nb, "report"))
        assert "| variant |" in report and "dynamic" in report, report
    if path.stem == "pruning":
        assert "overall sparsity: 0.8000" in text_of(tagged(nb, "sparsity"))
        table = text_of(tagged(nb, "results-table"))
        assert all(name in table for name in ("dense", "GMP 80%", "2:4", "shrunk")), table
        assert len(list(tmp_path.glob("pruning/*.tflite"))) == 4
    if path.stem == "qat_int8":
        table = text_of(tagged(nb, "results-table"))
        assert all(f"{name}.tflite" in table for name in ("float32", "dynamic", "ptq_int8", "qat_int8")), table
    if path.stem == "distillation":
        table = text_of(tagged(nb, "results-table"))
        assert all(name in table for name in ("teacher", "student", "BiLSTM")), table
        assert (tmp_path / "distillation" / "teacher_cache" / "logits.npy").exists()


def test_recipes_notebook_uses_the_repository_recipe(tmp_path, notebook_env):
    """Opened from colab/ inside the repository, the notebook finds ../recipes/demo.yaml instead of writing one."""
    (tmp_path / "colab").mkdir()
    (tmp_path / "recipes").mkdir()
    shutil.copy(REPO / "recipes" / "demo.yaml", tmp_path / "recipes" / "demo.yaml")
    nb = nbformat.read(COLAB / "recipes.ipynb", as_version=4)
    run_cell = nb.cells.index(tagged(nb, "run-recipe"))
    nb.cells = nb.cells[:run_cell]  # everything up to loading the recipe; nothing is trained
    nb = execute(nb, tmp_path / "colab")
    assert "Using the repository's recipe" in text_of(tagged(nb, "recipe-file"))
    assert not (tmp_path / "colab" / "demo_recipe.yaml").exists()


def test_inline_recipe_matches_repository_demo_recipe():
    """The YAML the recipes notebook writes on Colab is the repository's recipes/demo.yaml."""
    yaml = pytest.importorskip("yaml")
    nb = nbformat.read(COLAB / "recipes.ipynb", as_version=4)
    tree = ast.parse(tagged(nb, "recipe-file").source)
    inline = next(node.value.value for node in ast.walk(tree)
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DEMO_RECIPE")
    repo = (REPO / "recipes" / "demo.yaml").read_text()
    assert yaml.safe_load(inline) == yaml.safe_load(repo), (
        "colab/recipes.ipynb's DEMO_RECIPE differs from recipes/demo.yaml; update the notebook")
