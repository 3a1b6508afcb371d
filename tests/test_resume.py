"""Nothing lost, the same figures, nothing unsafe written: a run killed with SIGKILL mid-epoch resumes with `--resume`
to the figures of an uninterrupted run; the same seed gives the same figures; checkpoints keep the weights as
safetensors and the trainer's state files are read back only with `torch.load(weights_only=True)`; trust_remote_code
is off unless asked; the hub token is written nowhere.

All runs here train on one thread, in this process and in the killed one, so their arithmetic is identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import transformers

from cellst.cli import main
from cellst.resume import is_complete, latest_checkpoint

from conftest import make_split

TOKEN = "hf_MARKERtokenNeverWrite0123456789"
# Two epochs of 8 steps; a checkpoint and a val evaluation every 3 steps, so one lands mid-epoch.
ARGS = ["--epochs", "2", "--batch-size", "4", "--learning-rate", "1e-3", "--seed", "7", "--save_strategy", "steps",
        "--save_steps", "3", "--eval_strategy", "steps", "--eval_steps", "3"]
TRAINING_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt"}  # torch.save files of the trainer

# `python -m cellst finetune ARGS`, slowed down once its first checkpoint is written, so the test can kill it in the
# middle of the first epoch however busy the machine is. The sleep changes timing only, never the arithmetic.
SLOW_AFTER_FIRST_CHECKPOINT = """
import sys, time
from transformers import TrainerCallback
import cellst.training as training

class Slow(TrainerCallback):
    saved = False
    def on_save(self, *args, **kwargs):
        self.saved = True
    def on_step_begin(self, *args, **kwargs):
        if self.saved:
            time.sleep(0.5)

plain = training._callbacks
training._callbacks = lambda *a, **k: plain(*a, **k) + [Slow()]
from cellst.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return {name: make_split(folder, name, n, seed=i, start=100 * i)
            for i, (name, n) in enumerate([("train", 16), ("val", 8), ("test", 8)])}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the many small runs


def argv(data, model, out, *extra):
    return ["finetune", "--model", str(model), *(f"--{k}={v}" for k, v in data.items()), "--output", str(out),
            *ARGS, *extra]


def run(argv_):
    assert main(argv_) == 0
    out = argv_[argv_.index("--output") + 1]
    return json.loads(open(os.path.join(out, "metrics.json")).read())


