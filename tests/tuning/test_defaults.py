"""Tuned defaults: the lookup (preset + recipe hash + scenario kind), provenance in run.json, the
bench key, the leaderboard's seed note, and the entries that ship with the package."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from helpers import run_cli

from unlearnkit.config import RunConfig, TrainConfig, resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.base import get_method, list_methods, make_hparams
from unlearnkit.tuning import defaults
from unlearnkit.tuning.scenarios import FIRST_TUNING_SEED

VALUES = {"epochs": 1, "lr": 0.05, "weight_decay": 1e-3}


def _entry(cfg: RunConfig, kind: str = "random", values: dict | None = None, seeds=(100, 101, 102)) -> dict:
    rhash = defaults.recipe_hash(cfg)
    return {"id": defaults.entry_id("finetune", cfg.preset, kind, rhash), "method": "finetune", "preset": cfg.preset,
            "kind": kind, "forget": kind, "recipe_hash": rhash, "values": values or VALUES, "seeds": list(seeds),
            "command": "unlearnkit tune --method finetune", "objective": {"avg_gap": 1.0}}


@pytest.fixture()
def entries_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "DEFAULTS_DIR", tmp_path)
    return tmp_path


def test_lookup_matches_preset_recipe_hash_and_kind(entries_dir):
    cfg = resolve_config("digits")
    defaults.write_entry(_entry(cfg))
    values, source = defaults.resolve("finetune", cfg, "random:0.1")
    assert values == VALUES and source["kind"] == "tuned" and source["seeds"] == [100, 101, 102]
    assert defaults.resolve("finetune", cfg, "ids:forget.txt")[0] == VALUES  # ids: requests take the random entry
    assert defaults.resolve("finetune", cfg.to_dict(), "random:128")[0] == VALUES  # a config.json dict works too
    # The seed and the dataset path do not change the recipe; the epochs do.
    assert defaults.resolve("finetune", resolve_config("digits", {"seed": 7, "data.source": "digits"}), "random:0.1")[0] == VALUES
    values, source = defaults.resolve("finetune", resolve_config("digits", {"train.epochs": 4}), "random:0.1")
    assert values == {} and source["kind"] == "paper" and "another digits recipe" in source["reason"]
    values, source = defaults.resolve("finetune", cfg, "class:3")
    assert values == {} and "no tuned entry for finetune on digits / class" in source["reason"]
    assert defaults.resolve("finetune", TrainConfig(), "random:0.1")[1]["kind"] == "paper"  # no preset named
    assert defaults.resolve("neggrad", cfg, "random:0.1")[0] == {}


@pytest.mark.parametrize(("spec", "kind"), [
    ("class:3", "class"), ("class:3,5", "class"), ("class:3:1", "class"), ("class:3:1.0", "class"),
    # A share of a class leaves the rest to retain: retraining still knows the class, so the
    # forgotten share should look held-out — its own kind, not the class-removing entry.
    ("class:3:0.5", "class-share"), ("class:3,5:0.1", "class-share"),
    ("ids:forget.txt", "random"), ("random:128", "random"),
    ("subclass:maple_tree", "class"), ("subclass:maple_tree:0.5", "class-share"),
])
def test_each_request_takes_its_kinds_entry(entries_dir, spec, kind):
    cfg = resolve_config("digits")
    lrs = {"random": 0.05, "class": 0.3, "class-share": 0.02}
    for k, lr in lrs.items():
        defaults.write_entry(_entry(cfg, kind=k, values={"epochs": 1, "lr": lr}))
    values, source = defaults.resolve("finetune", cfg, spec)
    assert values.get("lr") == lrs[kind]
    assert source["entry"].split("/")[1] == kind and "fallback" not in source


@pytest.mark.parametrize("spec", ["class:3:0.5", "class:3,5:0.1", "subclass:maple_tree:0.5", "class:3 + class:5:0.5"])
def test_a_class_share_without_its_own_entry_takes_the_random_entry_and_says_so(entries_dir, spec):
    cfg = resolve_config("digits")
    defaults.write_entry(_entry(cfg, kind="random", values={"epochs": 1, "lr": 0.05}))
    defaults.write_entry(_entry(cfg, kind="class", values={"epochs": 1, "lr": 0.3}))
    values, source = defaults.resolve("finetune", cfg, spec)
    assert values["lr"] == 0.05 and source["entry"].split("/")[1] == "random"
    assert source["fallback"] == "no class-share entry for finetune on digits: the random entry applies"
    hp, src = defaults.hparams_for("finetune", cfg, spec)
    assert hp.lr == 0.05 and src["summary"].endswith("; no class-share entry for finetune on digits: the random entry applies")
    # The fallback never runs the other way: a random request does not take a class-share entry.
    defaults.write_entry(_entry(cfg, kind="class-share", values={"epochs": 1, "lr": 0.02}))
    (entries_dir / "digits.json").write_text(json.dumps({"format": 1, "entries": [
        e for e in defaults.entries("digits") if e["kind"] != "random"]}))
    assert defaults.resolve("finetune", cfg, "random:0.1")[0] == {}
    assert "no tuned entry for finetune on digits / random" in defaults.resolve("finetune", cfg, "ids:x.txt")[1]["reason"]
    # Neither entry: the reason names both kinds it looked for.
    assert "/ class-share or random" in defaults.resolve("neggrad", cfg, spec)[1]["reason"]


def test_an_entry_the_method_no_longer_accepts_falls_back_and_says_why(entries_dir):
    cfg = resolve_config("digits")
    defaults.write_entry(_entry(cfg, values={"epochs": 1, "renamed_setting": 3}))
    values, source = defaults.resolve("finetune", cfg, "random:0.1")
    assert values == {} and "no longer fits finetune" in source["reason"]


def test_set_overrides_the_tuned_entry_and_provenance_names_each_field(entries_dir):
    cfg = resolve_config("digits")
    defaults.write_entry(_entry(cfg))
    hp, src = defaults.hparams_for("finetune", cfg, "random:0.1", {"method.lr": "0.2"})
    assert hp.lr == 0.2 and hp.weight_decay == VALUES["weight_decay"] and hp.batch_size == 256
    assert src["fields"] == {"epochs": "tuned", "lr": "set", "batch_size": "paper", "weight_decay": "tuned"}
    assert src["summary"].startswith("tuned entry digits/random/finetune@") and src["summary"].endswith("--set lr")


def test_forget_run_applies_the_entry_and_records_its_source(entries_dir, digits_run, tmp_path):
    from unlearnkit.methods import forget_run
    from unlearnkit.training.pipeline import load_run

    cfg = load_run(digits_run).config
    defaults.write_entry(_entry(cfg))
    res = forget_run(digits_run, "finetune", "random:0.1", tmp_path / "tuned")
    info = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert info["hparams"]["lr"] == VALUES["lr"] and info["hparams_source"]["kind"] == "tuned"
    assert info["hparams_source"]["command"] == "unlearnkit tune --method finetune"
    assert res["hparams_source"].startswith("tuned entry")
    forget_run(digits_run, "finetune", "class:1", tmp_path / "paper", hparams={"method.epochs": 1})
    info = json.loads((tmp_path / "paper" / "run.json").read_text())
    assert info["hparams"]["lr"] == 0.02 and info["hparams_source"]["kind"] == "paper"
    assert info["hparams_source"]["fields"]["epochs"] == "set"
    assert "paper defaults (no tuned entry" in info["hparams_source"]["summary"]


def test_a_malformed_class_share_is_the_selectors_one_line_error(entries_dir):

    with pytest.raises(UnlearnkitError, match=r"forget spec 'class:3:half'.*fraction in \(0, 1\]"):
        defaults.resolve("finetune", resolve_config("digits"), "class:3:half")


def test_a_class_share_that_rounds_up_to_the_whole_class_warns_that_it_takes_the_class_share_entry(entries_dir, digits_run,
                                                                                                   tmp_path):
    from unlearnkit.methods import forget_run

    with pytest.warns(UserWarning, match=r"class:4:0.999 covers every member of class 4 but takes the class-share-kind "
                                          r"hyperparameters \(tuned for a share of one class"):
        forget_run(digits_run, "finetune", "class:4:0.999", tmp_path / "w", hparams={"method.epochs": 0.1})


def test_an_ids_file_covering_a_whole_class_warns_that_it_takes_the_random_entry(entries_dir, digits_run, tmp_path):
    from unlearnkit.methods import forget_run
    from unlearnkit.training.pipeline import load_run

    split = load_run(digits_run).split
    labels = split.bundle.train.labels
    ids = [str(split.bundle.train.ids[i]) for i in split.train_idx if labels[i] == 4]
    whole = tmp_path / "class4.txt"
    whole.write_text("\n".join(ids) + "\n")
    part = tmp_path / "part.txt"
    part.write_text("\n".join(ids[:-1]) + "\n")
    with pytest.warns(UserWarning, match=r"covers every member of class 4.*use --forget class:4"):
        forget_run(digits_run, "finetune", f"ids:{whole}", tmp_path / "whole", hparams={"method.epochs": 0.1})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one member short of the class: a plain member subset, no warning
        forget_run(digits_run, "finetune", f"ids:{part}", tmp_path / "part", hparams={"method.epochs": 0.1})
        # A chain: the class was removed by the earlier request, this one only adds its last member.
        last = tmp_path / "last.txt"
        last.write_text(ids[-1] + "\n")
        forget_run(tmp_path / "part", "finetune", f"ids:{last}", tmp_path / "chained", hparams={"method.epochs": 0.1})


def test_the_python_api_uses_the_entry_when_given_the_run_config(entries_dir, digits_run, monkeypatch):
    import unlearnkit as uk
    from unlearnkit.methods import finetune

    run = uk.load_run(digits_run)
    defaults.write_entry(_entry(run.config))
    seen = []
    monkeypatch.setattr(finetune.Finetune, "run", lambda self, model, ctx, hp: seen.append((hp, ctx.recipe)) or model)
    split = run.split.with_forget("random:0.1")
    uk.unlearn(run.load_model(), split, "finetune", normalizer=run.normalizer, runtime=run.runtime, recipe=run.config)
    uk.unlearn(run.load_model(), split, "finetune", normalizer=run.normalizer, runtime=run.runtime, recipe=run.config.train)
    (tuned_hp, recipe), (paper_hp, _) = seen
    assert tuned_hp.lr == VALUES["lr"] and isinstance(recipe, TrainConfig) and paper_hp.lr == 0.02
    # An entry searched with an older revision of the method warns here as in `forget`.
    monkeypatch.setattr(get_method("finetune"), "revision", 1)
    monkeypatch.setattr(get_method("finetune"), "changes", {1: "a change"})
    with pytest.warns(UserWarning, match=r"finetune: tuned entry .* was tuned with finetune revision 0, now 1 \(1: a change\)"):
        uk.unlearn(run.load_model(), split, "finetune", normalizer=run.normalizer, runtime=run.runtime, recipe=run.config)


def test_a_new_entry_changes_the_bench_key_of_that_method_only(entries_dir):
    from unlearnkit.bench.plan import build_plan

    cfg = resolve_config("digits")

    def keys():
        plan = build_plan(cfg, "fp", methods=["finetune", "neggrad"], scenarios=["random:0.1"], seeds=1, store=Path("s"))
        return {j.id: j.key for j in plan.jobs.values()}

    before = keys()
    defaults.write_entry(_entry(cfg))
    after = keys()
    changed = {j for j in before if before[j] != after[j]}
    assert changed == {"method/random:0.1/finetune/seed0", "audit/random:0.1/finetune/seed0"}


def test_the_leaderboard_note_states_whether_seeds_are_disjoint(entries_dir):
    cfg = resolve_config("digits")
    assert "paper defaults" in defaults.provenance_note(["finetune"], cfg, ["random:0.1"], [0, 1, 2])
    defaults.write_entry(_entry(cfg))
    note = defaults.provenance_note(["finetune", "neggrad"], cfg, ["random:0.1"], [0, 1, 2])
    assert "disjoint from the evaluation seeds (0, 1, 2)" in note and "paper defaults for neggrad" in note
    assert defaults.provenance_note(["finetune"], cfg, ["random:0.1"], list(range(101))).startswith("WARNING")


def test_methods_command_shows_the_tuned_defaults(entries_dir, capsys):
    code, out, _ = run_cli(capsys, "methods", "finetune")
    assert code == 0 and "tuned defaults: none for finetune" in out
    defaults.write_entry(_entry(resolve_config("digits")))
    code, out, _ = run_cli(capsys, "methods", "finetune")
    assert code == 0 and "tuned defaults for finetune" in out and "100, 101, 102" in out
    # A kind served by another kind's entry says which, so "no entry" does not read as paper defaults.
    assert "digits/class-share: no entry of its own; class-share requests take digits/random/finetune@" in out
    defaults.write_entry(_entry(resolve_config("digits"), kind="class-share"))
    code, out, _ = run_cli(capsys, "methods", "finetune")
    assert "digits/class-share/finetune@" in out and "no entry of its own" not in out


def test_an_entry_searched_with_an_older_revision_applies_and_says_what_changed(entries_dir, digits_run, tmp_path,
                                                                               capsys, monkeypatch):
    from unlearnkit.methods import forget_run
    from unlearnkit.training.pipeline import load_run

    cfg = load_run(digits_run).config
    defaults.write_entry({**_entry(cfg), "method_revision": 0})
    assert "older_revision" not in defaults.resolve("finetune", cfg, "random:0.1")[1]  # finetune is at revision 0
    monkeypatch.setattr(get_method("finetune"), "revision", 2)
    monkeypatch.setattr(get_method("finetune"), "changes", {1: "first change", 2: "second change"})
    values, source = defaults.resolve("finetune", cfg, "random:0.1")
    assert values == VALUES  # still applies
    assert source["method_revision"] == 0
    assert source["older_revision"] == "tuned with finetune revision 0, now 2 (1: first change; 2: second change)"
    assert defaults.hparams_for("finetune", cfg, "random:0.1")[1]["summary"].endswith(source["older_revision"])
    # An entry without the field was searched before revisions were recorded: revision 0.
    defaults.write_entry({k: v for k, v in _entry(cfg).items() if k != "method_revision"})
    assert defaults.resolve("finetune", cfg, "random:0.1")[1]["method_revision"] == 0
    defaults.write_entry({**_entry(cfg), "method_revision": 1})
    assert defaults.resolve("finetune", cfg, "random:0.1")[1]["older_revision"].endswith("now 2 (2: second change)")
    # forget warns once and records it; a run that overrides every tuned field does not warn.
    with pytest.warns(UserWarning, match=r"finetune: tuned entry digits/random/finetune@\w+ was tuned with finetune revision 1, "
                                         r"now 2 \(2: second change\); it still applies .* `unlearnkit tune --method finetune`"):
        forget_run(digits_run, "finetune", "random:0.1", tmp_path / "older")
    info = json.loads((tmp_path / "older" / "run.json").read_text())
    assert info["hparams_source"]["older_revision"].startswith("tuned with finetune revision 1")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*revision.*")
        forget_run(digits_run, "finetune", "random:0.1", tmp_path / "all-set", hparams={f"method.{k}": v for k, v in VALUES.items()})
    # `unlearnkit methods NAME` and the leaderboard header name it too.
    code, out, _ = run_cli(capsys, "methods", "finetune")
    assert code == 0 and "tuned with finetune revision 1, now 2 (2: second change); made by:" in out
    note = defaults.provenance_note(["finetune"], cfg, ["random:0.1"], [0, 1, 2])
    assert note.endswith("Searched with an older revision of their method (they still apply; `unlearnkit methods NAME` says "
                         f"what changed): {source['entry']}.")
    monkeypatch.setattr(get_method("finetune"), "revision", 1)
    assert "older revision" not in defaults.provenance_note(["finetune"], cfg, ["random:0.1"], [0, 1, 2])


def test_an_entry_from_a_newer_install_says_to_update(entries_dir, monkeypatch):
    cfg = resolve_config("digits")
    defaults.write_entry({**_entry(cfg), "method_revision": 3})
    monkeypatch.setattr(get_method("finetune"), "revision", 1)
    assert defaults.resolve("finetune", cfg, "random:0.1")[1]["older_revision"] == (
        "tuned with finetune revision 3, newer than this install's 1: update unlearnkit to run the code it was tuned with")


@pytest.mark.parametrize(("edit", "message"), [
    ({"method_revision": "2"}, r"entry 1 \(digits/random/finetune@\w+\): field 'method_revision' must be a whole number >= 0, got '2'"),
    ({"method_revision": 1.5}, r"field 'method_revision' must be a whole number >= 0, got 1.5"),
    ({"method_revision": True}, r"field 'method_revision' must be a whole number >= 0, got True"),
    ({"method_revision": -1}, r"field 'method_revision' must be a whole number >= 0, got -1"),
    ({"values": None}, r"field 'values' must be a dict, got a NoneType"),
    ({"recipe_hash": None}, r"field 'recipe_hash' must be a str, got a NoneType"),
    ({"method": 3}, r"field 'method' must be a str, got a int"),
])
def test_a_hand_edited_entry_with_a_bad_field_is_a_one_line_error(entries_dir, edit, message):
    cfg = resolve_config("digits")
    path = defaults.write_entry(_entry(cfg))
    doc = json.loads(path.read_text())
    doc["entries"][0].update(edit)
    path.write_text(json.dumps(doc))
    with pytest.raises(UnlearnkitError, match=rf"tuned defaults file .*digits\.json, (entry 1 .*: )?{message}; restore the file from git"):
        defaults.resolve("finetune", cfg, "random:0.1")


@pytest.mark.parametrize("doc", [[], {"entries": {}}, {"entries": ["x"]}])
def test_a_defaults_file_of_the_wrong_shape_is_a_one_line_error(entries_dir, doc):
    (entries_dir / "digits.json").write_text(json.dumps(doc))
    with pytest.raises(UnlearnkitError, match=r"tuned defaults file .*digits\.json.*(has no list of entries|is not an object)"):
        defaults.resolve("finetune", resolve_config("digits"), "random:0.1")


def test_an_entry_missing_a_field_names_it(entries_dir):
    path = defaults.write_entry(_entry(resolve_config("digits")))
    doc = json.loads(path.read_text())
    del doc["entries"][0]["command"]
    path.write_text(json.dumps(doc))
    with pytest.raises(UnlearnkitError, match=r"field 'command' must be a str, got missing; restore the file from git"):
        defaults.entries("digits")


@pytest.mark.parametrize("name", list_methods())
def test_each_revision_of_a_method_says_what_it_changed(name):
    cls = get_method(name)
    assert sorted(cls.changes) == list(range(1, cls.revision + 1)), name
    assert all(isinstance(v, str) and v for v in cls.changes.values())


def test_shipped_entries_are_valid_and_honest():
    """Every committed entry: values the method accepts, tuning seeds outside the evaluation range,
    the recipe hash of its preset as shipped, and the command that made it."""
    shipped = defaults.all_entries(directory=Path(defaults.__file__).parent)
    for e in shipped:
        make_hparams(e["method"], e["values"])
        assert min(e["seeds"]) >= FIRST_TUNING_SEED
        assert e["recipe_hash"] == defaults.recipe_hash(resolve_config(e["preset"])), e["id"]
        assert e["command"].startswith("unlearnkit tune ") and f"--method {e['method']}" in e["command"]
        assert e["id"] == defaults.entry_id(e["method"], e["preset"], e["kind"], e["recipe_hash"])
        assert 0 <= e["method_revision"] <= get_method(e["method"]).revision, e["id"]


def test_a_bench_job_refuses_to_run_values_other_than_its_key_holds(entries_dir, digits_run, tmp_path):
    """An entry exported between planning a bench and running its job must not run under the old key."""
    import dataclasses  # noqa: PLC0415

    from unlearnkit.bench.plan import build_plan  # noqa: PLC0415
    from unlearnkit.errors import UnlearnkitError  # noqa: PLC0415
    from unlearnkit.methods import forget_run  # noqa: PLC0415
    from unlearnkit.training.pipeline import load_run  # noqa: PLC0415

    cfg = load_run(digits_run).config
    defaults.write_entry(_entry(cfg))
    plan = build_plan(cfg, "fp", methods=["finetune"], scenarios=["random:0.1"], seeds=1, store=Path("s"))
    resolved = plan.jobs["method/random:0.1/finetune/seed0"].spec["resolved"]
    assert resolved == dataclasses.asdict(make_hparams("finetune", VALUES))
    defaults.write_entry(_entry(cfg, values={**VALUES, "lr": 0.07}))  # a new export, after planning
    with pytest.raises(UnlearnkitError, match=r"other values than when this bench was planned \(lr;"):
        forget_run(digits_run, "finetune", "random:0.1", tmp_path / "job", expect_hparams=resolved)
    assert not (tmp_path / "job").exists()
    defaults.write_entry(_entry(cfg))  # back to the planned entry: the job runs
    forget_run(digits_run, "finetune", "random:0.1", tmp_path / "job", expect_hparams=resolved)
    assert json.loads((tmp_path / "job" / "run.json").read_text())["hparams"]["lr"] == VALUES["lr"]


@pytest.mark.parametrize(("spec", "kind"), [
    # A chain's forget_spec joins its requests with " + " (`Split.with_forget`): the latest one decides.
    ("class:3 + class:5", "class"), ("class:3 + random:50", "random"), ("random:0.1 + class:3", "class"),
    ("class:3:0.5 + class:5", "class"), ("random:0.1 + subclass:maple_tree", "class"),
    # subclass: selects fine classes as class: does (the model learns the fine labels), so it
    # takes the class entry, and a share of a fine class the class-share one, as class:cat:0.5 does.
    ("subclass:baby", "class"), ("subclass:baby,boy:0.5", "class-share"), ("class:3 + subclass:baby:0.5", "class-share"),
    ("class:3 + class:5:0.5", "class-share"),
])
def test_a_chain_takes_the_kind_of_its_latest_request(spec, kind):
    from unlearnkit.tuning.scenarios import kind_of

    assert kind_of(spec) == kind


def test_the_latest_request_of_a_chain_keeps_a_separator_inside_its_own_text():
    from unlearnkit.tuning.scenarios import latest_request

    assert latest_request("class:3 + ids:/data/a + b.txt") == "ids:/data/a + b.txt"  # " + " inside a file path
    assert latest_request("ids:a.txt + class:2 + ids:b.txt") == "ids:b.txt"
    assert latest_request("random:0.1") == "random:0.1"


def test_a_chain_after_a_class_request_runs_with_the_latest_requests_entry(entries_dir, digits_run, tmp_path, capsys,
                                                                           monkeypatch):
    """forget class:3, then class:5 or random:50 from that run: both run (the joined spec was once parsed
    as a class share) and each takes the entry of its own request's kind, by the CLI and the Python API."""
    import unlearnkit as uk
    from unlearnkit.methods import finetune

    cfg = uk.load_run(digits_run).config
    defaults.write_entry(_entry(cfg, kind="random", values={"epochs": 0.2, "lr": 0.01}))
    defaults.write_entry(_entry(cfg, kind="class", values={"epochs": 0.2, "lr": 0.03}))
    first = tmp_path / "c3"
    assert run_cli(capsys, "forget", digits_run, "--method", "finetune", "--forget", "class:3", "--out", first)[0] == 0
    for spec, lr in [("class:5", 0.03), ("random:50", 0.01)]:
        out = tmp_path / spec.replace(":", "-")
        code, _, err = run_cli(capsys, "forget", first, "--method", "finetune", "--forget", spec, "--out", out)
        assert code == 0, err
        info = json.loads((out / "run.json").read_text())
        assert info["forget_spec"] == f"class:3 + {spec}" and info["hparams"]["lr"] == lr
        assert info["hparams_source"]["entry"].split("/")[1] == spec.partition(":")[0]

    run = uk.load_run(digits_run)
    seen = []
    monkeypatch.setattr(finetune.Finetune, "run", lambda self, model, ctx, hp: seen.append(hp.lr) or model)
    for chain in (["class:3", "class:5"], ["class:3", "random:50"], ["random:0.1", "class:3"]):
        split = run.split
        for spec in chain:
            split = split.with_forget(spec)
        uk.unlearn(run.load_model(), split, "finetune", normalizer=run.normalizer, runtime=run.runtime, recipe=run.config)
    assert seen == [0.03, 0.01, 0.03]


