"""OUTPUT/README.md: the model card, in the Hugging Face Hub's format.

YAML metadata first (what the Hub indexes: `base_model`, `pipeline_tag: fill-mask` for the widget,
`library_name`, `tags`, `datasets`, and `model-index` with the eval perplexity and accuracy), then
prose: what was trained on what, the before/after figures, the time and the command. Everything is
read from the run's own files (run.json, results.json, metrics.jsonl), so `mlmtune train` writes it
at the end of a run and `mlmtune report` / `mlmtune push` can write it again.

Only a local path never reaches the card: a base model or data in a local folder is named by its
last component (`my-encoder`), never `/home/me/...`, and the home folder in the command is `~`.

The card carries a marker comment. A README.md without it is a user's own file and is kept as it
is (the card is then not written, with a note); delete the marker to keep your edits from being
replaced by the next `mlmtune report`.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shlex
from pathlib import Path

from ..config import DEFAULT_PROBES
from ..data.sources import BUILTIN_CORPORA, looks_like_path
from ..model.load import resolve_model
from .files import atomic_write_json, atomic_write_text, read_json_object
from .layout import CARD, MARKER, is_ours
from .metrics_log import read_metrics

BUILTIN_BASES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}  # what modeling.resolve_model loads
BUILTIN_DATA = {"bbc-news": "BBC News (2,225 articles of 2004-2005, the built-in offline corpus)"}
BUILTIN_LANGUAGES = {"bbc-news": "en"}  # the only text whose language mlmtune knows; others: no `language`
# The hyperparameter list: run.json's config keys, named as a Trainer user reads them.
HYPERPARAMETERS = (("lr", "learning_rate"), ("batch_size", "per_device_train_batch_size"),
                   ("gradient_accumulation_steps", "gradient_accumulation_steps"), ("weight_decay", "weight_decay"),
                   ("warmup_steps", "warmup_steps"), ("warmup_ratio", "warmup_ratio"),
                   ("chunk_size", "block_size"), ("mlm_probability", "mlm_probability"),
                   ("whole_word_mask", "whole_word_mask"), ("max_steps", "max_steps"), ("max_time", "max_time"),
                   ("epochs", "num_train_epochs"), ("seed", "seed"))
PRECISION = {"no": "fp32"}  # accelerate's name for full precision, which read as "precision no"
HUB_CACHE_FOLDER = re.compile(r"models--([\w.-]+)--([\w.-]+)/snapshots/")
HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_base(model: str) -> str | None:
    """The Hub id of the base model, or None for a local folder that is not a Hub snapshot.

    `minilm` is sentence-transformers/all-MiniLM-L6-v2; a folder of the Hugging Face cache
    (.../models--org--name/snapshots/<hash>) is org/name; an existing local folder is not a Hub id
    (its absolute path would leak the user's file layout and the Hub would reject it)."""
    if model in BUILTIN_BASES and not Path(model).exists():
        return BUILTIN_BASES[model]
    found = HUB_CACHE_FOLDER.search(Path(os.path.expanduser(model)).as_posix() + "/")
    if found:
        return f"{found.group(1)}/{found.group(2)}"
    if Path(os.path.expanduser(model)).exists() or looks_like_path(model) or not HUB_REPO.match(model):
        return None
    return model


def _local_name(source: str) -> str:
    return Path(os.path.expanduser(source.rstrip("/\\"))).name or source


def hub_datasets(sources: list[str]) -> list[str]:
    """The --data values that are Hugging Face datasets (not files, folders or the built-in corpus)."""
    return [s for s in sources if s not in BUILTIN_CORPORA and not looks_like_path(s)
            and not Path(os.path.expanduser(s)).exists() and HUB_REPO.match(s)]


def _describe_source(source: str, hub: list[str]) -> str:
    if source in hub:
        return f"[{source}](https://huggingface.co/datasets/{source})"
    if source in BUILTIN_DATA:
        return BUILTIN_DATA[source]
    return f"local text `{_local_name(source)}`"


def _base_license(model: str) -> str | None:
    """The base's license, when its local folder's card states one (minilm: apache-2.0)."""

    try:
        readme = Path(resolve_model(model)) / CARD
        if not readme.is_file():
            return None
        from huggingface_hub import ModelCard

        value = ModelCard.load(readme).data.license
    except Exception:
        return None
    return value if isinstance(value, str) else None


def human_seconds(seconds) -> str:
    """156.2 -> '2 min 36 s'; 4000 -> '1 h 6 min'; 8.4 -> '8.4 s'."""
    if not isinstance(seconds, (int, float)):
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _plural(n, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _num(value, digits: int = 2) -> str:
    return "n/a" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:,.{digits}f}"


def _pct(value) -> str:
    return "n/a" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.1%}"


