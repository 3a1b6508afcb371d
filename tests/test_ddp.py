"""The same ``cellst finetune`` runs as two DDP processes on CPU (torchrun, gloo); only rank 0 writes and prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys



def test_finetune_under_torchrun_with_two_processes(tiny_model_dir, tiny_splits, tmp_path):
    out, logs = tmp_path / "ddp", tmp_path / "logs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    # --standalone picks a free port (other runs may hold torchrun's default); --redirects 3 keeps each rank's
    # output in its own file so the test can tell who printed what. --mini-batch-size exercises GradCache with
    # gather_across_devices; --ddp_backend passes through to the training arguments.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--log-dir", str(logs), "--redirects", "3", "-m", "cellst", "finetune",
               "--model", str(tiny_model_dir), "--train", str(tiny_splits["train"]), "--val", str(tiny_splits["val"]),
               "--test", str(tiny_splits["test"]), "--output", str(out), "--epochs", "2", "--batch-size", "4",
               "--learning-rate", "1e-3", "--mini-batch-size", "2", "--ddp_backend", "gloo"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)
    stdout = {p.parent.name: p.read_text() for p in logs.rglob("stdout.log")}
    assert done.returncode == 0, done.stderr[-3000:] + "".join(stdout.values())[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["after"] and metrics["val_history"]
    assert (out / "model.safetensors").exists() and (out / "trainer_log.jsonl").exists()
    assert stdout["0"].count("Test split after training") == 1
    assert "Test split" not in stdout["1"]  # rank 1 trains, but neither evaluates the test split nor writes
