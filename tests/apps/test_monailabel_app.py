"""The MONAI Label app: the bundle runner and studies helper (any env) and a real server over HTTP (``-m label``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from monai_anomaly.apps.monailabel.lib.runner import AnomalyBundleRunner, BundleError, restore_geometry
from monai_anomaly.apps.monailabel.lib.studies import convert_dicom_series, dicom_series_folders
from monai_anomaly.handlers.thresholds import load_fitted_threshold, load_volume_threshold
from monai_anomaly.transforms.io import LoadScan
from monai_anomaly.utils.errors import BadInputError

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "monai_anomaly" / "apps" / "monailabel"


def _fitted_threshold(bundle: Path) -> float:
    threshold, _ = load_fitted_threshold(bundle / "models" / "model.pt")
    return float(threshold.value)


def _check_result(result: dict, n_slices: int, bundle: Path) -> None:
    """The answer of the real bundle: top-5 % mean of the scored slices, the checkpoint's fitted thresholds."""
    assert isinstance(result["volume_score"], float)
    assert len(result["slice_scores"]) == n_slices
    kept = np.asarray(result["slice_scores"])[result["scored_slices"]]
    top = np.sort(kept)[::-1][: max(1, int(np.ceil(0.05 * len(kept))))]
    assert float(top.mean()) == pytest.approx(result["volume_score"], rel=1e-5)  # topk, k 0.05
    fitted = _fitted_threshold(bundle)
    assert result["threshold"]["value"] == pytest.approx(fitted) and result["threshold"]["method"] == "mean_std"
    vt, rule = load_volume_threshold(bundle / "models" / "model.pt")
    assert result["volume_threshold"] == pytest.approx(vt) and rule
    assert result["prediction"] == ("anomalous" if result["volume_score"] >= vt else "normal")
    assert result["bundle"] == "autoencoder_anomaly"
    assert result["bundle_version"] == json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    json.dumps(result)  # JSON-able


# --- the runner (no MONAI Label needed) ---------------------------------------------------------------------------


def test_nifti_heatmap_has_the_input_geometry(bundle: Path, studies: Path, tmp_path: Path) -> None:
    runner = AnomalyBundleRunner(bundle)
    out, result = runner.infer_to_file(studies / "vol.nii.gz", output_dir=tmp_path)
    src, heat = nib.load(studies / "vol.nii.gz"), nib.load(out)
    assert out.endswith(".nii.gz") and heat.shape == src.shape == (20, 18, 5)
    np.testing.assert_allclose(heat.affine, src.affine, atol=1e-5)  # oriented back from RAS to the file's LPS grid
    assert heat.get_fdata().min() >= 0 and result["map_max"] == pytest.approx(heat.get_fdata().max(), rel=1e-5)
    assert result["image_shape"] == result["map_shape"] == [20, 18, 5] and result["spatial_dims"] == 3
    _check_result(result, n_slices=5, bundle=bundle)
    # a file whose first two voxel axes are swapped w.r.t. RAS: the shapes are still both the file's, in one order
    swapped = tmp_path / "swapped.nii.gz"
    aff = src.affine[:, [1, 0, 2, 3]]
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj).transpose(1, 0, 2), aff), str(swapped))
    out2, result2 = runner.infer_to_file(swapped, output_dir=tmp_path)
    assert result2["image_shape"] == result2["map_shape"] == [18, 20, 5] == list(nib.load(out2).shape)


def test_heatmap_is_the_network_map_on_the_file_grid(bundle: Path, studies: Path) -> None:
    """The map voxel (i, j, k) belongs to file voxel (i, j, k): compare with the map computed in RAS and flipped."""
    runner = AnomalyBundleRunner(bundle)
    heat, _ = runner(studies / "vol.nii.gz")
    item = {"image": str(studies / "vol.nii.gz"), "volume_id": "vol", "label": -1}
    d = runner._load()["pre"](item)
    with torch.no_grad():
        out = runner._load()["inferer"](d["image"][None], runner._load()["network"], foreground=d["foreground"][None])
    ras_map = out["anomaly_map"][0]
    # the file is L-P-S (x and y flipped w.r.t. RAS): flipping the RAS map's first two axes gives the file's grid
    np.testing.assert_allclose(heat.numpy(), ras_map.flip(1, 2).numpy(), atol=1e-6)


