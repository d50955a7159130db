"""Optional dependencies: the core installs and runs without the extras, and a missing extra is named.

The runtime checks run in a fresh interpreter in which the extras' packages cannot be found (every
import finder is wrapped to find nothing for them, as when they are not installed), so that modules
this test session has already imported cannot hide a top-level import of one of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from factorcl.extras import MissingExtraError, require

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

#: Import names that only the extras bring (torchvision comes with open_clip and timm).
HIDDEN = (
    "albumentations",
    "cvxpy",
    "dit",
    "ecos",
    "kornia",
    "open_clip",
    "open_clip_train",
    "scipy",
    "sklearn",
    "tensorboard",
    "timm",
    "torchvision",
    "wandb",
    "webdataset",
)

_HIDE = f"""
import sys

HIDDEN = {set(HIDDEN)!r}


class _Hiding:
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        return None if name.partition(".")[0] in HIDDEN else self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
"""


def run_hidden(code: str, *args: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter without the extras' packages (``sys.argv[1:]`` = ``args``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", _HIDE + code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


# ------------------------------------------------------------------------------------- without extras
def test_every_module_but_clip_imports_without_the_extras():
    code = """
import importlib, json, pkgutil
import augment, bounds, factorcl

needs_clip = ("factorcl.clip", "factorcl.commands.clip")
imported = []
for package in (bounds, augment, factorcl):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not any(info.name == n or info.name.startswith(n + ".") for n in needs_clip):
            importlib.import_module(info.name)
            imported.append(info.name)
import torch
augment.Compose([augment.GaussianNoise(0.1), augment.FeatureDropout(0.2)])(torch.rand(4, 3))
print(json.dumps({"imported": imported, "hidden": sorted(m for m in sys.modules if m.partition(".")[0] in HIDDEN)}))
"""
    done = run_hidden(code)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["hidden"] == []
    assert {"factorcl.run", "factorcl.experiments.synthetic", "factorcl.quantify.cvx", "augment.images"} <= set(
        out["imported"]
    )


def test_train_on_vector_data_without_the_extras(tmp_path):
    config = {
        "data": {"kind": "synthetic", "synthetic": {"num_samples": 200, "input_dim": 30}},
        "model": {"embed_dim": 8, "critic_hidden": 16, "critic_embed": 8},
        "train": {"epochs": 1, "batch_size": 32, "seed": 0},  # tensorboard on (the default): a warning only
        "probe": {"l2_grid": [1e-2], "max_iter": 20},
        "out_dir": str(tmp_path / "run"),
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    code = "from factorcl.cli import main\nsys.exit(main(sys.argv[1:]))"
    done = run_hidden(code, "train", "--config", str(tmp_path / "run.yaml"), "--quiet")
    assert done.returncode == 0, done.stderr
    for name in ("results.json", "checkpoint.pt", "metrics.csv", "training.png"):  # the plot: matplotlib is core
        assert (tmp_path / "run" / name).is_file(), name
    assert "tensorboard package is not installed" in done.stderr


# ------------------------------------------------------------------------------- a missing extra is named
#: What needs an extra -> (code that uses it, what its ImportError says).
NEEDS_EXTRA = {
    "factorcl.clip": ("import factorcl.clip", 'factorcl.clip needs open_clip_torch: pip install "factorcl[clip]"'),
    "ImageAugment": (
        "import augment, torch\naugment.ImageAugment()(torch.rand(2, 3, 8, 8))",
        'augment.ImageAugment needs kornia: pip install "factorcl[images]"',
    ),
    "albumentations": (
        "import augment\naugment.albumentations_pipeline('unique')",
        'augment.albumentations_pipeline needs albumentations: pip install "factorcl[images]"',
    ),
    "timm encoder": (
        "from factorcl.encoders import build_encoder\nbuild_encoder('timm:resnet18', (3, 8, 8))",
        'a timm encoder needs timm: pip install "factorcl[images]"',
    ),
    "CVX PID": (
        "import numpy as np\nfrom factorcl.quantify import pid_discrete\npid_discrete(np.full((2, 2, 2), 1 / 8))",
        'the CVX PID estimator needs cvxpy: pip install "factorcl[quantify]"',
    ),
    "wandb": ("from factorcl.wandb_log import import_wandb\nimport_wandb()", 'pip install "factorcl[wandb]"'),
    "array shards": (
        "from factorcl.data.shards import ArrayShardDataset\nArrayShardDataset('s/{00000..00001}.tar', 8)",
        'webdataset shards needs webdataset: pip install "factorcl[shards]"',
    ),
}


@pytest.fixture(scope="module")
def missing_extra_errors() -> dict[str, dict | None]:
    """Each NEEDS_EXTRA case's error (None: it worked), from one interpreter without the extras."""
    code = f"""
import json

errors = {{}}
for case, (source, _) in {NEEDS_EXTRA!r}.items():
    try:
        exec(source, {{}})
        errors[case] = None
    except Exception as exc:
        errors[case] = {{"type": type(exc).__name__, "import_error": isinstance(exc, ImportError), "message": str(exc)}}
print(json.dumps(errors))
"""
    done = run_hidden(code)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("case", list(NEEDS_EXTRA))
