"""dataset=csv and dataset=expression: reading a user's file, the safe formula evaluator,
invisible standardisation, and both through the CLI.

    .venv/bin/python -m pytest tests/test_own_data.py -q      # ~25 s on 2 cores (3 CLI runs)
"""
from __future__ import annotations

import pickle
import re
import shlex
import sys

import pytest
import torch
from matplotlib.mathtext import MathTextParser

from conftest import read_metrics, run_cli
from hydrafit.cli.train import quote_formulas
from hydrafit.config.errors import ConfigError
from hydrafit.config.expression import Expression, ExpressionError, quote_formula
from test_eval import readme_commands

SHORT = ("trainer.max_epochs=5", "callbacks.fit_plot.n_images=0", "logger=none")

# --- the formula evaluator -------------------------------------------------------------------

REFUSED = [  # (formula, the reason the message must give)
    ("__import__('os')", "only the functions below may be called"),
    ("x.__class__", "attribute access"),
    ("open('f')", "only the functions below may be called"),
    ("(lambda: 1)()", "only the functions below may be called"),
    ("lambda: 1", "lambdas"),
    ("[1][0]", "subscripts"),
    ("x[0]", "subscripts"),
    ("import os", "is not a formula"),
    ("y + 1", "unknown name"),
    ("sin(x, 2)", "sin takes exactly one argument"),
    ("sin(x=1)", "sin takes exactly one argument"),
    ("'a' * 3", "only real numbers are constants"),
    ("True + x", "only real numbers are constants"),
    ("x if x else 1", "if/else"),
    ("[i for i in x]", "comprehensions"),
    ("x^2", "write powers as x**2"),
    ("sin(x),cos(x)", "quote each"),
    ("x" + "+x" * 600, "longer than 1000 characters"),
]


@pytest.mark.parametrize("text,reason", REFUSED, ids=[t[:20] for t, _ in REFUSED])
def test_formula_outside_the_whitelist_is_refused_with_the_reason(text, reason):
    with pytest.raises(ExpressionError, match="^.*" + reason.replace("(", r"\(").replace("*", r"\*")):
        Expression(text)


def test_accepted_formula_evaluates_like_torch_and_pickles():
    x = torch.linspace(-3, 3, 101).unsqueeze(1)
    formula = Expression("sin(3*x)+0.5*x")
    assert torch.equal(formula(x), torch.sin(3 * x) + 0.5 * x)
    assert torch.equal(pickle.loads(pickle.dumps(formula))(x), formula(x))  # DDP spawn, checkpoints
    assert torch.equal(Expression("2")(x), torch.full_like(x, 2.0))  # no x: still one value per x
    assert torch.allclose(Expression("exp(-x**2/2) / sqrt(2*pi)")(x),
                          torch.exp(-x ** 2 / 2) / (2 * torch.pi) ** 0.5)
    assert torch.isinf(Expression("9**9**9**9")(x)).all()  # float arithmetic: inf, not a hang


@pytest.mark.parametrize("text,label", [
    ("sin(3*x)+0.5*x", r"y = \sin(3 \cdot x) + 0.5 \cdot x"),
    ("-(x+1)**2/x", r"y = \frac{-(x + 1)^{2}}{x}"),
    ("x - (-1)", "y = x - (-1)"),
    ("sqrt(abs(x)) + sigmoid(x) % 2", r"y = \sqrt{|x|} + \mathrm{sigmoid}(x) \ \mathrm{mod}\  2"),
])
def test_plot_label_is_valid_mathtext(text, label):
    assert str(Expression(text)) == label
    MathTextParser("agg").parse(f"${label}$")  # raises on what matplotlib cannot draw


