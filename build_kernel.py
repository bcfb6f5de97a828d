#!/usr/bin/env python3
"""Bundle ecgdigit into ONE self-contained Kaggle inference notebook under kernels/<slug>/.

    python build_kernel.py [--weights DIR] [--name SLUG] [--owner USER] [--gpu/--no-gpu]

writes
    kernels/<slug>/<slug>.ipynb          the notebook: the ecgdigit modules `submit` needs, inlined as
                                         source text, a parameters cell, input probing, submission
    kernels/<slug>/kernel-metadata.json  for `kaggle kernels push -p kernels/<slug>`
and with --weights DIR also
    datasets_meta/ecgdigit-weights/      DIR's checkpoints + configs beside dataset-metadata.json,
                                         for `kaggle datasets version -p ... -r zip -m "..."`
                                         (`kaggle datasets create -p ...` the first time)

The notebook runs offline (internet off): it reads the competition from /kaggle/input (probed),
the weights from the attached dataset (probed; the no-weights classical path otherwise) and
writes submission.parquet in the working directory, falling back per image like `ecgdigit submit`.
"""
from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent
SRC = ROOT / "src"
COMPETITION = "physionet-ecg-image-digitization"
DEFAULT_SLUG = "ecgdigit-submit"
DEFAULT_OWNER = "your-kaggle-username"
WEIGHTS_SLUG = "ecgdigit-weights"
MAX_NOTEBOOK_BYTES = 1_000_000  # Kaggle rejects larger notebook sources
ENTRY_MODULES = ("ecgdigit.submit",)


