"""Models and methods from another installed package (entry points), with a fake distribution in tmp_path."""

import textwrap

import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import base as method_base
from unlearnkit.methods import get_method, list_methods, unlearn
from unlearnkit.models import create_model, list_models
from unlearnkit.models import registry as model_registry


def _install(tmp_path, monkeypatch, package: str, module_code: str, entry_points: str):
    """A distribution `package` (dist-info with entry_points.txt + one module) on sys.path."""
    dist = tmp_path / f"{package}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (tmp_path / f"{package}.py").write_text(textwrap.dedent(module_code))
    monkeypatch.syspath_prepend(str(tmp_path))
    # Registries are process-wide: give each test its own copy so a plugin does not leak into others.
    monkeypatch.setattr(model_registry, "_MODELS", dict(model_registry._MODELS))
    monkeypatch.setattr(method_base, "_METHODS", dict(method_base._METHODS))


def test_model_plugin_is_listed_and_built(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "tinynet_plugin", """
        from torch import nn

        def tiny_net(num_classes, in_channels=3, width=4):
            return nn.Sequential(nn.Conv2d(in_channels, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(width, num_classes))
        """, """
        [unlearnkit.models]
        tiny_net = tinynet_plugin:tiny_net
        """)
    assert "tiny_net" in list_models()
    model = create_model("tiny_net", num_classes=5, in_channels=1, width=2)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 5)


def test_method_plugin_is_listed_and_runs(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "noop_method_plugin", """
        from dataclasses import dataclass
        from unlearnkit.methods import Method

        @dataclass
        class NoopHparams:
            scale: float = 1.0

        class Noop(Method):
            name = "noop"
            summary = "Returns the model unchanged (a plugin test)."
            paper = "none"
            Hparams = NoopHparams

            def run(self, model, ctx, hp):
                return model
        """, """
        [unlearnkit.methods]
        noop = noop_method_plugin:Noop
        """)
    assert list_methods()[-1] == "noop"
    assert get_method("noop").summary.startswith("Returns the model unchanged")
    from unlearnkit.data import load_dataset, make_split

    split = make_split(load_dataset("digits"), 0.2, 0).with_forget("random:10")
    model = create_model("small_cnn", split.num_classes, width=4)
    out = unlearn(model, split, "noop", scale=2.0)
    assert all(torch.equal(a, b) for a, b in zip(out.state_dict().values(), model.state_dict().values()))


def test_broken_plugin_is_a_one_line_error_naming_it(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "broken_plugin", """
        raise RuntimeError("boom at import")
        """, """
        [unlearnkit.models]
        broken_net = broken_plugin:build
        [unlearnkit.methods]
        broken_method = broken_plugin:Method
        """)
    assert "broken_net" in list_models()  # listing imports nothing
    with pytest.raises(UnlearnkitError, match="plugin 'broken_net' .*'broken_plugin'.* failed to import: RuntimeError: boom at import") as exc:
        create_model("broken_net", num_classes=10)
    assert "\n" not in str(exc.value)
    with pytest.raises(UnlearnkitError, match="plugin 'broken_method' .* failed to import: RuntimeError"):
        get_method("broken_method")


def test_cli_lists_a_method_plugin(tmp_path, monkeypatch, capsys):
    _install(tmp_path, monkeypatch, "cli_method_plugin", """
        from dataclasses import dataclass
        from unlearnkit.methods import Method

        @dataclass
        class H:
            pass

        class Listed(Method):
            name = "listed_plugin_method"
            summary = "A plugin method the CLI lists."
            paper = "none"
            Hparams = H
        """, """
        [unlearnkit.methods]
        listed_plugin_method = cli_method_plugin:Listed
        """)
    from helpers import run_cli

    code, out, _ = run_cli(capsys, "methods")
    assert code == 0 and "listed_plugin_method" in out