def test_dicom_series_is_converted_once_and_scored(bundle: Path, studies: Path) -> None:
    assert dicom_series_folders(studies) == [studies / "series1"]
    (nifti,) = convert_dicom_series(studies)
    assert nifti == studies / "series1.nii.gz"
    dicom = LoadScan(orient=None)(studies / "series1")
    conv = nib.load(nifti)
    assert conv.shape == tuple(dicom.shape[1:]) == (20, 16, 4)
    np.testing.assert_allclose(conv.affine, dicom.affine.numpy(), atol=1e-5)
    np.testing.assert_allclose(conv.get_fdata(), dicom[0].numpy(), atol=1e-3)
    mtime = nifti.stat().st_mtime_ns
    assert convert_dicom_series(studies) == [nifti] and nifti.stat().st_mtime_ns == mtime  # not rewritten

    heat, result = AnomalyBundleRunner(bundle)(nifti)
    assert tuple(heat.shape[1:]) == conv.shape
    np.testing.assert_allclose(heat.affine.numpy(), conv.affine, atol=1e-5)
    _check_result(result, n_slices=4, bundle=bundle)
    heat_dicom, result_dicom = AnomalyBundleRunner(bundle)(studies / "series1")  # the folder itself works too
    assert result_dicom["volume_score"] == pytest.approx(result["volume_score"], rel=1e-4)
    np.testing.assert_allclose(heat_dicom.numpy(), heat.numpy(), atol=1e-4)


def test_png_image_gives_a_2d_heatmap(bundle: Path, studies: Path, tmp_path: Path) -> None:
    runner = AnomalyBundleRunner(bundle)
    out, result = runner.infer_to_file(studies / "pic.png", output_dir=tmp_path)
    assert nib.load(out).shape == (20, 24)  # rows, columns of the picture
    assert result["image_shape"] == result["map_shape"] == [20, 24] and result["spatial_dims"] == 2  # a 2D study
    _check_result(result, n_slices=1, bundle=bundle)
    png, result_png = runner.infer_to_file(studies / "pic.png", extension="png", output_dir=tmp_path)
    pixels = np.asarray(Image.open(png))
    assert pixels.shape == (20, 24) and pixels.dtype == np.uint8 and pixels.max() == 255
    step = result_png["map_max"] / 255.0  # an 8-bit PNG holds the map to within one grey level of its range
    np.testing.assert_allclose(pixels * step, nib.load(out).get_fdata(), atol=step)
    with pytest.raises(BadInputError, match="PNG heatmap needs a 2D image"):
        runner.infer_to_file(studies / "vol.nii.gz", extension=".png", output_dir=tmp_path)
    with pytest.raises(BadInputError, match="not supported"):
        runner.infer_to_file(studies / "vol.nii.gz", extension=".mha", output_dir=tmp_path)


def test_request_threshold_overrides_the_prediction(bundle: Path, studies: Path) -> None:
    runner = AnomalyBundleRunner(bundle)
    _, base = runner(studies / "vol.nii.gz")
    _, low = runner(studies / "vol.nii.gz", threshold=base["volume_score"] - 1e-3)
    _, high = runner(studies / "vol.nii.gz", threshold=base["volume_score"] + 1e-3)
    assert (low["prediction"], high["prediction"]) == ("anomalous", "normal")
    assert high["threshold"] == {"value": pytest.approx(base["volume_score"] + 1e-3), "method": "request"}
    assert high["volume_threshold"] == pytest.approx(base["volume_score"] + 1e-3)
    assert high["threshold_source"] == "request"
    assert base["threshold_source"] == "bundle"


def test_bad_images_name_the_file_and_the_problem(bundle: Path, studies: Path) -> None:
    runner = AnomalyBundleRunner(bundle)
    with pytest.raises(BadInputError, match=r"notes\.png: is not a PNG image: its content is text"):
        runner(studies / "notes.png")
    with pytest.raises(BadInputError, match=r"series4d\.nii\.gz: holds 3 volumes"):
        runner(studies / "series4d.nii.gz")
    with pytest.raises(BadInputError, match="no such file"):
        runner(studies / "missing.nii.gz")
    _, result = runner(studies / "vol.nii.gz")  # still serving after bad input
    _check_result(result, n_slices=5, bundle=bundle)


