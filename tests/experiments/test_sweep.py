"""The sweep runner, the table printer and the registry behind ``hpn bench NAME``."""

import io

import pytest

from hpn.experiments import registry, sweep, table


def test_run_parallel_names_the_failed_run(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text("data: {name: clusters, options: {num_classes: 3, samples_per_class: 9}}\n")
    with pytest.raises(RuntimeError, match="k-bad.*failed.*k-bad.log"):
        sweep.run_parallel([(str(cfg), ["head.kind=nonsense"], 0, tmp_path / "k-bad")], jobs=2)
    assert "head.kind" in (tmp_path / "k-bad.log").read_text()


@pytest.mark.parametrize("name", sweep.spec_names())
def test_every_spec_plans_with_its_defaults_and_declares_its_columns(name, tmp_path):
    spec = sweep.load_spec(name)
    context, rows = sweep.plan_sweep(spec, out_dir=str(tmp_path))
    assert rows and all(len(r.cases) == len(spec["seeds"]) for r in rows)
    folders = [c[3] for r in rows for c in r.cases]
    assert len(set(folders)) == len(folders)  # no two runs share a folder
    for column in spec["columns"]:
        for key in ("mean_sd", "mean", "per_seed"):
            assert column.get(key, next(iter(spec["metrics"]))) in spec["metrics"]
        assert table.fill(column["title"], context)
    assert not any(tmp_path.iterdir())  # planning runs nothing


def test_every_benchmark_has_a_subcommand_with_its_options():
    from hpn.cli import build_parser

    parser = build_parser()
    names = registry.benchmark_names()
    assert {"prototypes", "optima", "classification", "multitask", "clusters", "scale", "fuzz",
            "assignment", "longtail", "transfer", "sklearn", "glyphs"} <= set(names)  # fmt: skip
    for name in names:
        args, extra = parser.parse_known_args(["bench", name])
        assert args.bench == name and not extra
    args = parser.parse_args(["bench", "longtail", "--imbalance", "0.1", "--dims", "3,9", "a=1"])
    assert (args.imbalance, args.dims, args.overrides, args.jobs) == ("0.1", "3,9", ["a=1"], 1)
    args = parser.parse_args(
        ["bench", "transfer", "--target-option", "a=1", "--target-option", "b=x"]
    )
    assert args.target_option == ["a=1", "b=x"]


def test_an_option_of_another_benchmark_is_refused(capsys):
    from hpn.cli import main

    assert main(["bench", "prototypes", "--dims", "3"]) == 2
    assert "unrecognized arguments: --dims 3" in capsys.readouterr().err
    with pytest.raises(ValueError, match="has no option"):
        sweep.run_sweep("classification", weights=(0.5,), out=io.StringIO())


def test_micro_benchmark_options_default_to_the_functions_own(monkeypatch):
    from hpn.cli import main
    from hpn.experiments import scale

    seen = {}
    monkeypatch.setattr(scale, "scale_benchmark", lambda **kw: seen.update(kw))
    assert main(["bench", "scale", "--classes", "10,20"]) == 0
    assert seen["classes"] == [10, 20] and "device" not in seen  # the function's default
    assert main(["bench", "scale", "--classes", "10,x"]) == 2


def test_the_fuzz_exit_status_is_the_functions(monkeypatch):
    from hpn.cli import main
    from hpn.experiments import reliability

    monkeypatch.setattr(reliability, "fuzz_benchmark", lambda **kw: 1)
    assert main(["bench", "fuzz", "--n", "1"]) == 1


def test_templates_fill_dotted_paths_fallbacks_and_raw_values():
    context = {"cfg": {"data": {"options": {"num_classes": 7}}}, "t": 0.25, "opts": {}}
    assert table.fill("K = {cfg.data.options.num_classes|from the data}", context) == "K = 7"
    assert table.fill("{cfg.data.options.dims|300}", context) == "300"
    assert table.fill("{opts!e}|{t:g}", context) == "|0.25"
    assert table.fill(["{t}", 3, None], context) == [0.25, 3, None]
    with pytest.raises(KeyError, match="nope"):
        table.fill("{nope}", context)


def test_cells_blank_missing_values_and_declared_rows():
    row = {"kind": "static", "accs": [0.5, None], "moves": [3, None], "secs": [1.0, 3.0]}
    assert table.cell({"mean_sd": "accs"}, row) == "-"
    assert table.cell({"per_seed": "moves"}, row) == "3 / None"
    assert table.cell({"per_seed": "moves", "blank_when": {"kind": "static"}}, row) == "-"
    assert table.cell({"mean": "secs", "format": "{:.2f} s"}, row) == "2.00 s"
    with pytest.raises(ValueError, match="none of"):
        table.cell({"title": "x"}, row)


def test_a_finished_run_is_read_back_only_for_the_config_that_made_it(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(
        "data: {name: clusters, options: {num_classes: 3, samples_per_class: 20, dims: 4}}\n"
        "model: {backbone: mlp, options: {hidden: [8]}}\n"
        "optim: {epochs: 1}\n"
    )
    folder = tmp_path / "k3-s0"
    first = sweep.run_or_load(str(cfg), ["head.dims=2"], 0, folder)
    stamp = (folder / "results.json").stat().st_mtime_ns
    assert sweep.run_or_load(str(cfg), ["head.dims=2", "device=cpu"], 0, folder) == first
    assert (folder / "results.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"made with head.dims=2, but .* head.dims=3; move"):
        sweep.run_or_load(str(cfg), ["head.dims=3"], 0, folder)
    with pytest.raises(ValueError, match=r"made with seed=0, but .* seed=1"):
        sweep.run_or_load(str(cfg), ["head.dims=2"], 1, folder)


def test_two_metrics_of_one_report_function_keep_their_own_arguments(monkeypatch, tmp_path):
    """A scan-like and a style-group evaluation call one function with different overrides;
    each metric reads its own report, and each report is computed once."""
    calls = []

    def fake_evaluation(folder, overrides):
        calls.append(overrides)
        return {"accuracy": 0.5 if "data.options.degrade" in overrides else 0.9}

    monkeypatch.setitem(sweep.HOOKS, "evaluation_or_load", fake_evaluation)
    context = {
        "degraded": {"data.options.degrade": 1},
        "styles": {"data.options.test_group": "styles"},
    }
    case = ("cfg.yaml", [], 0, tmp_path / "run")
    reports: dict = {}

    def metric(arg):
        return {"key": "accuracy", "report": {"function": "evaluation_or_load", "args": [arg]}}

    values = [
        sweep._metric_value(metric(arg), case, {}, reports, context)
        for arg in ("degraded", "styles", "degraded")
    ]
    assert values == [0.5, 0.9, 0.5]
    assert calls == [context["degraded"], context["styles"]]


@pytest.mark.parametrize("spec", ["glyphs-fair", "glyphs-budget"])
def test_a_moved_bench_folder_draws_its_curves_from_where_it_is(tmp_path, spec):
    """The curves' run folders are where the runs are read from, not the ``out_dir`` their
    config.json recorded when they were trained (a copied or moved bench folder)."""
    metric = sweep.load_spec(spec)["metrics"]["folder"]
    moved = tmp_path / "moved" / "k7-softmax-s0"
    moved.mkdir(parents=True)
    (moved / "config.json").write_text('{"out_dir": "/elsewhere/k7-softmax-s0"}')
    case = ("cfg.yaml", [], 0, moved)
    assert sweep._metric_value(metric, case, {}, {}, {}) == str(moved)


def test_learning_curves_print_each_heads_curve_and_draw_them(tmp_path):
    from hpn.experiments.hooks import learning_curves

    header = "epoch,train_loss,val_loss,val_accuracy,val_mae,val_macro_f1,lr,seconds,steps\n"
    curves = {"softmax": [(0.5, 10.0), (0.75, 12.0)], "hpn": [(0.625, 4.0)]}
    rows = []
    for name, points in curves.items():
        folder = tmp_path / f"k7-{name}-s0"
        folder.mkdir()
        lines = [f"{e + 1},1,1,{acc},,0,0.1,{sec},100\n" for e, (acc, sec) in enumerate(points)]
        (folder / "metrics.csv").write_text(header + "".join(lines))
        (folder / "config.json").write_text('{"seed": 2}')  # the first seed the bench ran
        rows.append({"K": 7, "model": name, "folder": [str(folder)]})
    rows.append({"K": 7, "model": "unfinished", "folder": [None]})
    out = io.StringIO()
    learning_curves(rows, out)
    text = out.getvalue()
    assert "val_accuracy after each epoch at K = 7 (seed 2; steps" in text
    assert "| model | epoch 1 | epoch 2 |" in text
    # steps and seconds are summed over the epochs so far
    assert "| softmax | 0.5000 (100 steps, 10 s) | 0.7500 (200 steps, 22 s) |" in text
    assert "| hpn | 0.6250 (100 steps, 4 s) |  |" in text
    assert (tmp_path / "curves-k7.png").stat().st_size > 0


def test_an_override_the_benchmark_would_replace_is_refused(tmp_path):
    spec = sweep.load_spec("glyphs-fair")
    # head.dims is not set by a head name: it reaches every run
    _, rows = sweep.plan_sweep(spec, out_dir=str(tmp_path), overrides=["head.dims=128"],
                               heads=["data-neighbour_softmax"])  # fmt: skip
    assert rows[0].cases[0][1][0] == "head.dims=128"
    # the head name sets head.prototypes=data after it: refused, not silently replaced
    with pytest.raises(ValueError, match="head.prototypes=features:r would be replaced"):
        sweep.plan_sweep(spec, out_dir=str(tmp_path), overrides=["head.prototypes=features:r"],
                         heads=["data-neighbour_softmax"])  # fmt: skip


def test_the_budget_spec_takes_the_warmup_out_of_the_feature_priors_budget(tmp_path):
    spec = sweep.load_spec("glyphs-budget")
    _, rows = sweep.plan_sweep(spec, out_dir=str(tmp_path),
                               heads=["softmax", "features-neighbour_softmax"])  # fmt: skip
    configs = {r.fields["model"]: from_dict_config(r.cases[0]) for r in rows}
    softmax, features = configs["softmax"], configs["features-neighbour_softmax"]
    assert softmax.optim.epochs == 8 and softmax.optim.steps_per_epoch == 500
    assert features.head.prototypes == "features" and features.head.warmup_epochs == 1
    # warm-up epoch + its own epochs = the others' epochs, of the same number of steps
    assert features.head.warmup_epochs + features.optim.epochs == softmax.optim.epochs
    assert features.optim.steps_per_epoch == softmax.optim.steps_per_epoch


def from_dict_config(case):
    from hpn.training.run import load_config

    config, overrides, _, _ = case
    return load_config(config, overrides)
