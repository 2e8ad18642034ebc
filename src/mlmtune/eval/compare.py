"""`mlmtune evaluate`: the perplexity and masked-token accuracy of one or more models on the
held-out part of a corpus, side by side, with a cloze test and a linear probe on request.

It prepares the data exactly as `train` does (same split, same seed, same fixed masks), so the
number for a base model and for the model `train` wrote are directly comparable, and equal to the
evaluations in that run's metrics.jsonl. Several models are scored on one evaluation set, prepared
and masked once with the first model's tokenizer; a model whose tokenizer differs from the first's
is refused (its token ids would mean other words), as is a model given twice. The exception is a
tokenizer that differs only by added words (`train --add-tokens`): that model's perplexity is taken
on its own tokenization (marked, not comparable), and every model is also scored on the same masked
words of the held-out documents (wordeval.py), a measure that does not depend on the vocabulary.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import EVALUATE_FIELDS, Config, build_config, canonical_name, resolve, validate
from ..data.batching import eval_batches
from ..data.blocks import splits_from_config
from ..data.masking import Masker, MaskingSpec
from ..data.sources import documents_from_config
from ..data.split import heldout_texts
from ..errors import ConfigError, DataError, ModelError
from ..model.device import make_accelerator, shutdown
from ..model.load import load_masked_lm, max_positions, resolve_model, use_training_attention
from ..model.normaliser import note as normaliser_note
from ..model.objective import MaskedLMObjective, masked_positions_head
from ..model.tokenizer import added_words_only, model_tokenizer, tokenizer_difference
from . import words as wordeval
from .cloze import CLOZE_K, answerable, check_cloze_fits, cloze_accuracy, cloze_predictions, read_cloze_file
from .linear_probe import heldout_documents, linear_probe, mean_pooled_features, probe_documents
from .metrics import EvalResult, evaluate_batches
from .results import Comparison, ModelResult
from .words import WordResult, score


@dataclass
class ModelScores:
    """One model's row of the side-by-side."""

    model: str
    result: EvalResult
    grown_head: bool = False  # no MLM head in the checkpoint: scored with a new, untrained one
    cloze: dict | None = None  # {"top1", "top5", "items"}
    probe: dict | None = None  # {"accuracy", "accuracy_std", "folds", "documents", "classes", "label_column"}
    words: WordResult | None = None  # the masked-word measure, the same words for every model
    own_tokens: bool = False  # perplexity on its own tokenization (it adds words to the first model's)

    def as_dict(self) -> dict:
        """A flat JSON-safe record (a non-finite figure is None)."""
        record = {"model": self.model, **self.result.as_dict(), "grown_head": self.grown_head}
        if self.cloze is not None:
            record.update({"cloze_top1": self.cloze["top1"], "cloze_top5": self.cloze["top5"],
                           "cloze_items": self.cloze["items"]})
        if self.probe is not None:
            record.update({f"probe_{k}": v for k, v in self.probe.items()})
        if self.words is not None:
            record.update(self.words.record())
        if self.own_tokens:
            record["own_tokenization"] = True
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


def model_identity(name: str) -> str:
    """What a --model value names: the real path of a local folder (so runs/demo and ./runs/demo/ are
    one model, and minilm is its package folder), else the Hub id as given."""
    source = resolve_model(name)
    path = Path(os.path.expanduser(source))
    return os.path.realpath(path) if path.exists() else source


def check_models(models: list[str]) -> list[str]:
    if isinstance(models, str):
        models = [models]
    models = list(models)
    if not models:
        raise ConfigError("no model given: pass --model, once per model to compare")
    for m in models:
        if not isinstance(m, str) or not m.strip():
            raise ConfigError(f"--model {m!r} is empty: give a model folder or a Hugging Face id")
    seen: dict[str, str] = {}
    for m in models:
        key = model_identity(m)
        if key in seen:
            same = f"--model {m}" if m == seen[key] else f"--model {seen[key]} and --model {m}"
            raise ConfigError(f"{same} name the same model twice: give each model once (its numbers would only "
                              "repeat, as the masks are fixed)")
        seen[key] = m
    return models