def test_formula_typed_on_the_command_line_is_quoted_for_hydra(monkeypatch):
    seen = []
    entry = quote_formulas(lambda: seen.extend(sys.argv[1:]))
    monkeypatch.setattr(sys, "argv", ["hydrafit-train", "dataset.expr=sin(3*x) + 0.5*x",
                                      "dataset.n_points=256", "dataset.expr='sin(x)','cos(x)'"])
    entry()
    assert seen == ["dataset.expr='sin(3*x) + 0.5*x'", "dataset.n_points=256",
                    "dataset.expr='sin(x)','cos(x)'"]  # an already quoted sweep is left alone
    assert quote_formula('dataset.expr="sin(x)","cos(x)"') == 'dataset.expr="sin(x)","cos(x)"'
    assert quote_formula("dataset.expr=__import__('os')") == 'dataset.expr="__import__(\'os\')"'
    assert quote_formula("model.activation=tanh") == "model.activation=tanh"


# --- reading a CSV -------------------------------------------------------------------------


def from_csv(tmp_path, text: str, **options):
    """data.from_csv on a file holding `text`. The path is absolute: in-process, a relative one
    would be resolved against the launch dir of whichever test last set Hydra's config (the CLI
    tests resolve relative paths as users do)."""
    from hydrafit.data import from_csv as load

    (tmp_path / "data.csv").write_text(text)
    return load(str(tmp_path / "data.csv"), seed=0, **{"x": "x", "y": "y", "val_fraction": 0.0, **options})


def test_columns_by_name_or_index_header_detected_blank_lines_and_bom_ignored(tmp_path):
    named = from_csv(tmp_path, "\ufeffdate,y,x\n2025-01-01,10,1\n\n2025-01-02,20,2\n")
    assert named.x_train.ravel().tolist() == [1, 2] and named.y_train.ravel().tolist() == [10, 20]
    assert named.truth is None and named.axis_labels == ("x", "y")
    indexed = from_csv(tmp_path, "1,10\n2,20\n3,30\n", x=0, y=1)
    assert indexed.x_train.ravel().tolist() == [1, 2, 3] and indexed.x_range == (1, 3)


@pytest.mark.parametrize("text,options,message", [
    ("x,y\n1,2\n2,abc\n", {}, "dataset.path: line 3 of data.csv: the dataset.y column (y) is 'abc', not a finite number; fix the file, or drop such rows with dataset.drop_invalid=true"),
    ("x,y\n1,2\n2\n", {}, "line 3 of data.csv: the dataset.y column (y) is missing"),
    ("x,y\n1,2\n,3\n", {}, "line 3 of data.csv: the dataset.x column (x) is missing"),
    ("x,y\n1,2\n2,nan\n", {}, "line 3 of data.csv: the dataset.y column (y) is 'nan'"),
    ("x,y\n1,2\n2,inf\n", {}, "is 'inf', not a finite number"),
    ("time,value\n1,2\n", {}, "dataset.x: no column 'x' in data.csv; its columns are: time, value"),
    ("1,2\n2,3\n", {}, "dataset.x: no column 'x' in data.csv: it has no header row"),
    ("a,b\n1,2\n", {"x": 0, "y": 2}, "dataset.y: column index 2 is out of range; data.csv has 2 columns: a, b"),
    ("x,y\n", {}, "has 0 usable rows"),
    ("x,y\n1,2\n2,3\n3,4\n", {"val_fraction": 0.5}, "leaves 1 to train on (need 2)"),
    ("", {}, "dataset.path: data.csv is empty"),
])
def test_unusable_file_is_refused_naming_the_key_and_the_line(tmp_path, text, options, message):
    with pytest.raises(ConfigError) as error:
        from_csv(tmp_path, text, **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_file_names_where_it_looked(tmp_path):
    from hydrafit.data import from_csv as load

    with pytest.raises(ConfigError, match=re.escape(f"dataset.path: no file '{tmp_path}/nope.csv' (looked for")):
        load(str(tmp_path / "nope.csv"), x="x", y="y", seed=0)


def test_drop_invalid_keeps_the_good_rows_and_warns_with_the_lines(tmp_path, caplog):
    text = "x,y\n1,2\n2,abc\n3,\n4,5\nfoo,6\n"
    datamodule = from_csv(tmp_path, text, drop_invalid=True)
    assert datamodule.x_train.ravel().tolist() == [1, 4] and datamodule.y_train.ravel().tolist() == [2, 5]
    assert "Dropped 3 invalid rows of data.csv (lines 3, 4, 6)" in caplog.text


# --- invisible standardisation ---------------------------------------------------------------


def test_standardised_model_speaks_the_datas_units(tmp_path):
    from hydrafit.report.figure import draw_fit
    from hydrafit.models import Regressor, Standardized

    rows = "\n".join(f"{1000 + 10 * i},{500 + 3 * i}" for i in range(50))
    datamodule = from_csv(tmp_path, "year,price\n" + rows, x="year", y="price",
                          val_fraction=0.2, baseline_degree=1)
    scaling = datamodule.scaling
    assert scaling["x_mean"] == pytest.approx(datamodule.x_train.double().mean().item())
    assert scaling["y_std"] == pytest.approx(datamodule.y_train.double().std(unbiased=False).item())
    module = Regressor(MLP, SGD, scaling=scaling)
    assert isinstance(module.net, Standardized)
    torch.nn.init.zeros_(module.net.net[-1].weight)
    torch.nn.init.zeros_(module.net.net[-1].bias)  # inner net outputs 0 = the mean, in the data's units
    assert torch.allclose(module.net(datamodule.x_train), torch.full_like(datamodule.y_train, scaling["y_mean"]))
    ax = draw_fit(module.net, datamodule, 3).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("year", "price")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "data points", "validation points", "model prediction", "least-squares polynomial"]
    assert ax.get_title().startswith("epoch 3: train MSE ") and ", val MSE " in ax.get_title()


