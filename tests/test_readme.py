"""The README's code runs as written (on small data)."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_own_model_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = python_block("## Use FactorCL on your own model")
    gen = torch.Generator().manual_seed(0)
    n = 96
    w = torch.randn(n, 8, generator=gen)
    x1 = torch.cat([w, torch.randn(n, 92, generator=gen)], 1)
    x2 = torch.cat([w, torch.randn(n, 52, generator=gen)], 1)
    y = (w[:, 0] > 0).long()
    import factorcl

    loader_of = lambda a, b, c: factorcl.data.PairDataset(a, b, c).loader(32)  # noqa: E731
    namespace = {"x1": x1, "x2": x2, "y": y, "train_loader": loader_of(x1, x2, y), "test_loader": loader_of(x1, x2, y)}
    code = code.replace("epochs=10", "epochs=1").replace(".loader(256,", ".loader(32,")
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "mine" / "checkpoint.pt").exists()
    assert isinstance(namespace["model"], factorcl.FactorCL)


def test_bounds_example_runs():
    """The plug-in bounds example, with its default critics, on random features."""
    import bounds

    code = python_block("## bounds: MI bounds to plug into your model")
    gen = torch.Generator().manual_seed(0)
    dims = {"x": 128, "y": 64, "z1": 128, "z2": 64}
    namespace = {name: torch.randn(16, dim, generator=gen) for name, dim in dims.items()}
    exec(compile(code, "README.md", "exec"), namespace)
    assert isinstance(namespace["check"], bounds.BracketCheck)
    assert namespace["critic"].normalize and namespace["scores"].abs().max() <= 10.0 + 1e-4
    assert namespace["loss"].ndim == 0 and namespace["critic_loss"].requires_grad


def test_quantify_example_runs(capsys):
    import pytest

    pytest.importorskip("cvxpy")
    from factorcl.quantify.examples import gaussian_mixture

    code = python_block("## Before training: `factorcl quantify` (PID)")
    x1, x2, y = gaussian_mixture(1000, 0.0, seed=0)
    # The cvx estimator instead of batch: same API, a second instead of a minute.
    assert 'method="batch", n_bootstrap=20' in code
    code = code.replace('method="batch", n_bootstrap=20', 'method="cvx", n_bootstrap=5')
    exec(compile(code, "README.md", "exec"), {"x1": x1, "x2": x2, "y": y})
    out = capsys.readouterr().out
    assert "'S': 1.0" in out or "'S': 0.99999" in out
    assert "Rests on" in out