def run_comparison(cfg: Config, models: list[str] | None = None, *, probes=None, label_column: str | None = None,
                   say=print, read_train: bool = True) -> list[ModelScores]:
    """Score every model on the evaluation set of `cfg` (prepared and masked once); with `probes` (a
    cloze TSV path or parsed ClozeItems) the cloze accuracy, with `label_column` the linear probe.
    Every input is checked before the first model is scored. The evaluation set is the held-out part
    of --data, or --eval-data (less any --data text, unless `read_train` is False); no training part
    is needed."""

    models = check_models([cfg.model] if models is None else models)
    validate(cfg, training=False)
    cfg = resolve(cfg)
    if label_column is not None and not (isinstance(label_column, str) and label_column.strip()):
        raise ConfigError("--label-column is empty: name the column holding each document's class, e.g. label")
    items = read_cloze_file(probes) if isinstance(probes, (str, Path)) else (list(probes) if probes else None)
    if probes is not None and not items:
        raise DataError("the cloze probes are empty: give at least one item")

    accelerator = make_accelerator(cfg)
    main = accelerator.is_main_process

    def note(message: str) -> None:
        if main:
            say(message)

    # The tokenizers first: a model that reads other token ids is refused before any data is read.
    tokenizer = model_tokenizer(models[0], cfg.tokenizer)
    positions = max_positions(models[0], tokenizer)
    tokenizers = [tokenizer]
    for m in models[1:]:
        other = model_tokenizer(m, cfg.tokenizer)
        why = tokenizer_difference(tokenizer, other)
        tokenizers.append(tokenizer if not why else other)
        if why and added_words_only(tokenizer, other):
            positions = min(positions, max_positions(m, other))
            continue
        if why:
            raise ModelError(f"--model {m} has another tokenizer than --model {models[0]} ({why}): a side-by-side "
                             f"scores every model on one set of masks made with the first model's tokenizer; compare "
                             f"models that share a tokenizer, or evaluate {m} on its own")
        positions = min(positions, max_positions(m, tokenizer))  # also checks the ids fit its embeddings
    if items:
        check_cloze_fits(items, tokenizer, positions)
    probe_texts = probe_labels = None
    if label_column is not None:  # the classes first: reading them is cheap, tokenizing is not
        documents = documents_from_config(cfg, read_train=read_train, label_column=label_column)
        texts, labels = heldout_documents(documents, eval_fraction=cfg.eval_fraction, seed=cfg.seed)
        probe_texts, probe_labels = probe_documents(texts, labels, label_column=label_column, seed=cfg.seed, say=note)
    # read once; split and cut exactly as train does
    documents = documents_from_config(cfg, read_train=read_train)
    for line in documents.notes:
        note(line)
    if lost := normaliser_note(tokenizer, documents.train + (documents.eval or []), models[0]):
        note(lost)
    splits = splits_from_config(cfg, tokenizer, positions, need_train=False, documents=documents)
    word_sets = masked_word_sets(cfg, documents, tokenizers, positions)
    if items:
        # an answer any model's vocabulary holds as one token (a word a run added) can be hit
        reachable = [any(r) for r in zip(*(answerable(items, t) for t in {id(t): t for t in tokenizers}.values()))]
        if not all(reachable):
            lines = ", ".join(str(item.line) for item, ok in zip(items, reachable) if not ok)
            note(f"note: {reachable.count(False)} of the {len(items)} cloze items have no answer that is one token of "
                 f"the vocabulary (lines {lines}), so no model can hit them")

    masker = Masker(tokenizer, MaskingSpec(cfg.eval_mlm_probability, cfg.mask_replace_prob,
                                           cfg.random_replace_prob, cfg.whole_word_mask))

    def masked_batches(tok, blocks):
        return eval_batches(blocks, Masker(tok, masker.spec), seed=cfg.seed,
                            batch_size=cfg.eval_batch_size,
                            pad_id=tok.pad_token_id or 0, pad_to_multiple_of=8 if cfg.line_by_line else 1,
                            rank=accelerator.process_index, world=accelerator.num_processes)

    shared_batches = masked_batches(tokenizer, splits.eval)
    if accelerator.num_processes == 1 and not sum(b.n_masked for b in shared_batches):  # before any model loads
        shutdown(accelerator)
        raise nothing_masked(splits.eval.num_tokens, cfg)
    scores: list[ModelScores] = []
    for number, (m, tok) in enumerate(zip(models, tokenizers), 1):
        own = tok is not tokenizer  # adds words to the first model's tokenizer: its own tokens and masks
        batches = masked_batches(tok, splits_from_config(cfg, tok, positions, need_train=False,
                                                         documents=documents).eval) if own else shared_batches
        started = time.perf_counter()
        which = f" ({number} of {len(models)})" if len(models) > 1 else ""
        loaded = load_masked_lm(m, seed=cfg.seed, tokenizer=tok)  # a model that cannot load: its one error line
        note(f"evaluating {m}{which} on {len(splits.eval):,} examples ({splits.eval.num_tokens:,} tokens)"
             + (", then the masked words" if word_sets is not None else ""))
        row = ModelScores(m, EvalResult.from_sums(0, 0, 0), grown_head=bool(loaded.new_parameters), own_tokens=own)
        if row.grown_head:
            note(f"note: {m} has no MLM head; scoring a new, untrained one (initialised from --seed {cfg.seed})")
        # The attention train scores with (eager on a CPU): the same function, but SDPA rounds otherwise,
        # visibly in bf16 (minilm: 46,450.49 against train's 46,461.92), and the numbers are to be train's.
        use_training_attention(loaded.model, accelerator.device)
        objective = accelerator.prepare(MaskedLMObjective(loaded.model))
        row.result = evaluate_batches(objective, progress(batches, m, enabled=main), accelerator.device,
                                      reduce=lambda t: accelerator.reduce(t, "sum"))
        if row.result.masked_tokens == 0:  # perplexity and accuracy would be nan (several processes: known only now)
            shutdown(accelerator)
            raise nothing_masked(splits.eval.num_tokens, cfg)
        model = accelerator.unwrap_model(objective).model
        if word_sets is not None:

            row.words = score(model, word_sets[tokenizers.index(tok)], accelerator.device, accelerator.autocast)
        # Every process computes the cloze and the probe whole (they are small), so all agree.
        if items:

            # each model reads and answers with its own tokenizer (one with added words: its own ids)
            predicted = cloze_predictions(model, masked_positions_head(model), tok, items,
                                          device=accelerator.device, max_length=positions, top_k=max(CLOZE_K),
                                          autocast=accelerator.autocast)
            row.cloze = {"top1": cloze_accuracy(predicted, items, 1), "top5": cloze_accuracy(predicted, items, 5),
                         "items": len(items)}
        if probe_texts is not None:

            features = mean_pooled_features(model, tok, probe_texts, device=accelerator.device,
                                            max_length=positions, autocast=accelerator.autocast)
            row.probe = {**linear_probe(features, probe_labels, seed=cfg.seed), "documents": len(probe_texts),
                         "classes": len(set(probe_labels)), "label_column": label_column}
        scores.append(row)
        note(f"evaluated {m} in {time.perf_counter() - started:,.0f} s: perplexity {row.result.perplexity:,.2f}")
        del objective, loaded, model
        accelerator.free_memory()  # one model in memory at a time
    shutdown(accelerator)
    return scores


