"""Dataset sources from other packages (entry-point group `unlearnkit.datasets`).

Each test "installs" a tiny plugin package the honest cheap way: a module plus a
`<name>.dist-info` folder (METADATA + entry_points.txt) in a tmp folder put on sys.path, which is
exactly what importlib.metadata reads for an installed wheel.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import unlearnkit.data.sources.plugins as plugins
from unlearnkit.data.sources import ENTRY_POINT_GROUP, absolute_source, load_dataset, plugin_names
from unlearnkit.errors import UnlearnkitError

GOOD_PLUGIN = '''
import numpy as np
from pathlib import Path
from unlearnkit.data.sources import Source, make_bundle, make_images

class NpySource(Source):
    name = "npyset"
    summary = "a folder with x.npy (N, 1, H, W) uint8 and y.npy labels"
    example = "npyset:DIR"
    layout = "x.npy and y.npy"

    def load(self, request):
        x = np.load(Path(request.root) / "x.npy")
        y = np.load(Path(request.root) / "y.npy")
        CLASSES
        pool = make_images(x, y, [f"s{i}" for i in range(len(y))])
        half = len(y) // 2
        train = make_images(x[:half], y[:half], pool.ids[:half])
        test = make_images(x[half:], y[half:], pool.ids[half:])
        return make_bundle("npyset", classes, train, test, request.source)
'''


@pytest.fixture
def install(tmp_path, monkeypatch):
    """install(dist, entry_name, module, source_code, target) -> the site folder (on sys.path)."""
    monkeypatch.setattr(plugins, "_LOADED", {})
    site = tmp_path / "site"

    def _install(dist: str, entry: str, module: str, code: str, target: str) -> Path:
        site.mkdir(exist_ok=True)
        (site / f"{module}.py").write_text(textwrap.dedent(code))
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry} = {module}:{target}\n")
        return site

    monkeypatch.syspath_prepend(str(site))
    yield _install
    for name in [m for m in sys.modules if m.startswith("ukplug_")]:
        del sys.modules[name]  # each test's plugin module is its own


def _npy_data(folder: Path, labels: list[int]) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.integers(0, 256, (len(labels), 1, 5, 5), dtype=np.uint8))
    np.save(folder / "y.npy", np.array(labels, dtype=np.int64))
    return folder


def test_plugin_source_loads_through_its_entry_point(tmp_path, install, monkeypatch):
    install("ukplug-good", "npyset", "ukplug_good", GOOD_PLUGIN.replace("CLASSES", "classes = ['a', 'b']"), "NpySource")
    assert "npyset" in plugin_names()
    data = _npy_data(tmp_path / "d", [0, 1, 0, 1, 0, 1, 0, 1])
    bundle = load_dataset(f"npyset:{data}", use_cache=False)
    assert bundle.name == "npyset" and bundle.classes == ("a", "b")
    assert len(bundle.train) == 4 and bundle.train.images.shape == (4, 1, 5, 5)
    np.testing.assert_array_equal(bundle.test.images, np.load(data / "x.npy")[4:])
    monkeypatch.chdir(tmp_path)
    assert absolute_source("npyset:d") == f"npyset:{data}"
    # An unknown kind now lists the plugin among the choices.
    with pytest.raises(UnlearnkitError, match=r"unknown kind 'nosuch'; choose one of: .*folder, npyset"):
        load_dataset("nosuch:/x")


def test_plugin_that_raises_on_import_is_a_one_line_error_naming_it(install):
    install("ukplug-broken", "brokenset", "ukplug_broken",
            "import numpy\nraise ImportError('needs libfoo 2.0\\nsecond line of detail')\n", "Anything")
    with pytest.raises(UnlearnkitError) as info:
        load_dataset("brokenset:/data", use_cache=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("dataset plugin 'brokenset' (ukplug_broken:Anything, from package ukplug-broken) failed to import")
    assert "ImportError: needs libfoo 2.0" in message and "fix or uninstall" in message


def test_plugin_entry_point_that_is_not_a_source(install):
    install("ukplug-notsrc", "notsrc", "ukplug_notsrc", "def load(root):\n    return None\n", "load")
    with pytest.raises(UnlearnkitError, match=r"dataset plugin 'notsrc' .*is a function, not a subclass of unlearnkit\.data\.sources\.Source"):
        load_dataset("notsrc:/data")


def test_plugin_failure_while_loading_names_the_plugin(tmp_path, install):
    install("ukplug-fails", "npyset", "ukplug_fails", GOOD_PLUGIN.replace("CLASSES", "classes = ['a', 'b']"), "NpySource")
    (tmp_path / "d").mkdir()  # no x.npy: np.load raises FileNotFoundError inside the plugin
    with pytest.raises(UnlearnkitError, match=r"^dataset plugin 'npyset' failed to load .*\(FileNotFoundError: ") as info:
        load_dataset(f"npyset:{tmp_path / 'd'}", use_cache=False)
    assert "\n" not in str(info.value)


def test_plugin_bundle_is_checked(tmp_path, install):
    install("ukplug-one", "npyset", "ukplug_one", GOOD_PLUGIN.replace("CLASSES", "classes = ['a', 'b']"), "NpySource")
    data = _npy_data(tmp_path / "d", [1, 1, 1, 1, 0, 0])  # the train half holds one class only
    with pytest.raises(UnlearnkitError, match=r"dataset .*\(dataset plugin 'npyset'\) has only one class \('b'\)"):
        load_dataset(f"npyset:{data}", use_cache=False)


def test_plugin_labels_out_of_range_are_refused(tmp_path, install):
    install("ukplug-range", "npyset", "ukplug_range", GOOD_PLUGIN.replace("CLASSES", "classes = ['a', 'b']"), "NpySource")
    data = _npy_data(tmp_path / "d", [0, 1, 2, 0, 1, 0])
    with pytest.raises(UnlearnkitError, match=r"returned train labels outside 0\.\.1"):
        load_dataset(f"npyset:{data}", use_cache=False)


def test_builtin_names_win_over_plugins(install, tmp_path):
    install("ukplug-shadow", "digits", "ukplug_shadow", "raise RuntimeError('must not be imported')\n", "X")
    assert load_dataset("digits").name == "digits"
