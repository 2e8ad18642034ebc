"""mlmtune: adapt BERT-style masked language models to your own text, measure the gain, fill in blanks.

    import mlmtune
    results = mlmtune.train(model="minilm", data=["bbc-news"], output_dir="runs/demo", max_steps=200)
    mlmtune.evaluate("runs/demo", "bbc-news").perplexity
    mlmtune.compare(["minilm", "runs/demo"], "bbc-news", probes="benchmarks/cloze_news.tsv")
    mlmtune.fill_mask("runs/demo", "The [MASK] is happy.")
    mlmtune.vocabulary("minilm", "notes.txt").top   # the words the tokenizer cuts into pieces

The package is laid out by pipeline stage (data, model, training, eval, run, serve, cli); each API
function imports its stage lazily, so `import mlmtune` stays free of torch.
"""

from .config import Config, build_config
from .errors import MlmtuneError
from .version import __version__


def train(config=None, **overrides):
    """Train with the given config (a Config, a dict, or keyword overrides; the Trainer's names such as
    learning_rate too); returns a TrainResult: results.json's figures, a dict with attributes."""
    from .training.fit import train as _train

    return _train(config, **overrides)


def evaluate(model="minilm", data=None, **options):
    """Perplexity, accuracy and the masked-word measure of `model` on the held-out part of `data` (a
    ModelResult: a dict with attributes, named as `mlmtune evaluate --json` names them)."""
    from .eval.compare import evaluate as _evaluate

    return _evaluate(model, data, **options)


def compare(models, data="bbc-news", **options):
    """Several models on the same fixed masks (and cloze / linear probe with probes= / label_column=):
    a Comparison, one ModelResult (a dict) per model as `mlmtune evaluate --model A --model B --json`
    prints them; its repr is that command's table."""
    from .eval.compare import compare as _compare

    return _compare(models, data, **options)


def vocabulary(model="minilm", data="bbc-news", **options):
    """How the tokenizer of `model` cuts `data`: pieces per word, unknown tokens, the most frequent cut
    words (a VocabReport; `mlmtune vocab`). Options: tokenizer, top, min_count, text_column, encoding."""
    from .model.vocabulary import analyse

    return analyse(model, data, **options)


def fill_mask(model, texts, top_k=5, targets=None):
    """Top-k fillers per mask, as transformers' fill-mask pipeline answers: fill_mask("runs/demo", "The [MASK] is happy.")."""
    from .model.fill_mask import fill_mask as _fill_mask

    return _fill_mask(model, texts, top_k, targets)


def __getattr__(name):
    """The result types, imported on first use (FillMask and Prediction load torch)."""
    if name in ("FillMask", "Prediction"):
        from .model import fill_mask as module
    elif name in ("ModelResult", "Comparison"):
        from .eval import results as module
    elif name == "TrainResult":
        from .training import results as module
    else:
        raise AttributeError(name)
    return getattr(module, name)


__all__ = ["Comparison", "Config", "FillMask", "MlmtuneError", "ModelResult", "Prediction", "TrainResult",
           "__version__", "build_config", "compare", "evaluate", "fill_mask", "train", "vocabulary"]
