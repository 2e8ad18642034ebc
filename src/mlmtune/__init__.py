"""mlmtune: adapt BERT-style masked language models to your own text, measure the gain, fill in blanks.

    import mlmtune
    results = mlmtune.train(model="minilm", data=["bbc-news"], output_dir="runs/demo", max_steps=200)
    mlmtune.evaluate("runs/demo", "bbc-news").perplexity
    mlmtune.compare(["minilm", "runs/demo"], "bbc-news", probes="benchmarks/cloze_news.tsv")
    mlmtune.fill_mask("runs/demo", "The [MASK] is happy.")
    mlmtune.vocabulary("minilm", "notes.txt").top   # the words the tokenizer cuts into pieces
"""

__version__ = "0.1.0"

import sys  # noqa: E402
import types  # noqa: E402

from .config import Config, build_config  # noqa: E402
from .errors import MlmtuneError  # noqa: E402


def train(config=None, **overrides):
    """Train with the given config (a Config, a dict, or keyword overrides); returns results.json's figures."""
    from .train import train as _train

    return _train(config, **overrides)


def evaluate(model="minilm", data=None, **options):
    """Perplexity and accuracy of `model` on the held-out part of `data` (an EvalResult)."""
    from .evaluate import evaluate as _evaluate

    return _evaluate(model, data, **options)


def compare(models, data="bbc-news", **options):
    """Several models on the same fixed masks (and cloze / linear probe with probes= / label_column=):
    one dict per model, as `mlmtune evaluate --model A --model B --json` prints."""
    from .evaluate import compare as _compare

    return _compare(models, data, **options)


def vocabulary(model="minilm", data="bbc-news", **options):
    """How the tokenizer of `model` cuts `data`: pieces per word, unknown tokens, the most frequent cut
    words (a VocabReport; `mlmtune vocab`). Options: tokenizer, top, min_count, text_column, encoding."""
    from .vocab import analyse

    return analyse(model, data, **options)


def fill_mask(model, texts, top_k=5, targets=None):
    """Top-k fillers per mask, as transformers' fill-mask pipeline answers: fill_mask("runs/demo", "The [MASK] is happy.")."""
    from .predict import fill_mask as _fill_mask

    return _fill_mask(model, texts, top_k, targets)


class _Package(types.ModuleType):
    """`mlmtune.train` and `mlmtune.evaluate` are both API functions and submodules. Importing a
    submodule (the functions do, lazily, so `import mlmtune` stays free of torch) binds it as an
    attribute of the package, which would replace the function: the next call would fail with
    "'module' object is not callable". This keeps the functions; the submodules stay importable
    (`from mlmtune.train import fit`)."""

    def __setattr__(self, name, value):
        if name in ("train", "evaluate") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name == "FillMask":
        from .predict import FillMask

        return FillMask
    raise AttributeError(name)


__all__ = ["Config", "FillMask", "MlmtuneError", "build_config", "compare", "evaluate", "fill_mask", "train",
           "vocabulary"]
