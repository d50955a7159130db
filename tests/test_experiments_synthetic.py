import json

import pytest
import torch

from factorcl.cli import main as cli_main
from factorcl.data import make_synthetic
from factorcl.experiments import synthetic as syn


def tiny_config(**kw):
    base = dict(
        methods=("factorcl-ssl", "simclr", "factorcl-sup"),
        ratios=(0.0, 1.0),
        seeds=(0,),
        num_samples=640,
        epochs=1,
        batch_size=64,
        hidden_dim=32,
        feature_dim=16,
        model=syn.FactorCLConfig(embed_dim=8, critic_hidden=32, num_classes=2),
        mi_steps=20,
        progress=False,
        device="cpu",
    )
    base.update(kw)
    return syn.SyntheticBenchmarkConfig(**base)


def test_sweep_trains_ssl_once_and_sup_per_ratio_and_probes_everything():
    results = syn.run_synthetic_benchmark(tiny_config())
    assert len(results.train_seconds["factorcl-ssl"]) == 1 and len(results.train_seconds["simclr"]) == 1
    assert len(results.train_seconds["factorcl-sup"]) == 2
    for spec in ("factorcl-ssl", "simclr", "factorcl-sup"):
        assert set(results.accuracy[spec]) == {"0", "1"}
        assert all(0.0 <= a <= 1.0 for accs in results.accuracy[spec].values() for a in accs)
    assert set(results.mi_bits["factorcl-ssl"]) == {"s1", "s2", "u1", "u2"}
    assert set(results.mi_bits["simclr"]) == {"z1", "z2"}
    assert set(results.mi_bits["factorcl-ssl"]["u1"]) == {"w_1", "w_2", "w_s"}
    texts = [c["text"] for c in results.claims]
    assert any("unique_ratio 0 " in t for t in texts) and any("unique_ratio 1 " in t for t in texts)
    assert any("Z_U1 carries more MI about w_1" in t for t in texts)
    assert any("Z_U1 carries more R^2 about w_1" in t for t in texts)
    assert set(results.r2["factorcl-ssl"]["u1"]) == {"w_1", "w_2", "w_s"}
    assert "R2(w_1)" in syn.format_r2_table(results)
    table = syn.format_accuracy_table(results)
    assert "FactorCL-SSL" in table and "SimCLR" in table and "+-" in table
    assert "I(Z; w_1)" in syn.format_mi_table(results)


def test_mi_bits_is_near_its_ceiling_for_a_copy_and_near_zero_for_independent_latents():
    data = make_synthetic(num_samples=3000, seed=0)
    tr, te = data.indices["train"], data.indices["test"]
    same, ceiling = syn.mi_bits(data.w_1[tr], data.w_1[tr], data.w_1[te], data.w_1[te], steps=300)
    indep, _ = syn.mi_bits(data.w_1[tr], data.w_2[tr], data.w_1[te], data.w_2[te], steps=300)
    assert same > 0.8 * ceiling
    assert 0.0 <= indep < 0.3


