"""`mlmtune predict`: the top-k fillers of every mask, a second model beside the first."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import DEFAULT_PROBES
from ..errors import InputError
from ..run.files import read_json
from ..run.layout import is_run
from .args import positive_int, recover_model_folders


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="top-k fillers for each [MASK] in TEXT")
    p.add_argument("--model", required=True, help="model folder or Hugging Face id (minilm: the offline encoder)")
    p.add_argument("--compare", metavar="BASE", help="a second model shown beside the first, e.g. the base")
    p.add_argument("--top-k", type=positive_int, default=5, help="predictions per mask (default: 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
    p.add_argument("texts", nargs="*", metavar="TEXT",
                   help="sentences with [MASK]; - reads one per line from stdin (none: the run's --probe sentences, "
                        "or the default probes)")
    p.set_defaults(func=run)


def run(args) -> int:
    recover_model_folders(args.model, args.compare)  # a run an interrupted --overwrite set aside goes back first
    texts = read_texts(args.texts) if args.texts else run_probes(args.model)
    require_masks(texts, [args.model] + ([args.compare] if args.compare else []))  # before a model loads
    from ..model.fill_mask import GENERIC_MASK
    from ..run.before import head_note, shown_model

    # a base without an MLM head as the run (--model, a run folder) began: warm-started, as serve and the report show it
    models = [shown_model(args.model)] + ([shown_model(args.compare, run=args.model)] if args.compare else [])
    for m in models:
        if m.grown_head:
            print(head_note(m), file=sys.stderr)
    asked = texts  # any model's own mask (<mask>) is a mask for each model, as in serve: [MASK] is understood by all
    for token in {m.tokenizer.mask_token for m in models} - {GENERIC_MASK}:
        asked = [t.replace(token, GENERIC_MASK) for t in asked]
    results = [m.predict(asked, top_k=args.top_k, sequences=args.json) for m in models]
    for i, text in enumerate(texts):
        if args.json:
            record = {"text": text, "masks": [[p.as_dict() for p in mask] for mask in results[0][i]]}
            if args.compare:
                record["compare"] = {"model": args.compare, "label": models[1].label, "head": models[1].head_start,
                                     "masks": [[p.as_dict() for p in mask] for mask in results[1][i]]}
            print(json.dumps(record))
        else:  # the base (--compare) on the left, so a row reads before -> after
            columns = [(m.label, r[i]) for m, r in zip(models, results)]
            print(format_columns(text, columns[::-1]))
    return 0


def require_masks(texts: list[str], models: list[str]) -> None:
    """Every text holds [MASK] or a model's own mask token (<mask>), checked before any model loads: a
    text without one fails in a second rather than after loading the weights. Only a text without
    [MASK] needs the tokenizers (for their mask token); the models are not loaded here."""
    from ..model.fill_mask import GENERIC_MASK, no_mask_error

    missing = [t for t in texts if GENERIC_MASK not in t]
    if not missing:
        return
    from ..model.tokenizer import load_tokenizer

    masks = {load_tokenizer(m).mask_token for m in models}
    for text in missing:
        if not any(mask in text for mask in masks):
            raise no_mask_error(text)


def run_probes(model: str) -> list[str]:
    """The probe sentences of the run in folder `model` (its run.json), else the default probes."""
    record = read_json(Path(model) / "run.json")
    probes = record.get("config", {}).get("probe") if isinstance(record, dict) and is_run(Path(model)) else None
    if isinstance(probes, list) and probes and all(isinstance(p, str) for p in probes):
        return probes
    return list(DEFAULT_PROBES)


def read_texts(texts: list[str]) -> list[str]:
    """The TEXT arguments, or stdin's non-blank lines for `-`; text that is not UTF-8 is an InputError."""
    from ..model.fill_mask import require_utf8

    named = [(f"TEXT {n}", text) for n, text in enumerate(texts, 1)]
    if texts == ["-"]:
        try:
            named = [(f"stdin line {n}", line.rstrip("\n")) for n, line in enumerate(sys.stdin, 1) if line.strip()]
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin is not valid {exc.encoding.upper()} (byte 0x{exc.object[exc.start]:02x}): "
                             "pipe in UTF-8 text, e.g. iconv -f latin1 -t utf-8 FILE | mlmtune predict ... -") from None
    if not named:
        raise InputError("no text given: pass sentences with [MASK], or - to read them from stdin")
    for name, text in named:  # argv bytes that are not UTF-8 arrive as surrogate escapes, so may stdin's
        require_utf8(text, name)
    return [text for _, text in named]


def format_columns(text: str, columns: list[tuple[str, list[list]]]) -> str:
    """A text and, per mask, the predictions of each model side by side."""
    lines = [text]
    width = 28
    n_masks = len(columns[0][1])
    for m in range(n_masks):
        lines.append(f"  mask {m + 1}/{n_masks}:  " + "".join(f"{fit_width(name, width - 1):<{width}}"
                                                               for name, _ in columns).rstrip())
        for rank in range(len(columns[0][1][m])):
            cells = []
            for _, masks in columns:
                p = masks[m][rank]
                cells.append(f"{p.word[:16]:<16} {p.score:>7.2%}".ljust(width))
            lines.append(f"  {rank + 1:>9}   " + "".join(cells).rstrip())
    return "\n".join(lines)


def fit_width(name: str, width: int) -> str:
    """A column's title cut to `width` from the left, so that its end ("..., warm-started head") stays."""
    return name if len(name) <= width else "…" + name[-(width - 1):]