def nothing_masked(tokens: int, cfg: Config) -> DataError:
    return DataError(f"no token of the {tokens:,} evaluation tokens was masked (--eval-mlm-probability "
                     f"{cfg.eval_mlm_probability:g}): raise --eval-mlm-probability (0.15 is the standard) or --eval-size")


def interactive() -> bool:
    """A terminal or a notebook shows a progress bar; a pipe or a log gets the lines alone (no \\r frames)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def progress(batches: list, model: str, *, enabled: bool):
    """The batches of one model's evaluation, with a bar on stderr where one is shown (tqdm.auto: a widget
    in a notebook with ipywidgets, else tqdm's text bar, which a notebook shows as well)."""
    if not (enabled and interactive()):
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=f"evaluate {Path(model).name or model}", unit="batch", leave=False, file=sys.stderr,
                dynamic_ncols=True)


def masked_word_sets(cfg: Config, documents, tokenizers: list, positions: int) -> list | None:
    """The masked-word sets (one per tokenizer, the same words) on the held-out whole documents (or the
    --eval-data documents) of `documents`; None when the corpus holds out no whole documents (its
    evaluation text is the tail of the token stream)."""

    texts = heldout_texts(documents, eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    if not texts:
        return None
    unique = list({id(t): t for t in tokenizers}.values())
    sets = wordeval.prepare(texts, unique, seed=cfg.seed, max_length=positions,
                            max_windows=wordeval.max_windows(cfg.eval_size))
    by_id = {id(t): s for t, s in zip(unique, sets)}
    ordered = [by_id[id(t)] for t in tokenizers]
    return ordered if ordered[0].n_words else None


def _config(model: str, data, options: dict, what: str) -> Config:
    named = {key: canonical_name(key) for key in options}  # a Trainer name (per_device_eval_batch_size) is its field
    unknown = {key for key, name in named.items() if name not in EVALUATE_FIELDS or name == "model"}
    if unknown:
        raise ConfigError(f"{what} does not take {', '.join(sorted(unknown))}")
    return build_config({"model": model, "data": [data] if isinstance(data, str) else data, **options})


def evaluate(model: str = "minilm", data: str | list[str] | None = None, *, say=print, **options) -> ModelResult:
    """Python API: `mlmtune.evaluate("runs/demo", "bbc-news", eval_size=500).perplexity`, or
    `mlmtune.evaluate("runs/demo", eval_data=["valid.txt"])` (data defaults to bbc-news, and is not
    read when only eval_data is given). A ModelResult: perplexity, accuracy, masked_tokens, loss and the
    masked-word measure, as `mlmtune evaluate --json` names them."""
    read_train = data is not None or not options.get("eval_data")
    cfg = _config(model, "bbc-news" if data is None else data, options, "evaluate")
    return ModelResult(run_comparison(cfg, read_train=read_train, say=say)[0].as_dict())


def compare(models: list[str], data: str | list[str] = "bbc-news", *, probes=None, label_column: str | None = None,
            say=print, **options) -> Comparison:
    """Python API: several models on the same fixed masks, one ModelResult (a dict) per model, as the JSON
    lines of `mlmtune evaluate --model A --model B --json`; the list's repr is that command's table.

        compare(["minilm", "runs/demo"], "bbc-news", probes="benchmarks/cloze_news.tsv", label_column="label")
    """
    if "model" in options:
        raise ConfigError("compare takes the models as its first argument, a list: drop model=")
    models = check_models(models)
    cfg = _config(models[0], data, options, "compare")
    rows = run_comparison(cfg, models, probes=probes, label_column=label_column, say=say)
    return Comparison([ModelResult(row.as_dict()) for row in rows], format_table(rows))


# --- the table ---------------------------------------------------------------------------------

def _pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.1%}"


