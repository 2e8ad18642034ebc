"""Phase 1 of a run: the data. Read, deduplicate, split and cut the text (or open the stream), mask
the evaluation set once, and say what the run will train on. Nothing is written."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..config import Config
from ..data.batching import Batch, eval_batches, slot_capacity, train_batches
from ..data.blocks import Blocks, check_lengths, fingerprint, splits_from_config
from ..data.masking import Masker, MaskingSpec
from ..data.sources import as_eval_source, lines_are_documents
from ..data.streaming import StreamingData, open_documents
from ..errors import ConfigError, DataError
from ..model.load import max_positions
from ..model.normaliser import note as normaliser_note
from ..model.tokenizer import load_tokenizer
from .peers import first_process
from .resume import Resume, check_same_data
from .vocabulary import AddedVocabulary, add_vocabulary


@dataclass
class Data:
    """What the later phases train and evaluate on."""

    tokenizer: object
    positions: int  # the longest sequence the model takes
    masker: Masker  # the training masks (the evaluation set is masked already)
    train: Blocks | StreamingData
    eval_set: list[Batch]  # this process's share of the fixed-mask evaluation batches
    summary: dict  # run.json's `data`: counts and fingerprints, checked again by --resume
    steps_per_epoch: int  # 0 for a stream
    pad_id: int
    multiple: int  # pad a batch to a multiple of this (line by line: 8)
    vocabulary: AddedVocabulary | None = None  # --add-tokens
    slots: int | None = None  # --compile: static slots for a training batch's labelled positions

    def batches(self, cfg: Config, first_step: int, *, rank: int, world: int, batch_size: int | None = None,
                stream_id: int | None = None, examples: Blocks | StreamingData | None = None) -> Iterator[Batch]:
        """Training micro-batches from optimizer step `first_step` on (this process's, unless told otherwise;
        `examples`: other blocks than the training set, a stream's whole view)."""
        return train_batches(self.train if examples is None else examples, self.masker, first_step=first_step,
                             steps_per_epoch=self.steps_per_epoch, accumulation=cfg.gradient_accumulation_steps, rank=rank, world=world,
                             batch_size=cfg.batch_size if batch_size is None else batch_size, seed=cfg.seed,
                             pad_id=self.pad_id, pad_to_multiple_of=self.multiple, line_by_line=cfg.line_by_line,
                             stream_id=stream_id, slots=self.slots if batch_size is None else None)


def prepare_data(cfg: Config, accelerator, resume: Resume | None, say=print) -> Data:
    world = accelerator.num_processes
    tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)
    positions = max_positions(cfg.model, tokenizer)
    vocabulary = documents = None
    if cfg.add_tokens is not None:  # before tokenizing: the training text is cut with the new words
        vocabulary, documents = add_vocabulary(cfg, tokenizer, positions, saved_run=resume.run if resume else None,
                                               say=say)
    spec = MaskingSpec(cfg.mlm_probability, cfg.mask_replace_prob, cfg.random_replace_prob, cfg.whole_word_mask)
    eval_spec = MaskingSpec(cfg.eval_mlm_probability, cfg.mask_replace_prob, cfg.random_replace_prob,
                            cfg.whole_word_mask)
    check_probes(cfg, tokenizer)
    if cfg.streaming:
        check_lengths(cfg, positions)
        if resume is not None and resume.run.get("processes", world) != world:
            raise ConfigError(f"--resume: the run streamed its text with {resume.run['processes']} processes, each "
                              f"tokenizing its own share of the documents, and this job has {world}: resume it with "
                              f"{resume.run['processes']} processes")
        train = open_stream(cfg, accelerator, tokenizer, positions)
        eval_blocks = train.eval
        summary = {"streaming": True, "holdout": "eval-data" if cfg.eval_data else "stream head",
                   "eval_documents": train.eval_documents, "eval_examples": len(eval_blocks),
                   "eval_tokens": eval_blocks.num_tokens, "eval_fingerprint": fingerprint(eval_blocks)}
        steps_per_epoch = 0  # unknown: a stream has no length
    else:
        # the normaliser's note is said where the text is read: not again on a cache hit (said the first time)
        splits = splits_from_config(cfg, tokenizer, positions, documents=documents,
                                    node_first=first_process(accelerator, "blocks"), say=say,
                                    look=lambda docs: normaliser_note(tokenizer, docs.train + (docs.eval or []),
                                                                      cfg.model))
        train, eval_blocks, summary = splits.train, splits.eval, splits.summary()
        steps_per_epoch = len(train) // (cfg.batch_size * world) // cfg.gradient_accumulation_steps
        if steps_per_epoch == 0:
            needed = cfg.batch_size * world * cfg.gradient_accumulation_steps
            fix = (f"raise --train-size to at least {needed} or lower --batch-size"
                   if cfg.train_size is not None and cfg.train_size < needed else "lower --batch-size or add text")
            raise ConfigError(
                f"{len(train)} training examples make no full optimizer step of {cfg.batch_size} x "
                f"{world} processes x {cfg.gradient_accumulation_steps} accumulation: {fix}")
        if summary.get("duplicates_dropped"):
            say(f"note: dropped {summary['duplicates_dropped']:,} repeated documents before the split, "
                "so no evaluation text is also training text")
    if resume is not None:
        check_same_data(resume, summary)
    masker = Masker(tokenizer, spec)
    # a stream's training text is not read yet: its evaluation examples (its first documents) stand in
    check_masked_per_step(cfg, masker, eval_blocks if cfg.streaming else train, world)

    # the evaluation set, masked once and kept
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    multiple = 8 if cfg.line_by_line else 1
    # --compile: one shape for the labelled positions whatever their number (blocks: a fixed length)
    static = cfg.compile and not cfg.line_by_line
    slots, eval_slots = ((slot_capacity(size, cfg.chunk_size, p, whole_word=cfg.whole_word_mask) if static else None)
                         for size, p in ((cfg.batch_size, cfg.mlm_probability),
                                         (cfg.eval_batch_size, cfg.eval_mlm_probability)))
    eval_set = eval_batches(eval_blocks, Masker(tokenizer, eval_spec), seed=cfg.seed, batch_size=cfg.eval_batch_size,
                            pad_id=pad_id, pad_to_multiple_of=multiple, rank=accelerator.process_index, world=world,
                            slots=eval_slots)
    masked = accelerator.reduce(torch.tensor(float(sum(b.n_masked for b in eval_set)), device=accelerator.device),
                                "sum")
    if masked == 0:
        raise DataError(f"the fixed evaluation masks chose no token of the {eval_blocks.num_tokens:,} evaluation "
                        f"tokens (--eval-mlm-probability {cfg.eval_mlm_probability:g}): raise it (0.15 is the "
                        "standard) or --eval-size")
    return Data(tokenizer, positions, masker, train, eval_set, summary, steps_per_epoch, pad_id,
                multiple, vocabulary, slots)


