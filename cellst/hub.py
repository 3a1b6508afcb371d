"""Publishing a run to the Hugging Face Hub, with cellst's figures in the model card.

The upload goes through sentence-transformers' ``push_to_hub`` with a staged folder: the model files and a README that
carries the loss and the specific and non-specific test figures. Checkpoints, logs and the run config stay local. The
token comes from ``HF_TOKEN`` or ``huggingface-cli login``; cellst never prints, logs or saves it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .errors import CellstError

CARD_MARKER = "<!-- cellst:figures -->"
MODEL_FILES_SKIPPED = {"checkpoints", "trainer_log.jsonl", "cellst_config.yaml", ".cache", "eval", "runs"}


def card_section(metrics: dict) -> str:
    """Markdown: loss, and the test figures before and after training for both relevance rules and scopes."""
    lines = [CARD_MARKER, "## cellst evaluation", "",
             f"Fine-tuned with cellst from `{metrics.get('model', '?')}` using the `{metrics.get('loss', '?')}` loss.",
             "Figures on the held-out test split (text -> image). *Non-specific*: every caption queries all test "
             "images. *Specific*: candidates limited to the images annotated for the caption's descriptor.", "",
             "| rule | scope | stage | accuracy@1 | accuracy@5 | recall@1 | recall@5 | recall@10 | MRR@10 | chance acc@5 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for stage in ("before", "after"):
        for r in metrics.get(stage, []):
            if r["direction"] != "text_to_image" or ":" in r["scope"]:
                continue
            m, c = r["metrics"], r["chance"]
            figures = " | ".join(f"{m[k]:.4f}" for k in ("accuracy@1", "accuracy@5", "recall@1", "recall@5",
                                                        "recall@10", "mrr@10"))
            lines.append(f"| {r['rule']} | {r['scope']} | {stage} | {figures} | {c['accuracy@5']:.4f} |")
    return "\n".join(lines) + "\n"


def write_model_card(folder: Path, metrics: dict) -> None:
    """Append (or replace) cellst's section in the README.md that sentence-transformers wrote."""
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# cellst model\n"
    text = text.split(CARD_MARKER)[0].rstrip() + "\n\n" + card_section(metrics)
    readme.write_text(text, encoding="utf-8")


def push(run_dir: str | Path, repo: str, private: bool = False, token: str | None = None,
         commit_message: str = "Upload cellst fine-tuned CLIP") -> str:
    """Upload the model in ``run_dir`` to ``repo`` (user/name); return the commit URL.

    Example::

        from cellst import push
        push("runs/mnrl", "me/cell-clip", private=True)
    """
    from .model import load_model

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise CellstError(f"{run_dir} holds no saved model (no config.json). Give the --output folder of a "
                          "finished `cellst finetune` run.")
    if "/" not in repo or repo.count("/") != 1:
        raise CellstError(f"--repo '{repo}' should look like user/name.")
    model = load_model(run_dir)
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    model.model_card_data.tags = sorted(set(model.model_card_data.tags or []) |
                                        {"cellst", "clip", "microscopy", "cell-morphology",
                                         f"loss-{metrics.get('loss', 'unknown')}"})
    with tempfile.TemporaryDirectory() as staging:
        for item in run_dir.iterdir():
            if item.name in MODEL_FILES_SKIPPED:
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, Path(staging) / item.name)
        write_model_card(Path(staging), metrics)
        return model.push_to_hub(repo, token=token, private=private, local_model_path=staging,
                                 exist_ok=True, commit_message=commit_message)