def test_a_missing_extra_is_named(case, missing_extra_errors):
    error = missing_extra_errors[case]
    assert error is not None, f"{case} worked without its extra"
    assert error["import_error"] and NEEDS_EXTRA[case][1] in error["message"], error


def test_require_names_the_extra_and_quotes_a_broken_install(monkeypatch, tmp_path):
    assert require("json", "clip", "x").dumps([]) == "[]"
    monkeypatch.setitem(sys.modules, "open_clip", None)  # importing it raises ImportError
    with pytest.raises(
        MissingExtraError, match=r'^factorcl.clip needs open_clip_torch: pip install "factorcl\[clip\]"$'
    ):
        require("open_clip", "clip", "factorcl.clip")
    # Installed, but one of its own imports fails: that failure is quoted, not hidden.
    (tmp_path / "half_installed.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        MissingExtraError, match=r"needs half_installed: .* failed: No module named 'no_such_dependency_xyz'"
    ):
        require("half_installed", "images", "it")


# ------------------------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize(
    "argv, code, stream, expected",
    [
        (["--help"], 0, "stdout", 'not installed: factorcl.clip needs open_clip_torch: pip install "factorcl[clip]"'),
        (["synthetic", "--help"], 0, "stdout", "usage: factorcl synthetic"),
        (
            ["clip", "train", "--data", "pairs.csv"],
            2,
            "stderr",
            'factorcl clip: error: factorcl.clip needs open_clip_torch: pip install "factorcl[clip]"',
        ),
        (["clip", "--help"], 2, "stderr", 'pip install "factorcl[clip]"'),
    ],
)
def test_cli_without_the_extras(argv, code, stream, expected):
    done = run_hidden("from factorcl.cli import main\nsys.exit(main(sys.argv[1:]))", *argv)
    assert done.returncode == code, done.stderr
    assert expected in " ".join(getattr(done, stream).split()), getattr(done, stream)  # help text is wrapped
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------ pyproject.toml
def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def _self_refs(requirements: list[str]) -> set[str]:
    """The extras named by ``factorcl[...]`` requirements."""
    out: set[str] = set()
    for r in requirements:
        if m := re.fullmatch(r"factorcl\[([\w,\s-]+)\]", r.strip()):
            out |= {e.strip() for e in m.group(1).split(",")}
    return out


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_core_dependencies_leave_out_the_extras(project):
    core = {_name(r) for r in project["dependencies"]}
    assert core >= {"torch", "numpy", "pyyaml", "pydantic", "safetensors", "tqdm", "matplotlib"}
    extras_only = {"kornia", "albumentations", "open-clip-torch", "timm", "webdataset", "torchvision", "cvxpy", "scipy"}
    assert not core & (extras_only | {"wandb", "tensorboard"})


def test_all_covers_every_extra_and_dev_includes_all(project):
    extras = project["optional-dependencies"]
    assert {"images", "shards", "clip", "quantify", "wandb", "tensorboard", "all", "dev"} <= set(extras)
    assert _self_refs(extras["all"]) == set(extras) - {"all", "dev"}
    assert "all" in _self_refs(extras["dev"])
    assert {_name(r) for r in extras["dev"] if not r.startswith("factorcl")} >= {"pytest", "ruff", "dit", "ecos"}


def test_a_package_in_two_extras_is_required_alike(project):
    seen: dict[str, str] = {}
    for extra, requirements in project["optional-dependencies"].items():
        for r in requirements:
            if not r.startswith("factorcl["):
                assert seen.setdefault(_name(r), r) == r, f"{extra}: {r} but elsewhere {seen[_name(r)]}"


def test_the_extras_the_code_names_exist_and_bring_the_module(project):
    """Every ``require(MODULE, EXTRA, ...)`` and ``pip install "factorcl[EXTRA]"`` in the packages."""
    from augment._extras import DISTRIBUTIONS

    extras = project["optional-dependencies"]
    named, required = set(), []
    for path in [p for d in ("bounds", "augment", "factorcl") for p in (ROOT / d).rglob("*.py")]:
        text = path.read_text()
        named |= {e for m in re.findall(r"factorcl\[([a-z,]+)\]", text) for e in m.split(",")}
        required += re.findall(r'require\(\s*"([\w.]+)",\s*"(\w+)"', text)
    assert {"images", "shards", "clip", "quantify", "wandb"} <= named <= set(extras)
    assert {extra for _, extra in required} >= {"images", "clip", "quantify"}
    for module, extra in required:
        top = module.partition(".")[0]
        assert _name(DISTRIBUTIONS.get(top, top)) in {_name(r) for r in extras[extra]}, (module, extra)