class BuildError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Which modules the notebook needs: the import closure of the entry modules inside ecgdigit
# ---------------------------------------------------------------------------------------------
def _module_file(name: str) -> Optional[Path]:
    base = SRC.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports_of(path: Path, module: str) -> List[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{a.name}" for a in node.names]  # `from pkg import submodule`
    return [n for n in found if n == "ecgdigit" or n.startswith("ecgdigit.")]


def module_closure(entries=ENTRY_MODULES) -> Dict[str, Path]:
    """module name -> file for every ecgdigit module reachable from `entries` (packages included)."""
    todo, seen = list(entries), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue  # `from pkg import function` names that are not modules
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # parent packages
        todo += _imports_of(path, name)
    return dict(sorted(seen.items()))


# ---------------------------------------------------------------------------------------------
# The notebook
# ---------------------------------------------------------------------------------------------
def _cell(kind: str, source: str, tags: Optional[List[str]] = None) -> dict:
    cell = {"cell_type": kind, "metadata": {"tags": tags} if tags else {}, "source": source.strip("\n") + "\n"}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


PARAMETERS = '''
# Parameters (papermill can override them; on Kaggle the defaults probe /kaggle/input).
input_dir = ""      # competition folder with test.csv + test/ ("" = probe /kaggle/input)
weights_dir = ""    # folder with stage2.pt ("" = probe the attached weights dataset, else no weights)
output = "submission.parquet"
device = "auto"     # auto | cuda | cpu
workers = 0         # CPU worker processes (0 = one per core when on CPU)
batch_size = 8      # images per stage-2 forward pass on a GPU (1 on CPU)
limit = 0           # digitise only the first N images (debugging), 0 for all
'''

RUN = '''
import os
import glob
from pathlib import Path

from ecgdigit.submit import run_submit

COMPETITION = "%(competition)s"
WEIGHTS_SLUG = "%(weights_slug)s"


def probe_competition():
    candidates = [f"/kaggle/input/{COMPETITION}", f"/kaggle/input/competitions/{COMPETITION}"]
    candidates += sorted(glob.glob("/kaggle/input/*/test.csv")) + sorted(glob.glob("/kaggle/input/*/*/test.csv"))
    for c in candidates:
        c = Path(c).parent if c.endswith("test.csv") else Path(c)
        if (c / "test.csv").is_file():
            return c
    raise FileNotFoundError("competition data not found under /kaggle/input; set input_dir")


def probe_weights():
    candidates = [f"/kaggle/input/{WEIGHTS_SLUG}"] + sorted(glob.glob(f"/kaggle/input/datasets/*/{WEIGHTS_SLUG}"))
    candidates += sorted(glob.glob("/kaggle/input/*/stage2.pt")) + sorted(glob.glob("/kaggle/input/*/*/stage2.pt"))
    for c in candidates:
        c = Path(c).parent if c.endswith(".pt") else Path(c)
        if (c / "stage2.pt").is_file():
            return c
    return None


data = Path(input_dir) if input_dir else probe_competition()
weights = Path(weights_dir) if weights_dir else probe_weights()
if device == "auto":
    try:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        device = "cpu"
n_workers = workers or (os.cpu_count() or 1) if device == "cpu" else 1
print(f"data: {data}\\nweights: {weights or 'none (classical no-weights path)'}\\ndevice: {device}, workers: {n_workers}")
result = run_submit(data, output, weights=str(weights) if weights else None, device=device,
                    workers=n_workers, limit=limit or None, progress=True,
                    batch_size=batch_size if device == "cuda" else 1)
print(f"{result.n_images} image(s) in {result.seconds:.0f} s; {len(result.failures)} fell back; wrote {result.output}")
'''


def build_notebook(modules: Dict[str, Path], version: str) -> dict:
    sources = {str(path.relative_to(SRC)): path.read_text() for path in modules.values()}
    bundle = ["# The ecgdigit sources this notebook needs, inlined as text (built by build_kernel.py).",
              "import sys, tempfile",
              "from pathlib import Path",
              "ECGDIGIT_SOURCES = {"]
    bundle += [f"    {rel!r}: {text!r}," for rel, text in sources.items()]
    bundle += ["}",
               "BUNDLE_DIR = Path(tempfile.mkdtemp(prefix='ecgdigit_bundle_'))",
               "for rel, text in ECGDIGIT_SOURCES.items():",
               "    (BUNDLE_DIR / rel).parent.mkdir(parents=True, exist_ok=True)",
               "    (BUNDLE_DIR / rel).write_text(text)",
               "sys.path.insert(0, str(BUNDLE_DIR))",
               "import ecgdigit",
               "assert Path(ecgdigit.__file__).resolve().is_relative_to(BUNDLE_DIR.resolve()), ecgdigit.__file__",
               "print(f'ecgdigit {ecgdigit.__version__} loaded from the bundle: {ecgdigit.__file__}')"]
    intro = (f"# ecgdigit: Kaggle submission ({COMPETITION})\n\n"
             f"Built by `python build_kernel.py` from ecgdigit {version}. Runs offline: digitises every "
             "image `test.csv` asks for and writes `submission.parquet`; an image that fails gets a flat "
             "fallback record (and is listed), the others are never lost.")
    return {
        "cells": [dict(cell, id=f"cell-{k}") for k, cell in enumerate([
            _cell("markdown", intro), _cell("code", PARAMETERS, tags=["parameters"]),
            _cell("code", "\n".join(bundle)),
            _cell("code", RUN % dict(competition=COMPETITION, weights_slug=WEIGHTS_SLUG))])],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def kernel_metadata(owner: str, slug: str, code_file: str, gpu: bool, with_weights: bool) -> dict:
    return {
        "id": f"{owner}/{slug}",
        "title": f"ecgdigit submission {slug}".strip(),
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": "true",
        "enable_gpu": "true" if gpu else "false",
        "enable_internet": "false",  # code competition: the CLI would default it to true
        "dataset_sources": [f"{owner}/{WEIGHTS_SLUG}"] if with_weights else [],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
    }


def validate_kernel_metadata(meta: dict, folder: Path) -> None:
    """The checks the kaggle CLI applies when pushing (title length, id form, code file, booleans)."""
    if len(meta.get("title", "")) < 5:
        raise BuildError("kernel-metadata.json: title must be at least 5 characters")
    owner, _, slug = meta.get("id", "").partition("/")
    if not owner or not slug or "/" in slug:
        raise BuildError(f"kernel-metadata.json: id must be 'owner/slug', got {meta.get('id')!r}")
    if not (folder / meta.get("code_file", "")).is_file():
        raise BuildError(f"kernel-metadata.json: code_file {meta.get('code_file')!r} does not exist in {folder}")
    for key in ("is_private", "enable_gpu", "enable_internet"):
        if str(meta.get(key)).lower() not in ("true", "false"):
            raise BuildError(f"kernel-metadata.json: {key} must be true or false, got {meta.get(key)!r}")
    if meta.get("language") != "python" or meta.get("kernel_type") != "notebook":
        raise BuildError("kernel-metadata.json: language must be python and kernel_type notebook")


def copy_weights(weights: Path, owner: str) -> Path:
    """Copy the stage-2 checkpoint of `weights` (stage2.pt, or a training run's best.pt) and its config
    JSON into datasets_meta/ecgdigit-weights/ as stage2.pt + stage2.json, with the dataset metadata."""
    from ecgdigit.errors import InputError
    from ecgdigit.pipeline import stage2_checkpoint

    try:
        checkpoint = stage2_checkpoint(weights)
    except InputError as exc:
        raise BuildError(f"--weights: {exc}") from None
    config = checkpoint.with_suffix(".json")
    if not config.is_file():
        raise BuildError(f"--weights: {config} (the model config saved beside the checkpoint) is missing")
    dest = ROOT / "datasets_meta" / WEIGHTS_SLUG
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkpoint, dest / "stage2.pt")
    shutil.copy2(config, dest / "stage2.json")
    meta = {"title": "ecgdigit weights", "id": f"{owner}/{WEIGHTS_SLUG}", "licenses": [{"name": "CC0-1.0"}]}
    (dest / "dataset-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dest


def build(name: str = DEFAULT_SLUG, owner: str = DEFAULT_OWNER, weights: Optional[Path] = None,
          gpu: bool = True, out_root: Path = ROOT / "kernels") -> Path:
    sys.path.insert(0, str(SRC))
    from ecgdigit import __version__

    modules = module_closure()
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    notebook = build_notebook(modules, f"{__version__} ({commit})")
    folder = out_root / name
    folder.mkdir(parents=True, exist_ok=True)
    code_file = f"{name}.ipynb"
    text = json.dumps(notebook, indent=1) + "\n"
    if len(text.encode()) > MAX_NOTEBOOK_BYTES:
        raise BuildError(f"notebook is {len(text.encode()):,} bytes; Kaggle rejects notebooks over "
                         f"{MAX_NOTEBOOK_BYTES:,} bytes - trim the bundled modules ({len(modules)})")
    (folder / code_file).write_text(text)
    if weights is not None:
        copy_weights(Path(weights), owner)
    meta = kernel_metadata(owner, name, code_file, gpu, weights is not None)
    (folder / "kernel-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    validate_kernel_metadata(meta, folder)
    print(f"built {folder / code_file} ({len(text.encode()):,} bytes, {len(modules)} modules)")
    return folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None,
                    help="weights folder (stage2.pt, or a training run's best.pt, with its .json) to ship as a dataset")
    ap.add_argument("--name", default=DEFAULT_SLUG, help=f"kernel slug (default {DEFAULT_SLUG})")
    ap.add_argument("--owner", default=DEFAULT_OWNER, help="your Kaggle username")
    ap.add_argument("--no-gpu", action="store_true", help="run the kernel on CPU")
    args = ap.parse_args(argv)
    try:
        folder = build(args.name, args.owner, Path(args.weights) if args.weights else None, gpu=not args.no_gpu)
    except BuildError as exc:
        print(f"build_kernel.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"next: kaggle kernels push -p {folder.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
