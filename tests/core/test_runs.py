import json

import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model
from unlearnkit.runs import atomic_write_json, load_weights, prepare_out_dir, save_model


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_weights_round_trip_and_wrong_architecture(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18", 10, width=8)
    save_model(model, tmp_path / "w.safetensors")
    again = load_weights(create_model("resnet18", 10, width=8), tmp_path / "w.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(UnlearnkitError, match="does not fit resnet18 .*another architecture or width"):
        load_weights(create_model("resnet18", 10, width=16), tmp_path / "w.safetensors", "resnet18 (width 16)")
    with pytest.raises(UnlearnkitError, match="does not fit small_cnn.*missing"):
        load_weights(create_model("small_cnn", 10), tmp_path / "w.safetensors", "small_cnn")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UnlearnkitError, match="bad.safetensors is not a readable safetensors file"):
        load_weights(model, tmp_path / "bad.safetensors")


def test_out_dir_rules(tmp_path):
    prepare_out_dir(tmp_path / "new", resume=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UnlearnkitError, match="is not empty; choose a new --out, or pass --resume"):
        prepare_out_dir(tmp_path / "full", resume=False)
    with pytest.raises(UnlearnkitError, match="holds no started run"):
        prepare_out_dir(tmp_path / "full", resume=True)
    atomic_write_json(tmp_path / "full" / "config.json", {"train": {"epochs": 3}, "runtime": {}})
    with pytest.raises(UnlearnkitError, match=r"another config \(train.epochs: 3 there, 4 now\)"):
        prepare_out_dir(tmp_path / "full", resume=True, recipe={"train": {"epochs": 4}})
