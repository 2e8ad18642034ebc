"""`mlmtune push`: upload a finished run to the Hugging Face Hub."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("push", help="upload a finished run (model, tokenizer, model card, report) to the Hugging Face Hub")
    p.add_argument("output_dir", metavar="OUTPUT", help="a folder written by mlmtune train")
    p.add_argument("repo", metavar="REPO", help="Hub model repository, owner/name (created if missing)")
    p.add_argument("--private", action="store_true", default=None,
                   help="create the repository as private (an existing one keeps its visibility)")
    p.add_argument("--checkpoints", action="store_true", help="also upload checkpoints/ (full training states)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..run.hub import push

    push(args.output_dir, args.repo, private=args.private, checkpoints=args.checkpoints, say=print)
    return 0