@pytest.mark.parametrize("classes, seed, spec", [
    (("airplane", "automobile", "bird"), 4, "class:1"),  # names: the plain index, as before (same store keys)
    (("0", "1", "2"), 4, "class:1"),  # numeric names that equal their index: not ambiguous
    (("1", "2", "3", "4"), 5, "class:#1"),  # Kaggle labels 1..4: "1" names class 0, so index 1 is written #1
])
def test_class_tuning_sets_name_their_class_unambiguously(classes, seed, spec):
    from unlearnkit.data.splits import _class_label
    from unlearnkit.tuning.scenarios import KINDS

    made = KINDS["class"].spec(None, seed, classes)
    assert made == spec
    assert _class_label(classes, made.split(":", 1)[1], made) == seed % len(classes)


def test_the_whole_class_hint_writes_an_ambiguous_name_unambiguously():
    from unlearnkit.data.splits import _class_label, class_token

    classes = ("1", "2", "3", "4")
    for index in range(4):
        for by in ("name", "index"):
            token = class_token(classes, index, by=by)
            assert _class_label(classes, token, f"class:{token}") == index
    assert class_token(classes, 0, by="name") == "=1" and class_token(classes, 3, by="name") == "4"
    assert class_token(("cat", "dog"), 1, by="name") == "dog"