def test_broken_bundles_are_refused(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no configs/inference.json"):
        AnomalyBundleRunner(tmp_path)
    broken = tmp_path / "broken"
    (broken / "configs").mkdir(parents=True)
    (broken / "models").mkdir()
    (broken / "models" / "model.pt").write_bytes((bundle / "models" / "model.pt").read_bytes())
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    del config["postprocessing"]
    (broken / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="lacks postprocessing"):
        AnomalyBundleRunner(broken)
    (broken / "models" / "model.pt").unlink()
    with pytest.raises(BundleError, match="no weights"):
        AnomalyBundleRunner(broken)


def _variant(bundle: Path, dst: Path, postprocessing: list[dict]) -> Path:
    """A copy of the bundle's configs (no weights) with another postprocessing chain."""
    shutil.copytree(bundle / "configs", dst / "configs")
    config = json.loads((dst / "configs" / "inference.json").read_text())
    config["postprocessing"]["transforms"] = postprocessing
    (dst / "configs" / "inference.json").write_text(json.dumps(config))
    return dst


def test_postprocessing_may_read_pred_or_anomaly_map(bundle: Path, studies: Path, tmp_path: Path) -> None:
    """The bundle's postprocessing reads ``pred`` (MONAI's evaluator key: the inferer's map and slice scores); a map
    the postprocessing changes is the heatmap; the weights and the fitted threshold may come from another file."""
    ckpt = bundle / "models" / "model.pt"
    heat, base = AnomalyBundleRunner(bundle)(studies / "vol.nii.gz")
    score = json.loads((bundle / "configs" / "inference.json").read_text())["postprocessing"]["transforms"][0]
    assert score["keys"] == "pred"

    other = _variant(bundle, tmp_path / "by_name", [score])
    heat2, result = AnomalyBundleRunner(other, checkpoint=str(ckpt))(studies / "vol.nii.gz")
    assert result["volume_score"] == pytest.approx(base["volume_score"], rel=1e-6)
    assert result["threshold"]["value"] == pytest.approx(_fitted_threshold(bundle))  # read from ckpt, not other/
    np.testing.assert_allclose(heat2.numpy(), heat.numpy(), atol=1e-6)

    double = {"_target_": "Lambdad", "keys": "pred", "func": "$lambda m: m * 2"}
    doubled = _variant(bundle, tmp_path / "doubled", [score, double])  # the map for display, not the scores
    heat3, result = AnomalyBundleRunner(doubled, checkpoint=str(ckpt))(studies / "vol.nii.gz")
    assert result["volume_score"] == pytest.approx(base["volume_score"], rel=1e-6)
    np.testing.assert_allclose(heat3.numpy(), 2 * heat.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(heat3.affine.numpy(), heat.affine.numpy())


def test_postprocessing_that_breaks_the_contract_is_reported(bundle: Path, studies: Path, tmp_path: Path) -> None:
    ckpt = str(bundle / "models" / "model.pt")
    score = json.loads((bundle / "configs" / "inference.json").read_text())["postprocessing"]["transforms"][0]
    no_score = _variant(bundle, tmp_path / "no_score", [{"_target_": "Identityd", "keys": "pred"}])
    with pytest.raises(BundleError, match=r"gave no d\['result'\]\['volume_score'\]"):
        AnomalyBundleRunner(no_score, checkpoint=ckpt)(studies / "vol.nii.gz")
    drop = {"_target_": "DeleteItemsd", "keys": ["pred", "anomaly_map"]}
    no_map = _variant(bundle, tmp_path / "no_map", [score, drop])
    with pytest.raises(BundleError, match="postprocessing left no map"):
        AnomalyBundleRunner(no_map, checkpoint=ckpt)(studies / "vol.nii.gz")
    failing = _variant(bundle, tmp_path / "failing", [{**score, "keys": "no_such_key"}])
    with pytest.raises(BundleError, match="postprocessing failed: KeyError"):
        AnomalyBundleRunner(failing, checkpoint=ckpt)(studies / "vol.nii.gz")


def test_restore_geometry_resamples_a_resized_map() -> None:
    from monai.data import MetaTensor

    original = np.diag([2.0, 2.0, 2.0, 1.0])
    ref = MetaTensor(torch.zeros(1, 4, 4, 2), affine=torch.as_tensor(np.diag([4.0, 4.0, 2.0, 1.0])))
    ref.meta["original_affine"], ref.meta["spatial_shape"] = original, np.array([8, 8, 2])
    amap = MetaTensor(torch.ones(1, 4, 4, 2), affine=ref.affine)
    out = restore_geometry(amap, ref)
    assert tuple(out.shape) == (1, 8, 8, 2)
    np.testing.assert_allclose(out.affine.numpy(), original)
    assert float(out[0, 1:6, 1:6].min()) == pytest.approx(1.0)  # inside the old grid, the value is kept


# --- a real MONAI Label server ------------------------------------------------------------------------------------


def _monailabel_available() -> str | None:
    try:
        import monailabel.interfaces.app  # noqa: F401
    except Exception as e:  # not installed, or installed against the wrong numpy
        return f"monailabel is not importable ({type(e).__name__}: {e}); install the [label] extra (tox -e label)"
    return None


def readme_start_command(studies: Path, checkpoint: Path) -> list[str]:
    """The README's MONAI Label start command, word for word, with its example folder and checkpoint replaced by the
    test's. Its interpreter (``venv-label/bin/python``, relative to the repository) is used as written when that
    environment exists (CI creates it as the README says); elsewhere (``tox -e label``) the running one is used."""
    import shlex

    lines = [ln for ln in (REPO / "README.md").read_text().splitlines() if "start_server" in ln and "venv-label" in ln]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    assert words[0] == "venv-label/bin/python" and words[1:3] == ["-m", "monailabel.main"], words
    if not (REPO / words[0]).is_file():
        words[0] = sys.executable
    subs = {"/data/scans": str(studies), "runs/ae/models/model.pt": str(checkpoint)}
    assert set(subs) <= set(words), words
    return [subs.get(w, w) for w in words]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(bundle: Path, studies: Path, tmp_path: Path):
    """``monailabel start_server`` on 127.0.0.1 serving the tiny trained autoencoder bundle; yields the base URL."""
    import requests

    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(
        MONAI_LABEL_TASKS_TRAIN="false",
        MONAI_LABEL_TASKS_STRATEGY="false",
        MONAI_LABEL_TASKS_SCORING="false",
        MONAI_LABEL_DATASTORE_AUTO_RELOAD="false",
        MONAI_LABEL_SESSIONS="false",
        MONAI_LABEL_SESSION_PATH=str(tmp_path / "sessions"),
        OMP_NUM_THREADS="1",
    )
    cmd = readme_start_command(studies, bundle / "models" / "model.pt")
    cmd += ["--conf", "device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    log_config = {  # to the console: MONAI Label's default writes <app>/logs/app.log into the source tree
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "[%(asctime)s] [%(levelname)s] (%(name)s) - %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"level": "INFO", "handlers": ["console"]},
    }
    (tmp_path / "logging.json").write_text(json.dumps(log_config))
    cmd += ["--log_config", str(tmp_path / "logging.json")]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)  # the README runs it there
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited ({proc.returncode}):\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/info/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"server did not start in 180 s:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.mark.label
@pytest.mark.skipif(_monailabel_available() is not None, reason=str(_monailabel_available()))
def test_server_serves_heatmaps_scores_and_clear_errors(
    server: str, bundle: Path, studies: Path, tmp_path: Path
) -> None:
    import requests
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    info = requests.get(f"{server}/info/", timeout=30).json()
    assert info["models"]["autoencoder_anomaly"]["type"] == "others"
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    assert info["models"]["autoencoder_anomaly"]["version"] == version
    images = requests.get(f"{server}/datastore/?output=all", timeout=30).json()
    assert {"vol", "series1", "pic"} <= set(images["objects"])  # the DICOM series is listed as series1

    # NIfTI volume, default answer: multipart with the JSON params and the heatmap file
    r = requests.post(f"{server}/infer/autoencoder_anomaly", params={"image": "vol"}, timeout=120)
    assert r.status_code == 200, r.text
    parts = {p.headers[b"Content-Disposition"].decode().split('name="')[1].split('"')[0]: p for p in
             MultipartDecoder(r.content, r.headers["Content-Type"]).parts}  # fmt: skip
    result = json.loads(parts["params"].text)
    _check_result(result, n_slices=5, bundle=bundle)  # the checkpoint's fitted threshold
    (tmp_path / "vol_map.nii.gz").write_bytes(parts["image"].content)
    heat, src = nib.load(tmp_path / "vol_map.nii.gz"), nib.load(studies / "vol.nii.gz")
    assert heat.shape == src.shape
    np.testing.assert_allclose(heat.affine, src.affine, atol=1e-4)

    # DICOM series: the heatmap has the series' geometry
    r = requests.post(
        f"{server}/infer/autoencoder_anomaly", params={"image": "series1", "output": "image"}, timeout=120
    )
    assert r.status_code == 200, r.text
    (tmp_path / "series_map.nii.gz").write_bytes(r.content)
    dicom = LoadScan(orient=None)(studies / "series1")
    heat = nib.load(tmp_path / "series_map.nii.gz")
    assert heat.shape == tuple(dicom.shape[1:])
    np.testing.assert_allclose(heat.affine, dicom.affine.numpy(), atol=1e-4)

    # PNG with a threshold from the request, JSON only
    form = {"params": json.dumps({"threshold": 1e-6})}
    query = {"image": "pic", "output": "json"}
    r = requests.post(f"{server}/infer/autoencoder_anomaly", params=query, data=form, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["prediction"] == "anomalous" and r.json()["volume_threshold"] == 1e-6
    assert r.json()["threshold"] == {"value": 1e-6, "method": "request"} and len(r.json()["slice_scores"]) == 1

    # bad requests: a clear message, and the server keeps serving
    bad = {
        "nope": (404, "unknown image id 'nope'"),
        "notes": (400, "notes.png: is not a PNG image"),
        "series4d": (400, "series4d.nii.gz: holds 3 volumes"),
    }
    for image, (status, message) in bad.items():
        r = requests.post(f"{server}/infer/autoencoder_anomaly", params={"image": image}, timeout=60)
        assert r.status_code == status and message in r.json()["detail"], (image, r.status_code, r.text)
    r = requests.post(f"{server}/infer/no_such_model", params={"image": "vol"}, timeout=60)
    assert r.status_code == 404 and "unknown model 'no_such_model'" in r.json()["detail"]
    r = requests.post(f"{server}/infer/autoencoder_anomaly", params={"image": "vol"}, data={"params": "{threshold: 1"})
    assert r.status_code == 400 and "params is not valid JSON" in r.json()["detail"], r.text
    r = requests.post(f"{server}/infer/autoencoder_anomaly", params={"image": "vol"}, data={"params": "[1, 2]"})
    assert r.status_code == 400 and "JSON object" in r.json()["detail"], r.text
    r = requests.post(f"{server}/infer/autoencoder_anomaly", timeout=60)  # no image at all
    assert r.status_code == 400 and "no image given" in r.json()["detail"], r.text
    r = requests.post(f"{server}/infer/autoencoder_anomaly", params={"image": "vol", "output": "json"}, timeout=120)
    assert r.status_code == 200 and r.json()["volume_score"] == pytest.approx(result["volume_score"])


@pytest.mark.label
@pytest.mark.skipif(_monailabel_available() is not None, reason=str(_monailabel_available()))
def test_checkpoint_conf_serves_weights_kept_outside_the_bundle(bundle: Path, tmp_path: Path) -> None:
    from monai_anomaly.apps.monailabel.main import served_models

    ckpt = bundle / "models" / "model.pt"
    assert served_models({"models": str(bundle)}, APP_DIR) == [(bundle.resolve(), bundle.resolve() / "models/model.pt")]
    configs_only = tmp_path / "autoencoder_anomaly"
    shutil.copytree(bundle / "configs", configs_only / "configs")
    conf = {"models": str(configs_only), "checkpoint": str(ckpt)}
    assert served_models(conf, APP_DIR) == [(configs_only.resolve(), ckpt.resolve())]
    with pytest.raises(ValueError, match="exactly one bundle"):
        served_models({"models": f"{configs_only},{bundle}", "checkpoint": str(ckpt)}, APP_DIR)
    with pytest.raises(ValueError, match="no such file"):
        served_models({"models": str(configs_only), "checkpoint": str(tmp_path / "missing.pt")}, APP_DIR)


@pytest.mark.parametrize("name", ["healthy_gan_anomaly", "cyclegan_anomaly"])
def test_runner_serves_the_gan_bundles(name: str, studies: Path, tmp_path_factory) -> None:
    """The MONAI Label runner serves the GAN bundles as it serves the autoencoder: same contract, their own map."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_monai_anomaly_tests_conftest_label", REPO / "tests" / "conftest.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    bundle = conf.make_tiny_trained_bundle(tmp_path_factory.mktemp(name), max_epochs=1, name=name)
    heat, result = AnomalyBundleRunner(bundle)(studies / "vol.nii.gz")
    assert result["bundle"] == name
    assert result["bundle_version"] == json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    assert tuple(np.asarray(heat).shape[-3:]) == (20, 18, 5) and float(np.asarray(heat).min()) >= 0.0
    assert len(result["slice_scores"]) == 5 and isinstance(result["volume_score"], float)
    vt, _ = load_volume_threshold(bundle / "models" / "model.pt")
    assert result["prediction"] == ("anomalous" if result["volume_score"] >= vt else "normal")
    json.dumps(result)