# The fewest masked tokens an optimizer step should expect. A step's count is close to Poisson, so at 3
# about 1 step in 20 (e^-3 = 5%) masks nothing at all, and the rest learn from very few tokens; below it
# the rate is a mistake (--mlm-probability 0.0005 for 0.05). 0.15 of a 16 x 128 batch expects ~300.
MIN_MASKED_PER_STEP = 3


def check_masked_per_step(cfg: Config, masker: Masker, blocks: Blocks, world: int) -> None:
    """Refuse, before training, a masking rate that leaves many optimizer steps with nothing to predict."""
    if len(blocks) == 0:
        return
    per_example = masker.maskable_share(blocks.tokens[blocks.offsets[0]:blocks.offsets[-1]]) * blocks.num_tokens \
        / len(blocks)
    examples = cfg.batch_size * world * cfg.gradient_accumulation_steps
    expected = cfg.mlm_probability * per_example * examples
    if expected >= MIN_MASKED_PER_STEP:
        return
    empty = math.exp(per_example * examples * math.log1p(-cfg.mlm_probability))  # no token chosen in a step
    raise ConfigError(
        f"--mlm-probability {cfg.mlm_probability:g} masks {expected:.2f} tokens per optimizer step on average "
        f"({per_example:.0f} maskable tokens per example x {examples} examples per step), so about {empty:.0%} of "
        f"the steps would have no token to learn from: mlmtune needs {MIN_MASKED_PER_STEP} or more per step (then "
        "at most 5% are empty); raise --mlm-probability (0.15 is the standard), --batch-size or --chunk-size")


