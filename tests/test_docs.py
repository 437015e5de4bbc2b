"""The documentation stays true: generated blocks match their sources, links resolve, snippets name real API.

- README.md's results table and docs/recipes.md's reference are what `python -m tfbertopt.docs_gen` produces now
  (from benchmarks/results/*.json, recipes/ and the recipe schema); a stale block fails with the command to run.
- README.md stays short (at most 200 lines), and its prose outside code and generated blocks carries no measured
  figures (those come from results files, through the generated table).
- Every relative link and image in README.md and docs/*.md points at a file that exists, and a `#fragment` into a
  markdown file names one of its headings.
- Every `from tfbertopt... import name` in a python snippet of those files imports.
"""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

from tfbertopt import docs_gen

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
GENERATED = re.compile(r"<!-- generated: [\w-]+ -->.*?<!-- end generated -->", re.S)


def prose(text: str) -> str:
    """`text` without fenced code, generated blocks and inline code."""
    text = GENERATED.sub("", FENCE.sub("", text))
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set:
    seen, out = {}, set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_generated_blocks_are_up_to_date():
    stale = [str(path.relative_to(REPO)) for path, (old, new) in docs_gen.render(REPO).items() if old != new]
    assert not stale, f"generated blocks out of date in {stale}: run `python -m tfbertopt.docs_gen` and commit"


def test_generator_is_idempotent():
    for path, (_, new) in docs_gen.render(REPO).items():
        assert docs_gen.replace_blocks(new, docs_gen.generated_files(REPO)[path], str(path)) == new


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move detail to docs/ (at most 200)"


def test_readme_prose_has_no_hand_typed_measurements():
    text = prose((REPO / "README.md").read_text(encoding="utf-8"))
    figures = re.findall(r"\b0\.\d{3,}\b|\b\d+(?:\.\d+)?x\b|\b\d+(?:\.\d+)? ?(?:ms|MB|GMAC)\b|[+-]\d+\.\d+ points",
                         text)
    assert not figures, f"README.md prose has measured figures {figures}: put them in the generated table"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):    # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        dest = page if not file_part else (page.parent / file_part).resolve()
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and dest.exists() and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no heading #{fragment} in {dest.name})")
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_snippet_imports_exist(page):
    missing = []
    for block in re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfbertopt"):
                module = importlib.import_module(node.module)
                missing += [f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("tfbertopt"):
                        importlib.import_module(alias.name)
    assert not missing, f"{page.relative_to(REPO)}: snippets import names that do not exist: {missing}"


def test_headline_table_names_a_missing_file_or_variant(tmp_path):
    rows = [{"task": "sst2", "variant": "float32", "baseline": None, "tflite_score": 0.9, "tflite_mb": 90.0,
             "latency_ms": 17.0, "verified": True},
            {"task": "sst2", "variant": "dynamic", "baseline": "float32", "tflite_score": 0.89, "tflite_mb": 23.0,
             "latency_ms": 6.8, "verified": True}]
    (tmp_path / "demo.json").write_text(json.dumps({"benchmark": "demo", "rows": rows}))
    table = docs_gen.headline_table(tmp_path, rows=[("float32", "demo.json", "float32"),
                                                    ("dynamic", "demo.json", "dynamic")])
    assert "| dynamic | 0.8900 | 0.9000 | -1.00 | 23.0 | 3.91 | 6.80 | 2.50 | yes |" in table
    with pytest.raises(docs_gen.DocsError, match=r"demo\.json: no row with variant 'int8'"):
        docs_gen.headline_table(tmp_path, rows=[("int8", "demo.json", "int8")])
    with pytest.raises(docs_gen.DocsError, match=r"gone\.json: results file not found"):
        docs_gen.headline_table(tmp_path, rows=[("x", "gone.json", "float32")])
    rows[1]["baseline"] = "float16"
    rows.append({"task": "sst2", "variant": "int8", "baseline": "float32", "tflite_score": 0.88, "tflite_mb": 23.0,
                 "verified": False, "label_agreement": 0.991})
    (tmp_path / "demo.json").write_text(json.dumps({"benchmark": "demo", "rows": rows}))
    with pytest.raises(docs_gen.DocsError, match=r"row 'dynamic' names baseline 'float16', which is not in the file"):
        docs_gen.headline_table(tmp_path, rows=[("dynamic", "demo.json", "dynamic")])
    with pytest.raises(docs_gen.DocsError, match=r"demo\.json: row 'int8' has no 'latency_ms'"):
        docs_gen.headline_table(tmp_path, rows=[("int8", "demo.json", "int8")])
    rows[2]["latency_ms"] = 5.0
    (tmp_path / "demo.json").write_text(json.dumps({"benchmark": "demo", "rows": rows}))
    assert "| no (99.10% agreement) |" in docs_gen.headline_table(tmp_path, rows=[("int8", "demo.json", "int8")])


def test_recipe_list_needs_a_summary_per_recipe(tmp_path):
    (tmp_path / "new_recipe.yaml").write_text("name: x\nmodel: demo\ntask: sst2\nstages: [finetune]\n")
    with pytest.raises(docs_gen.DocsError, match=r"new_recipe\.yaml: no one-line summary"):
        docs_gen.recipe_list(tmp_path)
    (tmp_path / "new_recipe.yaml").unlink()
    with pytest.raises(docs_gen.DocsError, match=r"in tfbertopt\.docs_gen\.RECIPE_SUMMARIES but not a recipe file"):
        docs_gen.recipe_list(tmp_path)


def test_main_checks_rewrites_and_names_a_missing_marker(tmp_path, capsys):
    """`python -m tfbertopt.docs_gen [--check]` on a copy of the repository's generated files."""
    import shutil

    for part in ("README.md", "docs/recipes.md", "benchmarks/results", "recipes"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, tmp_path / part)
    readme = tmp_path / "README.md"
    fresh = readme.read_text(encoding="utf-8")
    stale = docs_gen.replace_blocks(fresh, {"headline-table": "| an old table |"})
    readme.write_text(stale, encoding="utf-8")
    assert docs_gen.main(["--root", str(tmp_path), "--check"]) == 1
    assert f"stale: {readme}" in capsys.readouterr().out and readme.read_text(encoding="utf-8") == stale
    assert docs_gen.main(["--root", str(tmp_path)]) == 0
    assert f"updated: {readme}" in capsys.readouterr().out and readme.read_text(encoding="utf-8") == fresh
    assert docs_gen.main(["--root", str(tmp_path), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    readme.write_text(fresh.replace("<!-- end generated -->", ""), encoding="utf-8")
    assert docs_gen.main(["--root", str(tmp_path), "--check"]) == 2
    assert "has no '<!-- end generated -->' after it" in capsys.readouterr().err


def test_cli_docs_check_passes_on_this_checkout(capsys):
    from tfbertopt import cli

    assert cli.main(["docs", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