@pytest.fixture(scope="module")
def reference(data, tiny_model_dir, tmp_path_factory):
    """One uninterrupted run: the figures the others must reproduce."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    return out, run(argv(data, tiny_model_dir, out))


def figures(metrics: dict) -> dict:
    """Every figure of a metrics.json, keyed by where it sits; timings left out."""
    flat = {}
    records = [("before", r) for r in metrics["before"]] + [("after", r) for r in metrics["after"]]
    records += [(f"val@{h['step']}", r) for h in metrics["val_history"] for r in h["records"]]
    for when, r in records:
        for part in ("metrics", "chance"):
            for key, value in r[part].items():
                flat[(when, r["direction"], r["rule"], r["scope"], part, key)] = value
    return flat


def test_same_seed_same_figures_and_weights(data, tiny_model_dir, reference, tmp_path, monkeypatch):
    import cellst.report

    monkeypatch.setattr(cellst.report, "write_report", lambda *a, **k: None)  # figures only; saves the plotting
    first_out, first = reference
    again = run(argv(data, tiny_model_dir, tmp_path / "again"))
    assert figures(again) == figures(first)  # exactly, every figure of every record
    assert [h["step"] for h in first["val_history"]] == [3, 6, 9, 12, 15, 16]  # every 3 steps, and the last
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (first_out / "model.safetensors").read_bytes()
    other = run(argv(data, tiny_model_dir, tmp_path / "other", "--seed", "8"))
    before = {k: v for k, v in figures(other).items() if k[0] == "before"}
    assert before == {k: v for k, v in figures(first).items() if k[0] == "before"}  # the same starting model
    assert (tmp_path / "other" / "model.safetensors").read_bytes() != (first_out / "model.safetensors").read_bytes()
    losses = [[e["loss"] for e in map(json.loads, (p / "trainer_log.jsonl").read_text().splitlines()) if "loss" in e]
              for p in (first_out, tmp_path / "other")]
    assert losses[0] != losses[1]  # another seed, another data order


def kill_mid_epoch(cmd, out, env, log):
    """Start `cmd`, wait for its first complete checkpoint, SIGKILL it; return the trainer state of that checkpoint."""
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    try:
        while not any(is_complete(p) for p in (out / "checkpoints").glob("checkpoint-*")):
            assert proc.poll() is None, f"the run ended before its first checkpoint:\n{log.name}"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())


def test_killed_mid_epoch_resumes_to_the_same_figures(data, tiny_model_dir, reference, tmp_path, monkeypatch,
                                                      capsys):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_TOKEN": TOKEN}
    cmd = [sys.executable, "-c", SLOW_AFTER_FIRST_CHECKPOINT, *argv(data, tiny_model_dir, out)]
    with open(tmp_path / "killed.log", "w") as log:
        state = kill_mid_epoch(cmd, out, env, log)
    assert state["global_step"] % 3 == 0 and state["epoch"] % 1 != 0  # stopped inside an epoch (step 3 of 8)
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()
    # The last checkpoint is whole: it loads and embeds.
    checkpoint = latest_checkpoint(out)
    assert SentenceTransformer(str(checkpoint)).encode(["The cell is red."]).shape == (1, 32)

    loads = []
    plain_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append((a[0], k.get("weights_only"))) or
                        plain_load(*a, **k))
    # Restarting from scratch would give the same figures too: count the steps this process trains.
    steps = []
    plain_step = transformers.Trainer.training_step
    monkeypatch.setattr(transformers.Trainer, "training_step", lambda *a, **k: steps.append(1) or plain_step(*a, **k))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    resumed = run(argv(data, tiny_model_dir, out, "--resume"))
    assert f"Resuming from {checkpoint}" in capsys.readouterr().out
    assert len(steps) == 16 - state["global_step"]
    expected = figures(reference[1])
    assert figures(resumed).keys() == expected.keys()
    assert figures(resumed) == pytest.approx(expected, abs=1e-6)
    # The trainer read its optimiser, scheduler and random states back without unpickling arbitrary objects.
    read = {os.path.basename(str(path)) for path, _ in loads}
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth"} <= read
    assert all(weights_only is True for _, weights_only in loads), loads

    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    printed = (tmp_path / "killed.log").read_text() + capsys.readouterr().out
    assert TOKEN.encode() not in written and TOKEN not in printed


def test_resume_refuses_what_it_cannot_continue(data, tiny_model_dir, reference, tmp_path, capsys):
    fails = lambda argv_: (main(argv_), capsys.readouterr().err)  # noqa: E731
    code, err = fails(argv(data, tiny_model_dir, tmp_path / "nothing", "--resume"))
    assert code == 2 and "holds no cellst_config.yaml" in err
    code, err = fails(argv(data, tiny_model_dir, reference[0], "--resume"))
    assert code == 2 and "has finished" in err
    started = tmp_path / "started"
    started.mkdir()
    (started / "cellst_config.yaml").write_text((reference[0] / "cellst_config.yaml").read_text())
    code, err = fails(argv(data, tiny_model_dir, started, "--resume", "--learning-rate", "5e-4"))
    assert code == 2 and "--learning-rate: saved 0.001, given 0.0005" in err
    code, err = fails(["finetune", "--output", str(started), "--resume"])  # the saved configuration fills the rest
    assert code == 2 and "no complete checkpoint" in err and "--save_steps" in err


def test_a_checkpoint_cut_off_while_written_is_skipped(reference, tmp_path, capsys):
    import shutil

    whole = sorted((reference[0] / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    step = int(whole.name.split("-")[1])
    shutil.copytree(whole, tmp_path / "checkpoints" / whole.name)
    cut = tmp_path / "checkpoints" / f"checkpoint-{step + 3}"
    shutil.copytree(whole, cut)
    state = (whole / "trainer_state.json").read_text()
    (cut / "trainer_state.json").write_text(state[: len(state) // 2])  # killed halfway through the last file
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / whole.name
    assert f"Skipping checkpoint-{step + 3}: incomplete" in capsys.readouterr().out


def test_run_folder_holds_safetensors_and_no_pickles(reference):
    out = reference[0]
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and (out / "model.safetensors").exists()
    for folder in [out, *checkpoints]:
        assert (folder / "model.safetensors").exists()
    pickled = [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")]
    assert pickled  # the trainer's state files, in the checkpoints only
    for path in pickled:
        assert path.parent in checkpoints and path.name in TRAINING_STATE, path


def test_trust_remote_code_is_off_unless_asked(data, tiny_model_dir, tmp_path, monkeypatch, capsys):
    import sentence_transformers

    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        raise RuntimeError("stop here: only the loader's arguments matter")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", record)
    assert main(argv(data, tiny_model_dir, tmp_path / "a")) == 2
    assert main(argv(data, tiny_model_dir, tmp_path / "b", "--trust-remote-code")) == 2
    assert seen == [False, True]
    assert "stop here" in capsys.readouterr().err


def test_a_pickled_model_file_is_never_unpickled(tiny_model_dir, data, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"weights": Payload()}, model / "pytorch_model.bin")
    code = main(["evaluate", "--model", str(model), "--split", str(data["test"])])
    assert code == 2 and "Cannot load model" in capsys.readouterr().err
    assert not marker.exists()