MLP = {"_target_": "hydrafit.models.mlp", "hidden_dims": [8], "activation": "tanh"}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}


def fit_in_process(x: torch.Tensor, y: torch.Tensor, epochs: int = 5):
    """A Regressor trained on standardised (x, y) with plain SGD, as hydrafit-train would."""
    import pytorch_lightning as pl

    from hydrafit.data import PointsDataModule
    from hydrafit.models import Regressor

    datamodule = PointsDataModule(x, y, seed=0, standardize=True)
    torch.manual_seed(0)
    module = Regressor(MLP, SGD, scaling=datamodule.scaling)
    pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(module, datamodule=datamodule)
    return module


@pytest.mark.filterwarnings("ignore:Total length:UserWarning", "ignore:.*LeafSpec")  # as train() does
def test_standardised_training_does_not_depend_on_the_datas_units():
    """The same data in other units (x in ms instead of s, y in mK and shifted) trains the
    inner net to the same weights with the same SGD learning rate: the loss minimised is the
    MSE in standard units, so units cannot make a run diverge or crawl."""
    x = torch.linspace(0, 3, 64).unsqueeze(1)
    y = torch.sin(2 * x)
    seconds, millis = fit_in_process(x, y), fit_in_process(1000 * x + 5, 1000 * y - 273)
    for a, b in zip(seconds.net.net.parameters(), millis.net.net.parameters()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    assert not torch.equal(next(seconds.net.net.parameters()), next(fit_in_process(x, y, 1).net.net.parameters()))


# --- through the CLI ---------------------------------------------------------------------------


def test_readme_formula_command_trains_with_truth_metrics(tmp_path):
    line = next(c for c in readme_commands() if "dataset=expression" in c)
    args = shlex.split(line)[1:]
    assert args == ["dataset=expression", "dataset.expr=sin(3*x) + 0.5*x", "dataset.n_points=256"]
    run = tmp_path / "run"
    run_cli(*args, *SHORT[1:], f"hydra.run.dir={run}", cwd=tmp_path)  # all 250 epochs: ~1.5 s
    metrics = read_metrics(run)
    assert set(metrics) >= {"train/mse", "truth/rmse", "baseline/truth_rmse"}
    assert metrics["status"] == "completed" and metrics["epochs"] == 250
    assert metrics["truth/rmse"] == pytest.approx(0.222566, rel=0.02)  # the README's 0.223
    assert "expr: sin(3*x) + 0.5*x" in (run / ".hydra" / "config.yaml").read_text()
    # the truth metric is that of the formula: recompute it from the checkpoint in-process
    from hydrafit.data import expression
    from hydrafit.metrics import final_metrics
    from hydrafit.models import Regressor

    module = Regressor.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    datamodule = expression("sin(3*x) + 0.5*x", n_points=256, x_range=[-3, 3], noise_std=0.1, seed=12345,
                            baseline_degree=5)
    assert final_metrics(module.net, datamodule)["truth/rmse"] == metrics["truth/rmse"]


@pytest.mark.parametrize("args,message", [
    (("dataset=expression", "dataset.expr=__import__('os').system('touch pwned')"),  # refused by validate
     "hydrafit-train: error: dataset.expr: '__import__('os').system('touch pwned')' is not allowed"),
    (("dataset=csv", "dataset.path=rows.csv", "dataset.x=t", "dataset.y=v"),  # by from_csv, in build
     "hydrafit-train: error: dataset.path: line 3 of rows.csv: the dataset.y column (v) is 'n/a', not a finite number"),
], ids=["unsafe-formula", "bad-row"])
def test_bad_own_data_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "rows.csv").write_text("t,v\n1,2\n2,n/a\n3,4\n4,5\n")
    proc = run_cli(*args, *SHORT, "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("overrides,message", [
    (("dataset=csv",), "dataset.path: required: the CSV file to fit"),
    (("dataset=csv", "dataset.path=a.csv", "dataset.x=[1]"), "dataset.x must be a column name or a 0-based column index"),
    (("dataset=csv", "dataset.path=a.csv", "dataset.drop_invalid=maybe"), "dataset.drop_invalid must be true or false"),
    (("dataset=csv", "dataset.path=a.csv", "dataset.val_fraction=1"), "dataset.val_fraction=1 leaves no training point"),
    (("dataset=csv", "dataset.path=a.csv", "dataset.encoding=klingon"), "dataset.encoding: unknown encoding 'klingon'"),
    (("dataset=csv", "dataset.path=a.csv", "dataset.delimiter=ab"), "dataset.delimiter must be null (sniffed), tab or one character"),
    (("dataset=csv", "dataset.path=a.csv", "dataset.decimal=x"), "dataset.decimal must be auto, '.' or ','"),
    (("dataset=expression", "dataset.expr=\"open('f')\""), "dataset.expr: 'open('f')' is not allowed"),
    (("dataset=expression", "+dataset.path=a.csv"), "dataset.path: unknown key"),  # a csv key on a formula
])
def test_bad_own_data_config_is_refused_by_validation(tmp_path, overrides, message):
    """In-process, fast; the CLI turns these into one line and exit 2 like any ConfigError."""
    from hydrafit.config.validate import validate
    from test_configs import compose_run

    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        validate(compose_run(tmp_path, *overrides))


def test_a_formula_not_finite_on_the_range_and_a_metric_not_reported_are_refused(tmp_path):

    from hydrafit.data import expression
    from hydrafit.engine.single import check_optimized_metric

    with pytest.raises(ConfigError, match=re.escape("dataset.expr: 'log(x)' is not finite everywhere on "
                                                    "dataset.x_range=[-3.0, 3.0] (e.g. at x = -3)")):
        expression("log(x)", n_points=16, x_range=[-3, 3], noise_std=0.1, seed=0)
    datamodule = from_csv(tmp_path, "x,y\n1,2\n2,3\n3,4\n")
    check_optimized_metric("train/mse", datamodule)
    for name, hint in (("val/mse", "; val/ metrics need dataset.val_fraction > 0"), ("truth/rmse", "")):
        with pytest.raises(ConfigError) as error:
            check_optimized_metric(name, datamodule)
        assert str(error.value) == (f"optimized_metric: this run does not report '{name}'; "
                                    f"it reports train/mse, train/loss{hint}")