def _when(value) -> str | None:
    """An ISO time or a Unix time as 'YYYY-MM-DD HH:MM UTC'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return _dt.datetime.fromtimestamp(value, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        except (OverflowError, OSError, ValueError):  # a results.json edited into nonsense (1e30, NaN)
            return None
    if isinstance(value, str) and value:
        try:
            moment = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone(_dt.timezone.utc)
            return moment.strftime("%Y-%m-%d %H:%M UTC")
        return moment.strftime("%Y-%m-%d %H:%M")
    return None


def _command(run: dict) -> str | None:
    """run.json's command with every absolute local path cut to its last component (`--data=news`):
    a card is for others to read, and the folders above say only where your files live."""
    command = run.get("command")
    if not isinstance(command, str) or not command.strip():
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None

    def short(word: str) -> str:
        flag, eq, value = word.partition("=")
        if eq and os.path.isabs(value):
            return f"{flag}={Path(value).name or value}"
        return Path(word).name if os.path.isabs(word) else word

    return shlex.join(short(word) for word in words)


def card_language(sources: list[str]) -> str | None:
    """The language of the text, when every source is one whose language is known (bbc-news: en)."""
    languages = {BUILTIN_LANGUAGES.get(s) if s in BUILTIN_CORPORA and not Path(s).exists() else None for s in sources}
    return languages.pop() if len(languages) == 1 and None not in languages else None


def widget_examples(config: dict, mask: str) -> list[dict]:
    """The run's probe sentences (its report's), in the model's own mask token, for the Hub's widget."""
    probes = [p for p in config.get("probe") or DEFAULT_PROBES if isinstance(p, str) and p.strip()]
    return [{"text": p.replace("[MASK]", mask)} for p in probes]


def hyperparameters(config: dict, processes) -> list[str]:
    """The card's hyperparameter list: the config values that shaped training, Trainer names first."""
    budget = config.get("max_steps") is not None or config.get("max_time") is not None  # epochs are then ignored
    lines = [f"- {name}: {config[key]}" for key, name in HYPERPARAMETERS
             if config.get(key) is not None and not (key == "epochs" and budget)]
    return lines + [f"- processes: {processes}"]


