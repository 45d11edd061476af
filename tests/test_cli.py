"""The command line: demo, validate (with --write-manifest), predict, serve's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pytest
import yaml
from click.testing import CliRunner

from modelserve.cli import main

from . import models


def test_demo_trains_servable_models(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["demo", "--models-dir", str(tmp_path / "m"), "--no-serve"])
    assert result.exit_code == 0, result.output
    for name in ("iris", "breast-cancer"):
        manifest = yaml.safe_load((tmp_path / "m" / name / "model.yaml").read_text())
        assert manifest["sha256"], "demo artifacts are pinned"
    check = runner.invoke(main, ["validate", str(tmp_path / "m")])
    assert check.exit_code == 0, check.output
    assert "ok   iris v1" in check.output and "ok   breast-cancer v1" in check.output


def test_validate_write_manifest_infers_signature_and_pins(
    runner: CliRunner, tmp_path: Path
) -> None:
    trained = models.forest()
    vdir = tmp_path / "forest" / "1"
    vdir.mkdir(parents=True)
    joblib.dump(trained.model, vdir / "model.joblib")
    result = runner.invoke(main, ["validate", str(tmp_path), "--write-manifest"])
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load((tmp_path / "forest" / "model.yaml").read_text())
    assert manifest["runtime"] == "auto"  # compiled to ONNX when it gives the same answers
    assert manifest["task"] == "classification"
    assert [f["name"] for f in manifest["inputs"]] == [f"x{i}" for i in range(30)]
    assert manifest["sha256"] == {"1/model.joblib": models.sha256(vdir / "model.joblib")}
    # The pins now protect the artifact.
    joblib.dump(models.iris().model, vdir / "model.joblib")
    failed = runner.invoke(main, ["validate", str(tmp_path)])
    assert failed.exit_code == 1
    assert "sha256 mismatch" in failed.output


def test_single_file_write_manifest_makes_a_model_folder(runner: CliRunner, tmp_path: Path) -> None:
    trained = models.iris()
    joblib.dump(trained.model, tmp_path / "trained_model.pkl")
    joblib.dump(trained.preprocessor, tmp_path / "scaler.pkl")
    result = runner.invoke(
        main,
        [
            "validate",
            str(tmp_path / "trained_model.pkl"),
            "--preprocessor",
            str(tmp_path / "scaler.pkl"),
            "--write-manifest",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load((tmp_path / "model.yaml").read_text())
    assert manifest["artifact"] == "trained_model.pkl" and manifest["preprocessor"] == "scaler.pkl"
    assert set(manifest["sha256"]) == {"trained_model.pkl", "scaler.pkl"}
    row = json.dumps({f"x{i}": v for i, v in enumerate(trained.x[100])})
    out = runner.invoke(main, ["predict", str(tmp_path), row])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["prediction"] == trained.expected(trained.x[100:101])[0][0]


def test_predict_one_and_batch(runner: CliRunner, repo: Path) -> None:
    trained = models.iris()
    row = models.features_of(trained, trained.x[120])
    one = runner.invoke(main, ["predict", str(repo), json.dumps(row), "--model", "iris"])
    assert one.exit_code == 0, one.output
    assert json.loads(one.output)["prediction"] == trained.expected(trained.x[120:121])[0][0]
    batch = runner.invoke(
        main,
        ["predict", str(repo), "-", "--model", "iris"],
        input=json.dumps({"instances": [row, row]}),
    )
    assert batch.exit_code == 0, batch.output
    assert len(json.loads(batch.output)["predictions"]) == 2


def test_predict_reports_every_problem(runner: CliRunner, repo: Path) -> None:
    result = runner.invoke(main, ["predict", str(repo), '{"sepal_length": "x"}', "--model", "iris"])
    assert result.exit_code == 1
    assert "petal_width: is required" in result.output
    assert 'sepal_length: is a string ("x"), not a number' in result.output


def test_serve_refuses_a_missing_keys_file(runner: CliRunner, repo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "keys.toml"
    result = runner.invoke(main, ["serve", str(repo)], env={"MODELSERVE_KEYS_FILE": str(missing)})
    assert result.exit_code == 2
    assert f"MODELSERVE_KEYS_FILE: {missing} does not exist" in result.output
    assert "modelserve keys create" in result.output


def test_keys_create_list_revoke(runner: CliRunner, tmp_path: Path) -> None:
    from modelserve.keys import hash_key
    from modelserve.keys import read_keys

    path = tmp_path / "keys.toml"
    env = {"MODELSERVE_KEYS_FILE": str(path)}
    made = runner.invoke(main, ["keys", "create", "ci", "--model", "iris"], env=env)
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("ms_") and len(key) > 40
    assert "not shown again" in made.stderr
    admin = runner.invoke(
        main, ["keys", "create", "ops", "--scope", "admin", "--scope", "predict"], env=env
    )
    assert admin.exit_code == 0, admin.output
    text = path.read_text()
    assert key not in text and hash_key(key) in text  # only the hash is stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    (ci,) = [r for r in read_keys(path) if r.name == "ci"]
    assert ci.scopes == {"predict"} and ci.models == {"iris"} and ci.created is not None

    listed = runner.invoke(main, ["keys", "list", "--keys-file", str(path)])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCOPES", "MODELS", "CREATED"]
    assert lines[1].split()[:3] == ["ci", "predict", "iris"]
    assert lines[2].split()[:3] == ["ops", "admin,predict", "*"]
    assert "sha256" not in listed.output and key not in listed.output

    again = runner.invoke(main, ["keys", "create", "ci"], env=env)
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(main, ["keys", "revoke", "ci"], env=env).exit_code == 0
    assert [r.name for r in read_keys(path)] == ["ops"]
    gone = runner.invoke(main, ["keys", "revoke", "ci"], env=env)
    assert gone.exit_code == 2 and "No key named 'ci'" in gone.output


def test_keys_refuse_bad_input(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    env = {"MODELSERVE_KEYS_FILE": str(path)}
    bad_name = runner.invoke(main, ["keys", "create", "../x"], env=env)
    assert bad_name.exit_code == 2 and "Invalid key name" in bad_name.output
    admin_model = runner.invoke(main, ["keys", "create", "a", "--scope", "admin", "-h"], env=env)
    assert admin_model.exit_code == 0  # help works
    limited = runner.invoke(
        main, ["keys", "create", "a", "--scope", "admin", "--model", "iris"], env=env
    )
    assert limited.exit_code == 2 and "predict scope" in limited.output
    no_file = runner.invoke(main, ["keys", "list"])
    assert no_file.exit_code == 2 and "--keys-file" in no_file.output
    assert not path.exists()


def test_serve_refuses_when_no_model_can_load(runner: CliRunner, tmp_path: Path) -> None:
    model_dir = models.write_model(tmp_path, "iris", models.iris())
    (model_dir / "1" / "model.joblib").write_bytes(b"tampered")
    result = runner.invoke(main, ["serve", str(tmp_path)], env={"MODELSERVE_SECRET_KEY": "k" * 32})
    assert result.exit_code == 2
    assert "sha256 mismatch for 1/model.joblib" in result.output


def test_optimize_writes_a_compiled_version(runner: CliRunner, tmp_path: Path) -> None:
    from modelserve.app import create_app
    from modelserve.settings import ServerSettings

    trained = models.forest()
    models.write_model(tmp_path, "forest", trained, manifest={"runtime": "auto"})
    result = runner.invoke(main, ["optimize", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "forest" / "2" / "model.onnx").is_file()
    assert not list((tmp_path / "forest").glob(".optimize-*"))
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path))
    meta = app.test_client().get("/models/forest").json
    assert meta["version"] == "2" and meta["runtime"]["runtime"] == "onnx"
    x = trained.x[:40]
    body = app.test_client().post("/predict_batch", json={"instances": x.tolist()}).json
    assert [p["prediction"] for p in body["predictions"]] == trained.model.predict(x).tolist()


def test_optimize_explains_what_cannot_be_compiled(runner: CliRunner, tmp_path: Path) -> None:
    models.write_model(tmp_path, "iris", models.iris())  # runtime: sklearn (not compiled)
    result = runner.invoke(main, ["optimize", str(tmp_path)])
    assert result.exit_code == 1
    assert "optimize compiles scikit-learn models (runtime: auto)" in result.output


def test_dot_is_the_model_folder_it_names(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``validate --write-manifest`` beside a single file makes its folder a model folder; the
    next step, ``modelserve serve .`` from inside it, used to find a model named ''."""
    folder = tmp_path / "iris"
    folder.mkdir()
    joblib.dump(models.iris().model, folder / "model.pkl")
    monkeypatch.chdir(folder)
    assert runner.invoke(main, ["validate", "model.pkl", "--write-manifest"]).exit_code == 0
    result = runner.invoke(main, ["validate", "."])
    assert result.exit_code == 0, result.output
    assert "ok   iris v1" in result.output