def test_cli_quick_run_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "results.json"
    code = cli_main(
        [
            "synthetic",
            "--samples",
            "640",
            "--epochs",
            "1",
            "--methods",
            "factorcl-ssl",
            "simclr",
            "--ratios",
            "0",
            "1",
            "--seeds",
            "0",
            "--mi-steps",
            "10",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Linear-probe test accuracy" in printed and "MI probing" in printed
    assert "PASS" in printed or "FAIL" in printed
    assert f"results: {out.resolve()}" in printed
    data = json.loads(out.read_text())
    assert set(data["accuracy"]) == {"factorcl-ssl", "simclr"}
    assert (tmp_path / "accuracy.png").stat().st_size > 1000


def test_method_specs_and_config_errors():
    assert syn.parse_method("FactorCL-SSL:concat") == ("factorcl-ssl", "concat")
    assert syn.display_name("factorcl-ssl:concat") == "FactorCL-SSL (concat)"
    with pytest.raises(ValueError, match="critic in method spec"):
        syn.parse_method("simclr:bilinear")
    with pytest.raises(ValueError, match="method must be one of"):
        syn.parse_method("simclr2")
    with pytest.raises(ValueError, match=r"ratios must be values in \[0, 1\]"):
        tiny_config(ratios=(0.0, 2.0))


def test_feature_augmentation_keeps_shape_and_changes_values():
    aug = syn.feature_augmentation(0.15, 0.1)
    x = torch.randn(32, 10)
    y = aug(x)
    assert y.shape == x.shape and not torch.equal(x, y)


def test_concat_critic_width_comes_from_the_config_and_the_cli(monkeypatch, tmp_path):
    import bounds

    cfg = tiny_config(concat_critic_hidden=8)
    concat = syn.build_model("factorcl-ssl:concat", cfg, (100, 100), seed=0)
    widths = {m.net[0].out_features for m in concat.modules() if isinstance(m, bounds.ConcatCritic)}
    assert widths == {8}
    separable = syn.build_model("factorcl-ssl", cfg, (100, 100), seed=0)
    assert not any(isinstance(m, bounds.ConcatCritic) for m in separable.modules())

    seen = {}

    class Stop(Exception):
        pass

    def capture(config):
        seen["cfg"] = config
        raise Stop

    monkeypatch.setattr(syn, "run_synthetic_benchmark", capture)
    with pytest.raises(Stop):
        cli_main(["synthetic", "--concat-critic-hidden", "24", "--out", str(tmp_path / "r.json")])
    assert seen["cfg"].concat_critic_hidden == 24
    with pytest.raises(Stop):
        cli_main(["synthetic", "--out", str(tmp_path / "r.json")])
    assert seen["cfg"].concat_critic_hidden == syn.SyntheticBenchmarkConfig().concat_critic_hidden


def test_r2_probe_is_one_for_a_linear_copy_and_near_zero_for_independent_latents():
    data = make_synthetic(num_samples=3000, seed=0)
    tr, te = data.indices["train"], data.indices["test"]
    mix = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    assert syn.r2_probe(data.w_1[tr] @ mix, data.w_1[tr], data.w_1[te] @ mix, data.w_1[te]) > 0.99
    assert abs(syn.r2_probe(data.w_1[tr], data.w_2[tr], data.w_1[te], data.w_2[te])) < 0.02


def test_claims_need_two_standard_deviations_across_seeds():
    assert syn._decisive([0.5, 0.6, 0.55], "x", "")["passed"]
    assert not syn._decisive([0.5, -0.4, 0.6], "x", "")["passed"]  # positive mean, but within the spread
    one = syn._decisive([0.1], "x", "bits")
    assert one["passed"] and "1 seed" in one["text"]


def test_set_changes_every_models_settings_and_refuses_the_per_spec_ones(monkeypatch, tmp_path, capsys):
    seen = {}

    class Stop(Exception):
        pass

    def capture(config):
        seen["cfg"] = config
        raise Stop

    monkeypatch.setattr(syn, "run_synthetic_benchmark", capture)
    out = ["--out", str(tmp_path / "r.json")]
    with pytest.raises(Stop):
        cli_main(["synthetic", "--set", "aux_critic_hidden=null", "--set", "critic-hidden=64", *out])
    model = seen["cfg"].model
    assert model.aux_critic_hidden is None and model.critic_hidden == 64
    assert model.embed_dim == syn.SyntheticBenchmarkConfig().model.embed_dim  # the rest as before
    built = syn.build_model("factorcl-ssl", seen["cfg"], (100, 100), seed=0)
    assert built.estimators["unique_remove"].critic.g[0].out_features == 64
    for bad, words in (("critic=concat", "METHOD:concat"), ("bogus=1", "not a FactorCL setting"), ("x", "KEY=VALUE")):
        assert cli_main(["synthetic", "--set", bad, *out]) == 2
        assert words in capsys.readouterr().err
    assert cli_main(["synthetic", "--set", "aux_critic_hidden=0", *out]) == 2
    assert "aux_critic_hidden" in capsys.readouterr().err
