"""Benchmarks of the bounds package: the published tiled critic baseline, and --quick smoke runs."""

import json
import math

import numpy as np
import pytest
import torch

import bounds
from benchmarks import _published, critic_speed, mi_estimation


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.mark.parametrize("x_dim, y_dim, layers", [(5, 7, 2), (3, 3, 0)])
def test_published_concat_critic_equals_concat_critic(x_dim, y_dim, layers):
    torch.manual_seed(0)
    ours = bounds.ConcatCritic(x_dim, y_dim, hidden_dim=16, layers=layers, chunk_size=7)  # several chunks
    published = _published.PublishedConcatCritic(x_dim, y_dim, hidden_dim=16, layers=layers)
    published.load_state_dict(ours.state_dict())  # same MLP layout: state dicts interchange
    x, y = torch.randn(6, x_dim), torch.randn(6, y_dim)
    expected = ours(x, y)
    torch.testing.assert_close(published(x, y), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_published.PublishedConcatCritic.from_concat(ours)(x, y), expected, atol=1e-5, rtol=1e-5)
    # Orientation: after the published .t(), scores[i, j] = f(x_i, y_j), as in bounds.
    direct = torch.stack([torch.stack([ours.net(torch.cat([xi, yj])).squeeze() for yj in y]) for xi in x])
    torch.testing.assert_close(published(x, y), direct, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(direct, direct.t(), atol=1e-3)  # the check above can tell the two apart


def test_published_concat_critic_weights_copy_back():
    torch.manual_seed(1)
    published = _published.PublishedConcatCritic(4, 4, hidden_dim=8, layers=1)
    ours = bounds.ConcatCritic(4, 4, hidden_dim=8, layers=1)
    ours.load_state_dict(published.state_dict())
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(ours(x, y), published(x, y), atol=1e-5, rtol=1e-5)


def test_critic_speed_memory_estimate_orders_implementations():
    est = {impl: critic_speed.estimate_bytes(impl, 256, 128, 512, 2, 128) for impl in critic_speed.IMPLS}
    assert est["naive"] > est["concat"] > est["separable"] > 0
    gib = 2**30
    assert critic_speed.estimate_bytes("naive", 4096, 128, 512, 2, 128) > 16 * gib  # skipped by default
    assert critic_speed.estimate_bytes("separable", 4096, 128, 512, 2, 128) < gib


@pytest.mark.parametrize("impl", critic_speed.IMPLS)
def test_critic_speed_measure_in_process(impl):
    res = critic_speed.measure(impl, 8, 6, 16, 1, 8, None, torch.device("cpu"), warmup=0, repeats=2)
    assert res["impl"] == impl and res["batch_size"] == 8
    assert _finite(res["ms_per_step"]) and res["ms_per_step"] > 0
    assert _finite(res["peak_mib"]) and res["peak_mib"] >= 0


def test_critic_speed_skips_over_memory_limit_without_running(tmp_path, capsys):
    out = tmp_path / "skip.json"
    assert critic_speed.main(["--quick", "--batch-sizes", "32", "--max-gib", "0", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    for impl in critic_speed.IMPLS:
        assert "GiB" in data["results"][impl]["32"]["skipped"]
    assert "skip" in capsys.readouterr().out


def test_critic_speed_quick(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert critic_speed.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"config", "results"}
    assert data["config"]["batch_sizes"] == [32, 64]
    assert set(data["results"]) == set(critic_speed.IMPLS)
    for impl in critic_speed.IMPLS:
        assert set(data["results"][impl]) == {"32", "64"}
        for res in data["results"][impl].values():
            assert "skipped" not in res, res
            for key in ("ms_per_step", "peak_mib", "speedup_vs_naive"):
                assert _finite(res[key]), (impl, key, res)
    assert data["results"]["naive"]["64"]["speedup_vs_naive"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    assert "speedup vs naive" in printed and "SeparableCritic" in printed


def test_mi_estimation_quick(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert mi_estimation.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    levels = list(mi_estimation.LEVELS)
    assert data["true"] == levels
    assert data["log_b"] == pytest.approx(math.log(64))
    assert len(data["i_plus_lautum"]["20"]) == len(levels)
    for lautum, mi in zip(data["i_plus_lautum"]["20"], levels):
        assert lautum == pytest.approx(20 * (math.exp(2 * mi / 20) - 1))
    estimates = data["20"]
    assert set(estimates) == {key for key, _ in mi_estimation.ESTIMATORS}
    for key, values in estimates.items():
        assert len(values) == len(levels) and all(_finite(v) for v in values), key
    for kind in ("concat", "separable"):
        assert max(estimates[f"infonce_{kind}"]) <= data["log_b"] + 1e-6
    png = tmp_path / "x.png"
    assert png.exists() and png.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "I+lautum" in printed and "pub NCE" in printed
    assert printed.count("PASS") + printed.count("FAIL") == 4


def test_mi_estimation_ema_matches_pandas_definition():
    values = torch.randn(50, generator=torch.Generator().manual_seed(0)).numpy()
    span = 7
    alpha = 2 / (span + 1)
    weights = (1 - alpha) ** torch.arange(49, -1, -1, dtype=torch.float64).numpy()
    expected_last = (weights * values).sum() / weights.sum()
    assert mi_estimation.ema(values, span)[-1] == pytest.approx(expected_last)
    assert mi_estimation.ema(values, span)[0] == pytest.approx(values[0])


def test_critic_speed_skips_configurations_estimated_too_slow(monkeypatch, capsys):
    calls = []

    def fake_worker(impl, batch, args, device, timeout):
        calls.append((impl, batch))
        return {"impl": impl, "batch_size": batch, "ms_per_step": 1000.0, "peak_mib": 10.0}

    monkeypatch.setattr(critic_speed, "run_worker", fake_worker)
    args = critic_speed.parse_args(["--quick", "--batch-sizes", "64", "8", "--max-seconds", "10"])
    results = critic_speed.run_all(args, torch.device("cpu"))
    # B=8 runs; B=64 would take 1 s * (64 / 8)^2 per step for 2 steps = 128 s > 10 s.
    assert calls == [(impl, 8) for impl in critic_speed.IMPLS]
    for impl in critic_speed.IMPLS:
        assert "max-seconds" in results[impl]["64"]["skipped"]
        assert results[impl]["8"]["speedup_vs_naive"] == pytest.approx(1.0)
    critic_speed.print_table(results, args.batch_sizes)
    lines = critic_speed.check_targets(results)
    assert all(line.startswith("N/A") for line in lines)
    assert "skipped" in capsys.readouterr().out


@pytest.mark.parametrize("name", mi_estimation.DISTRIBUTIONS)
def test_mi_estimation_distributions_hit_each_level(name):
    """--distribution: every level's data has I(X; Y) equal to the level, and a tiny run is finite."""
    for mi in mi_estimation.LEVELS:
        assert mi_estimation.make_distribution(name, 20, mi, df=2.0).mi == pytest.approx(mi)
    traces = mi_estimation.run_dim(
        3, 2, 16, 8, 1, 8, 5e-3, 0, torch.device("cpu"), levels=(2.0,), progress=False, distribution=name, df=2.0
    )
    assert all(np.isfinite(t).all() and t.shape == (2,) for t in traces.values())
    refs = mi_estimation.references(3, 16, (2.0,), distribution=name)
    assert math.isnan(refs["i_plus_lautum"][0]) == (name != "gaussian")


def test_mi_estimation_student_t_rejects_levels_below_its_tail_term():
    with pytest.raises(ValueError, match="df=1"):
        mi_estimation.make_distribution("student-t", 20, 0.01, df=1.0)


def test_critic_speed_chunk_sweep_measures_each_chunk_in_a_worker(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    # --device cpu: the default chunk is the CPU's (on CUDA it is 65536 pairs).
    argv = ["--quick", "--device", "cpu", "--batch-sizes", "16", "--chunk-sweep", "0", "32", "--out", str(out)]
    assert critic_speed.main(argv) == 0
    data = json.loads(out.read_text())
    sweep = data["results"]["16"]
    assert set(sweep) == {"default", "32"}
    # The default row reports the chunk the class picks on this device (2**20 activations / hidden 128).
    assert sweep["default"]["chunk_size"] == bounds.ConcatCritic(1, 1, 128).chunk_pairs(torch.device("cpu")) == 8192
    assert sweep["32"]["chunk_size"] == 32
    for res in sweep.values():
        assert res["impl"] == "concat" and _finite(res["ms_per_step"]) and res["ms_per_step"] > 0
    printed = capsys.readouterr().out
    assert "8192 (default)" in printed and "speedup vs default" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chunk-sweep", "0", "64", "--chunk-size", "64"], "exclude each other"),
        (["--chunk-sweep", "-1"], "--chunk-sweep takes numbers of pairs >= 0"),
        (["--chunk-size", "0"], "--chunk-size must be a positive number of pairs"),
    ],
)
def test_critic_speed_rejects_bad_chunk_flags(argv, message, capsys):
    with pytest.raises(SystemExit):
        critic_speed.parse_args(argv)
    assert message in capsys.readouterr().err
