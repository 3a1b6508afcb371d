"""``cellst push``: publish a run's model to the Hugging Face Hub (token from HF_TOKEN or the login; never printed)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("push", help="push a run's model to the Hugging Face Hub")
    p.add_argument("run_dir", help="the --output folder of a cellst finetune run")
    p.add_argument("--repo", required=True, help="hub repository, user/name")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..hub import push

    url = push(args.run_dir, args.repo, private=args.private)
    print(f"Pushed {args.run_dir} to {args.repo}: {url}")
    return 0