def card_text(out: Path, *, run: dict, results: dict, records: list[dict], repo: str | None = None) -> str:
    """The card of the run in `out` (its run.json, results.json and metrics.jsonl records)."""
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import EvalResult

    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    model = str(config.get("model") or "minilm")
    sources = [s for s in config.get("data") or [] if isinstance(s, str)]
    base = hub_base(model)
    # --eval-data (a separate validation source), when the run had one: the figures are measured on it
    eval_sources = [s for s in config.get("eval_data") or [] if isinstance(s, str)] or sources
    hub = list(dict.fromkeys(hub_datasets(sources) + hub_datasets(eval_sources)))
    eval_hub = hub_datasets(eval_sources)
    sentence = (out / "modules.json").is_file()
    name = repo or out.resolve().name
    perplexity, accuracy = results.get("eval_perplexity"), results.get("eval_accuracy")
    data_name = ", ".join(eval_hub) if eval_hub else ", ".join(_local_name(s) for s in eval_sources) or "text"
    split = config.get("eval_split") or ("held-out documents" if eval_sources is sources else None)
    evals = []
    for metric, value, label in (("perplexity", perplexity, "Eval perplexity (fixed masks)"),
                                 ("accuracy", accuracy, "Masked-token accuracy")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            evals.append(EvalResult(task_type="fill-mask", task_name="Masked language modeling",
                                    dataset_type=eval_hub[0] if len(eval_hub) == 1 else data_name, dataset_name=data_name,
                                    dataset_split=split, metric_type=metric, metric_name=label,
                                    metric_value=round(float(value), 4)))
    tags = ["mlmtune", "fill-mask", "masked-language-modeling", "domain-adaptation"]
    if sentence:
        tags += ["sentence-transformers", "feature-extraction", "sentence-similarity"]
    mask = _mask_example(out)
    data = ModelCardData(base_model=base, datasets=hub or None, library_name="transformers",
                         language=card_language([*sources, *eval_sources]), license=_base_license(model),
                         pipeline_tag="fill-mask", tags=tags, model_name=name if evals else None,
                         eval_results=evals or None, widget=widget_examples(config, mask))

    base_text = f"[{base}](https://huggingface.co/{base})" if base else f"a local model (`{_local_name(model)}`)"
    if model in BUILTIN_BASES and base:
        base_text += f" (mlmtune's built-in `{model}`)"
    summary = run.get("data") if isinstance(run.get("data"), dict) else {}
    grown = bool(run.get("new_parameters"))
    processes = run.get("processes", 1)
    trained_on = ", ".join(_describe_source(s, hub) for s in sources) or "text"
    lines = [
        MARKER, "", f"# {name}", "",
        f"{base_text[:1].upper()}{base_text[1:]} adapted to {trained_on} by masked "
        f"language modelling with [mlmtune](https://pypi.org/project/mlmtune/): {results.get('steps', 'n/a')} "
        f"optimizer steps over {_num(results.get('train_tokens'), 0)} training tokens "
        f"(blocks of {config.get('chunk_size', 'n/a')} tokens, batch {config.get('batch_size', 'n/a')} x "
        f"{_plural(processes, 'process', 'processes')} x {config.get('gradient_accumulation_steps', 1)} accumulation, "
        f"learning rate {config.get('lr', 'n/a')}).",
    ]
    if grown:
        lines += ["", "The base has no MLM head: training grew one (tied to the word embeddings) and "
                      f"warm-started it ({config.get('head_init') or 'warm'})."]
    if sentence:
        lines += ["", "The base is a sentence encoder: its sentence-transformers modules (modules.json, "
                      "pooling, normalisation) and pooler weights are kept, so `SentenceTransformer` loads this "
                      "model with the same pooling."]
    fresh = next((r for r in records if r.get("type") == "eval" and r.get("step") == 0), {})
    warm = next((r for r in records if r.get("type") == "warm_start"), {})
    base_accuracy = results.get("baseline_accuracy", fresh.get("accuracy"))
    held = summary.get("eval_examples")
    blocks = f"{held if held else 'the'} {'block' if held == 1 else 'blocks'}"
    if eval_sources is sources:  # held out of --data as whole documents
        where, clean = f"{held if held else 'the'} held-out {'block' if held == 1 else 'blocks'}", \
            "; no evaluation text is training text"
    else:
        where, clean = f"{blocks} of {', '.join(_describe_source(e, hub) for e in eval_sources)}", ""
    lines += ["", "## Results", "",
              f"Perplexity and masked-token accuracy on the same fixed masks of {where} "
              f"({_num(results.get('eval_masked_tokens'), 0)} masked tokens{clean}):", "",
              "| model | perplexity | accuracy |", "|---|---:|---:|",
              f"| base{' (fresh head)' if grown else ''} | {_num(results.get('baseline_perplexity'))} | "
              f"{_pct(base_accuracy)} |"]
    if results.get("warm_start_perplexity") is not None:
        lines.append(f"| warm-started head | {_num(results.get('warm_start_perplexity'))} | {_pct(warm.get('accuracy'))} |")
    lines.append(f"| **this model** | **{_num(perplexity)}** | **{_pct(accuracy)}** |")

    precision = results.get("precision", run.get("mixed_precision", "n/a"))
    precision = PRECISION.get(precision, precision)
    started = _when(results.get("started_at") or run.get("started"))
    finished = _when(results.get("finished_at"))
    period = f"{started} to {finished}" if started and finished else started or "n/a"
    lines += ["", "## Training", "",
              f"- time: {human_seconds(results.get('train_seconds'))} training, "
              f"{human_seconds(results.get('wall_seconds'))} in all ({period})",
              f"- device: {run.get('device', 'n/a')}, precision {precision}, "
              f"{_plural(processes, 'process', 'processes')}",
              f"- data: {_num(summary.get('documents'), 0)} documents, {_num(summary.get('train_examples'), 0)} "
              f"training and {_num(held, 0)} evaluation blocks",
              "- files: `run.json` (the whole config), `metrics.jsonl`, `results.json`"
              + (", `report.html` (curves and before/after fill-mask)" if config.get("report", True)
                 or (out / "report.html").is_file() else "")]
    versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {versions[k]}" for k in ("mlmtune", "transformers", "torch")
                                                  if k in versions))
    lines += ["", "Hyperparameters:", "", *hyperparameters(config, processes)]
    command = _command(run)
    if command:
        lines += ["", "The command:", "", "```bash", command, "```"]
    continued = [c for c in run.get("continued") or [] if isinstance(c, dict)]
    if continued:  # the command above plans the last total from the start: say how the run went on
        def total(plan: dict) -> str:
            return str(plan.get("total_steps") or human_seconds(plan.get("max_time_seconds")))

        plans = ", then ".join(total(plan) for plan in [*continued, run])
        unit = " steps" if run.get("total_steps") else ""
        lines += ["", f"It was then continued with `--resume` {_plural(len(continued), 'time', 'times')} "
                      f"(planned {plans}{unit}); the learning-rate schedule is rebuilt for each new total."]
    # A bare "demo" is a Hub id to transformers unless a folder of that name is in the working directory:
    # name the repo when there is one, else this folder as a path (its parents are the user's own layout).
    where = repo or f"./{name}"
    local = "" if repo else "  # this folder; once pushed, its repo id (user/name)"
    lines += ["", "## Use", "", "```python", "from transformers import pipeline", "",
              f'fill = pipeline("fill-mask", model="{where}"){local}',
              f'fill("The {mask} is happy.")', "```"]
    if sentence:
        lines += ["", "```python", "from sentence_transformers import SentenceTransformer", "",
                  f'model = SentenceTransformer("{where}"){local}',
                  'vectors = model.encode(["A sentence to embed."])', "```"]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n").content


def _mask_example(out: Path) -> str:
    config = read_json_object(out / "tokenizer_config.json")
    token = config.get("mask_token")
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) and token else "[MASK]"


def write_card(output_dir: str | Path, *, results: dict | None = None, repo: str | None = None,
               say=None) -> list[str]:
    """Write OUTPUT/README.md atomically; returns ["README.md"], or [] when README.md is a user's own
    file (kept, with a note). `results`: the run's results when results.json is not written yet (the
    end of `mlmtune train`); otherwise results.json is read, and the card added to its `files`."""
    out = Path(output_dir)
    path = out / CARD
    if not is_ours(path):
        if say:
            say(f"note: {path} is not a model card mlmtune wrote, so it is kept and no card is written")
        return []
    listed = results is None
    results = results if results is not None else read_json_object(out / "results.json")
    run = read_json_object(out / "run.json")
    atomic_write_text(path, card_text(out, run=run, results=results, records=read_metrics(out / "metrics.jsonl"),
                                      repo=repo))
    if listed and results and isinstance(results.get("files"), list) and CARD not in results["files"]:
        results["files"] = [*results["files"], CARD]  # a run from before cards: --overwrite may replace it
        atomic_write_json(out / "results.json", results)
    return [CARD]