def open_stream(cfg: Config, accelerator, tokenizer, positions: int) -> StreamingData:
    """--streaming: this process's share of the training documents; the evaluation documents tokenized
    once, by the first process, and handed to the others."""
    documents = open_documents(cfg.data, split=cfg.data_split, text_column=cfg.text_column, encoding=cfg.encoding,
                               line_by_line=lines_are_documents(cfg))
    eval_stream = open_eval_stream(cfg) if cfg.eval_data else None

    def stream(share: int, shares: int, held_out=None) -> StreamingData:
        return StreamingData(documents, tokenizer, chunk_size=cfg.chunk_size, line_by_line=cfg.line_by_line,
                             max_length=cfg.max_length or positions, eval_size=cfg.eval_size, seed=cfg.seed,
                             eval_stream=eval_stream, share=share, shares=shares, held_out=held_out)

    held_out = first_process(accelerator, "stream-eval", per_node=False)(lambda: stream(0, 1).held_out())
    return stream(accelerator.process_index, accelerator.num_processes, held_out)


def check_probes(cfg: Config, tokenizer) -> None:
    """The report fills the probes' masks after training: check them before."""
    if not cfg.report:
        return
    for probe in cfg.probe:
        if "[MASK]" not in probe and tokenizer.mask_token not in probe:
            raise ConfigError(f"--probe {probe!r} has no [MASK]: write [MASK] where a word should be filled in")


def open_eval_stream(cfg: Config):
    """--eval-data as a stream (beside a streamed --data), its reading errors naming --eval-data."""
    try:
        return open_documents(cfg.eval_data, split=cfg.data_split, text_column=cfg.text_column,
                              encoding=cfg.encoding, line_by_line=lines_are_documents(cfg))
    except DataError as exc:
        source = next((s for s in cfg.eval_data if f"--data {s}" in str(exc)), cfg.eval_data[0])
        raise as_eval_source(exc, source) from None


def data_line(summary: dict, cfg: Config, *, world: int, steps_per_epoch: int) -> str:
    """The data summary `train` prints before anything else happens."""
    unit = "lines" if cfg.line_by_line else f"blocks of {cfg.chunk_size} tokens"
    held = {"eval-data": "from --eval-data", "split": f"from --eval-split {cfg.eval_split}",
            "documents": "held out as whole documents", "tail": "the tail of the text",
            "stream head": "the first documents of the stream"}.get(summary.get("holdout"), "")
    global_batch = cfg.batch_size * world * cfg.gradient_accumulation_steps
    batch = (f"global batch of {global_batch} ({cfg.batch_size} per process x {world} process"
             f"{'es' if world > 1 else ''} x {cfg.gradient_accumulation_steps} accumulation)")
    evaluation = (f"{summary['eval_examples']:,} evaluation {unit} ({summary['eval_tokens']:,} tokens, {held})")
    if summary.get("streaming"):
        return f"data: streamed; {evaluation}, from {summary['eval_documents']:,} documents; {batch}"
    repeats = f", {summary['duplicates_dropped']:,} repeats dropped" if summary.get("duplicates_dropped") else ""
    return (f"data: {summary['documents']:,} documents{repeats}; {summary['train_examples']:,} training {unit} "
            f"({summary['train_tokens']:,} tokens), {evaluation}; {steps_per_epoch:,} steps per epoch, {batch}")


def say_data(data: Data, cfg: Config, *, world: int, say=print) -> None:
    """What the run trains and evaluates on, in one line (and the lines --line-by-line cut)."""
    say(data_line(data.summary, cfg, world=world, steps_per_epoch=data.steps_per_epoch))
    if data.summary.get("lines_truncated"):
        where = f"--max-length {cfg.max_length}" if cfg.max_length else f"the model's {data.positions} tokens"
        say(f"note: --line-by-line cut {data.summary['lines_truncated']:,} of {data.summary['documents']:,} lines at "
            f"{where} (what lies beyond is not trained on)")