def format_table(rows: list[ModelScores]) -> str:
    """The side-by-side as aligned text: one line per model, then what the columns mean."""
    columns = [("model", "<"), ("perplexity", ">"), ("accuracy", ">"), ("masked tokens", ">")]
    has_words = any(r.words for r in rows)
    if has_words:
        columns += [("word bits/char", ">"), ("word accuracy", ">")]
    has_cloze = any(r.cloze for r in rows)
    has_probe = any(r.probe for r in rows)
    if has_cloze:
        columns += [("cloze top-1", ">"), ("cloze top-5", ">")]
    if has_probe:
        columns += [("linear probe", ">")]
    table = []
    for r in rows:
        ppl = r.result.perplexity
        cells = [r.model + (" *" if r.grown_head else ""),
                 ("n/a" if not math.isfinite(ppl) else f"{ppl:,.2f}") + (" +" if r.own_tokens else ""),
                 _pct(r.result.accuracy), f"{r.result.masked_tokens:,}"]
        if has_words:
            cells += ([f"{r.words.bits_per_char:.4f}" if math.isfinite(r.words.bits_per_char) else "n/a",
                       _pct(r.words.word_accuracy)] if r.words else ["", ""])
        if has_cloze:
            cells += [_pct(r.cloze["top1"]), _pct(r.cloze["top5"])] if r.cloze else ["", ""]
        if has_probe:
            cells += [f"{_pct(r.probe['accuracy'])} ± {_pct(r.probe['accuracy_std'])}"] if r.probe else [""]
        table.append(cells)
    widths = [max(len(title), *(len(cells[i]) for cells in table)) for i, (title, _) in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:{align}{w}}" for c, (_, align), w in zip(cells, columns, widths)).rstrip()

    out = [line([title for title, _ in columns])] + [line(cells) for cells in table]
    out.append("perplexity and accuracy: the same fixed masks of the held-out text for every model")
    if any(r.own_tokens for r in rows):
        out.append("+ its tokenizer and the first model's differ by added words (--add-tokens): perplexity and "
                   "accuracy on its own tokens (other tokens, not comparable); " + (
                       "rank by the masked words" if has_words else
                       "no masked-word measure to rank by: it needs 10 or more held-out documents (or --eval-data)"))
    if has_words:
        n = next(r.words.masked_words for r in rows if r.words)
        out.append(f"word bits/char, word accuracy: the same {n:,} whole words of the held-out documents masked for "
                   "every model, whatever its vocabulary: bits per character of the words (lower is better) and the "
                   "share predicted exactly")
    if any(r.grown_head for r in rows):
        out.append("* no MLM head in the checkpoint: scored with a new, untrained head (from --seed)")
    if has_cloze:
        n = next(r.cloze["items"] for r in rows if r.cloze)
        out.append(f"cloze: share of the {n} items with an accepted answer among the model's top 1 / top 5 tokens")
    if has_probe:
        p = next(r.probe for r in rows if r.probe)
        out.append(f"linear probe: {p['folds']}-fold stratified cross-validated accuracy (± std over folds) of "
                   f"logistic regression on mean-pooled frozen features of {p['documents']:,} held-out documents, "
                   f"{p['classes']} classes of {p['label_column']!r}")
    return "\n".join(out)