def _iris_csv(path: Path, shift: float = 0.0) -> Path:
    trained = models.iris()
    lines = [",".join((*models.IRIS_FEATURES, "species"))]
    for x, label in zip(trained.x, trained.expected()[0], strict=True):
        lines.append(",".join([str(x[0]), str(x[1] + shift), str(x[2]), str(x[3]), str(label)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_validate_reference_writes_a_profile_next_to_the_artifact(
    runner: CliRunner, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris())
    models.write_model(root, "other", models.iris())
    data = _iris_csv(tmp_path / "iris.csv")
    several = runner.invoke(main, ["validate", str(root), "--reference", str(data)])
    assert several.exit_code == 2 and "with --model" in several.output
    result = runner.invoke(
        main, ["validate", str(root), "--reference", str(data), "--model", "iris"]
    )
    assert result.exit_code == 0, result.output
    profile = json.loads((root / "iris" / "1" / "reference.json").read_text())
    assert profile["rows"] == 150 and profile["source"] == "iris.csv"
    assert [f["name"] for f in profile["features"]] == list(models.IRIS_FEATURES)
    assert profile["predictions"]["kind"] == "categorical"
    assert sorted(profile["predictions"]["categories"]) == [0, 1, 2]
    assert profile["artifacts"] == {
        "1/model.joblib": models.sha256(root / "iris" / "1" / "model.joblib"),
        "1/scaler.joblib": models.sha256(root / "iris" / "1" / "scaler.joblib"),
    }

    (tmp_path / "bad.csv").write_text("sepal_length,sepal_width\n1,2\n")
    bad = runner.invoke(
        main, ["validate", str(root), "--reference", str(tmp_path / "bad.csv"), "--model", "iris"]
    )
    assert bad.exit_code == 2 and "no column(s) petal_length, petal_width" in bad.output
    (tmp_path / "word.csv").write_text(",".join(models.IRIS_FEATURES) + "\n1,2,x,4\n")
    word = runner.invoke(
        main, ["validate", str(root), "--reference", str(tmp_path / "word.csv"), "--model", "iris"]
    )
    assert (
        word.exit_code == 2
        and "word.csv line 2, column petal_length: 'x' is not a number" in word.output
    )


def test_drift_command_reports_the_logged_traffic(runner: CliRunner, tmp_path: Path) -> None:
    from modelserve.api._handlers import EXTENSION_KEY
    from modelserve.app import create_app
    from modelserve.settings import ServerSettings

    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris())
    result = runner.invoke(
        main, ["validate", str(root), "--reference", str(_iris_csv(tmp_path / "a.csv"))]
    )
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{tmp_path / 'log.db'}"
    app = create_app(ServerSettings(profile="testing", model_path=root, prediction_log=url))
    trained = models.iris()
    shifted = [
        {**models.features_of(trained, x), "sepal_width": float(x[1]) + 2} for x in trained.x
    ]
    assert app.test_client().post("/predict_batch", json={"instances": shifted}).status_code == 200
    app.extensions[EXTENSION_KEY].log.close()

    report = runner.invoke(main, ["drift", str(root), "--log", url, "--window", "600"])
    assert report.exit_code == 0, report.output
    lines = {
        line.split()[0]: line for line in report.output.splitlines()[1:] if line.startswith("  ")
    }
    assert "150 row(s) in 1 logged request(s) over the last 600 s" in report.output
    assert lines["sepal_width"].endswith("DRIFT")
    assert not lines["petal_length"].endswith("DRIFT")
    as_json = runner.invoke(main, ["drift", str(root), "--log", url, "--json"])
    assert json.loads(as_json.stdout)["drifted"] == ["sepal_width"]

    assert runner.invoke(main, ["drift", str(root)]).exit_code == 2  # no log named
