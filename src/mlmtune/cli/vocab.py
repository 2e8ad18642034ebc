"""`mlmtune vocab`: how a tokenizer cuts a corpus."""

from __future__ import annotations

import json

from ..config import VOCAB_FIELDS
from ..errors import InputError
from .args import add_config_flags, config_from_args, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("vocab", help="how the tokenizer cuts a corpus: pieces per word, unknown tokens, the most "
                                     "frequent words it cuts (candidates for train --add-tokens)")
    p.add_argument("--top", type=positive_int, default=50, metavar="N", help="cut words to list (default: 50)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the text")
    add_config_flags(p, VOCAB_FIELDS, helps={"min_count": "list only cut words seen at least this many times "
                                                          "(train --add-tokens N takes the same --min-count)"})
    p.set_defaults(func=run)


def run(args) -> int:
    from ..model.vocabulary import analyse

    cfg = config_from_args(args, only=VOCAB_FIELDS)
    if not cfg.data:
        raise InputError("--data needs at least one source")
    report = analyse(cfg.model, cfg.data, tokenizer=cfg.tokenizer, top=args.top, min_count=cfg.min_count,
                     text_column=cfg.text_column, encoding=cfg.encoding, split=cfg.data_split)
    print(json.dumps(report.as_dict()) if args.json else report.text(cfg.min_count))
    return 0
