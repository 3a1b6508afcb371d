"""The thin CLI commands (evaluate, init-model, push) and what a push would upload, without a network."""

from __future__ import annotations

import importlib
import json

import pytest

from cellst import finetune
from cellst.cli import COMMANDS, main


def test_every_registered_command_imports():
    for name in COMMANDS:
        importlib.import_module(f"cellst.cli.{name}")


def test_init_model_then_evaluate(tmp_path, tiny_splits, capsys):
    out = tmp_path / "m"
    assert main(["init-model", str(out), "--preset", "micro", "--captions", str(tiny_splits["train"])]) == 0
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert main(["init-model", str(out), "--preset", "micro", "--captions", str(tiny_splits["train"])]) == 2
    records = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(out), "--split", str(tiny_splits["test"]), "--out", str(records)]) == 0
    printed = capsys.readouterr().out
    assert "non-specific" in printed and "specific:colour" in printed
    data = json.loads(records.read_text())
    assert {r["scope"] for r in data["records"]} >= {"non-specific", "specific"}


def test_evaluate_without_descriptor_column_says_so(tmp_path, tiny_splits, tiny_model_dir, capsys):
    import pandas as pd

    pd.read_csv(tiny_splits["test"]).drop(columns="descriptor").to_csv(tmp_path / "plain.csv", index=False)
    assert main(["evaluate", "--model", str(tiny_model_dir), "--split", str(tmp_path / "plain.csv")]) == 0
    out = capsys.readouterr().out
    assert "only non-specific recall" in out and "specific:" not in out


def test_model_that_is_not_a_clip(tmp_path, tiny_splits, capsys):
    (tmp_path / "notclip").mkdir()
    (tmp_path / "notclip" / "config.json").write_text("{}")
    code = main(["evaluate", "--model", str(tmp_path / "notclip"), "--split", str(tiny_splits["test"])])
    assert code == 2
    assert "Cannot load model" in capsys.readouterr().err


@pytest.fixture
def fake_hub(monkeypatch):
    """Record what would be sent to the Hub instead of sending it."""
    import huggingface_hub

    calls = {}

    def create_repo(self, repo_id, private=None, **kw):
        calls["create"] = {"repo_id": repo_id, "private": private, "token": self.token}
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, **kw):
        from pathlib import Path

        calls["files"] = {p.relative_to(folder_path).as_posix(): p.read_bytes()
                          for p in Path(folder_path).rglob("*") if p.is_file()}
        calls["repo"] = repo_id
        return type("CommitInfo", (), {"commit_url": "https://huggingface.co/me/cells/commit/abc"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def test_push_uploads_model_and_card_with_figures_but_no_token(tiny_model_dir, tiny_splits, tmp_path, fake_hub,
                                                                monkeypatch, capsys):
    secret = "hf_SECRETtoken1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    run = tmp_path / "run"
    finetune(model=str(tiny_model_dir), train=str(tiny_splits["train"]), test=str(tiny_splits["test"]),
             output=str(run), epochs=1, batch_size=4)
    assert main(["push", str(run), "--repo", "me/cells", "--private"]) == 0
    files = fake_hub["files"]
    assert fake_hub["repo"] == "me/cells" and fake_hub["create"]["private"] is True
    assert "model.safetensors" in files and "config.json" in files
    assert not any(name.startswith("checkpoints") for name in files)
    card = files["README.md"].decode()
    metrics = json.loads((run / "metrics.json").read_text())
    [after] = [r for r in metrics["after"] if (r["direction"], r["rule"], r["scope"]) ==
               ("text_to_image", "pair", "non-specific")]
    assert "mnrl" in card and "specific" in card and f"{after['metrics']['recall@5']:.4f}" in card
    everything = b"".join(files.values()).decode("utf-8", "replace") + capsys.readouterr().out
    everything += "".join(p.read_text(errors="replace") for p in run.rglob("*") if p.is_file() and p.suffix in
                          (".json", ".yaml", ".jsonl", ".md", ".txt"))
    assert secret not in everything


def test_push_refuses_a_folder_without_a_model(tmp_path, capsys):
    assert main(["push", str(tmp_path), "--repo", "me/cells"]) == 2
    assert "no saved model" in capsys.readouterr().err
