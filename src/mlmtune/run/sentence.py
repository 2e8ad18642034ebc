"""Sentence encoders stay sentence encoders.

A sentence-transformers model (all-MiniLM, mpnet, e5, bge, ...) is a transformer plus modules listed
in `modules.json` beside its weights: a Pooling module (mean of the token vectors), often a
Normalize module (unit vectors) and sometimes a Dense one, each with its folder and config, and
`sentence_bert_config.json` (the longest input). `save_pretrained` of the masked LM writes none of
them, so `SentenceTransformer(OUTPUT)` would guess mean pooling without normalisation (vectors of
norm ~4 instead of 1). And a *ForMaskedLM has no pooler, so the base's pooler weights were lost
(`AutoModel(OUTPUT)` reported them missing, freshly initialised).

`sentence_layout(model)` reads those files and the pooler weights from the base before the final
save; `pooler_weights` adds the pooler to the state dict the masked LM is saved from (as
bert-base-uncased holds one beside its MLM head: `AutoModelForMaskedLM` lists it as unexpected and
ignores it), and `write_sentence_files` copies the sentence-transformers files into the output
folder, each atomically. Nothing here raises: a base whose files cannot be read (a Hub id offline
and not in the cache) gives a plain masked LM, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..model.load import resolve_model
from .files import atomic_write_bytes
from .layout import inside

# Top-level files of a sentence-transformers folder, besides the module folders modules.json names.
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
MODULE_FILE_LIMIT = 64 << 20  # a module folder holds configs and at most a small Dense layer


@dataclass
class SentenceLayout:
    files: dict[str, bytes] = field(default_factory=dict)  # relative POSIX path -> content
    modules: list[str] = field(default_factory=list)  # the module types, in order (for the card)
    missing: list[str] = field(default_factory=list)  # what makes the module set incomplete: then none is copied


# Module types that keep no file of their own (sentence-transformers loads them from modules.json alone),
# and those whose folder must hold a config.json; any other module needs a folder with at least one file.
NO_FILES = {"Normalize"}
NEEDS_CONFIG = {"Pooling", "Dense"}


def _local_folder(model: str, patterns: list[str]) -> Path | None:
    """The base's folder: a local one as it is, a Hub id's snapshot of `patterns` (from the cache,
    or downloaded when online); None when it cannot be had."""
    source = resolve_model(model)
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=patterns))
    except Exception:  # offline and not cached, no such repo, ...: the output is a plain masked LM
        return None


def _safe_relative(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and all(
        p not in ("", ".", "..") and not p.startswith(".") for p in parts)


def _own_file(path: Path, folder: Path, kind: str = "file") -> bool:
    """`path` is a file of the base itself: it resolves inside the base's folder, or, for a snapshot of
    the Hugging Face cache (models--org--name/snapshots/<hash>, whose files link into ../../blobs),
    inside that repository's cache folder. A link out to the user's other files (~/.ssh, say) is not
    copied into the output, which --push-to-hub may publish."""
    roots = [folder.resolve()]
    if folder.parent.name == "snapshots":
        roots.append(folder.parent.parent.resolve())
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return False
    exists = path.is_file() if kind == "file" else path.is_dir()
    return exists and any(inside(real, root) for root in roots)


def sentence_layout(model: str) -> SentenceLayout | None:
    """The sentence-transformers files of the base `model`, or None when it is not such a model. A module
    folder that modules.json names and the base lacks, or a file of it that cannot be copied (a link out of
    the base, too large), is listed in `missing`: a modules.json naming an absent module would make
    `SentenceTransformer(OUTPUT)` fail, so such a set is not copied at all (keep_sentence_encoder)."""
    folder = _local_folder(model, ["modules.json"])
    if folder is None or not (folder / "modules.json").is_file():
        return None
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        entries = [(m.get("path", ""), str(m.get("type", ""))) for m in modules]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    paths = {p.strip("/") for p, _ in entries if isinstance(p, str) and p.strip("/")}
    folders = sorted(p for p in paths if _safe_relative(p))
    if not Path(resolve_model(model)).is_dir():  # a Hub id: fetch the module folders too
        folder = _local_folder(model, [*SENTENCE_FILES, *(f"{p}/*" for p in folders)]) or folder
    layout = SentenceLayout(modules=[t.rsplit(".", 1)[-1] for _, t in entries])
    layout.missing += [f"the module path {p!r} leads out of the base" for p in sorted(paths - set(folders))]
    for name in SENTENCE_FILES:
        if _own_file(folder / name, folder):
            layout.files[name] = (folder / name).read_bytes()
    if "modules.json" not in layout.files:
        layout.missing.append("modules.json links out of the base")
    kinds = {str(p).strip("/"): t.rsplit(".", 1)[-1] for p, t in entries}
    for sub in folders:
        _read_module(folder, sub, layout, needed=kinds.get(sub) not in NO_FILES)
    for sub in folders:
        kind = kinds.get(sub)
        if kind in NO_FILES:
            continue
        if not any(name.startswith(f"{sub}/") for name in layout.files):
            layout.missing.append(f"{sub}/ is missing or empty")
        elif kind in NEEDS_CONFIG and f"{sub}/config.json" not in layout.files:
            layout.missing.append(f"{sub}/config.json is missing")
    return layout


def _read_module(folder: Path, sub: str, layout: SentenceLayout, *, needed: bool) -> None:
    """The files of one module folder into `layout`. One that cannot be copied (a link out of the base, too
    large) is never copied, and goes into `missing` when the module `needed` its files (not a Normalize)."""
    module = folder / sub
    if not module.is_dir():
        return
    problems = []
    if not _own_file(module, folder, kind="folder"):
        problems.append(f"{sub}/ links out of the base")
    else:
        for path in sorted(module.rglob("*")):  # each file checked: links may lead out
            if path.is_dir() and not path.is_symlink():
                continue
            relative = path.relative_to(folder).as_posix()
            if not _own_file(path, folder) or not _safe_relative(relative):
                problems.append(f"{relative} links out of the base")
            elif path.stat().st_size > MODULE_FILE_LIMIT:
                problems.append(f"{relative} is larger than {MODULE_FILE_LIMIT >> 20} MB")
            else:
                layout.files[relative] = path.read_bytes()
    if needed:
        layout.missing += problems


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / s for s in shards]
    return [p for p in (folder / "model.safetensors", folder / "pytorch_model.bin") if p.is_file()][:1]


def pooler_weights(model: str, prefix: str, have: set[str]) -> dict:
    """The base's pooler weights under the output model's key names (`prefix`.pooler.*), for the keys
    the output lacks; {} when the base has no pooler or its weights cannot be read."""
    import torch

    # the top-level weights only (loading the model put them in the cache), never onnx/ or a module's
    folder = _local_folder(model, ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors",
                                   "pytorch_model.bin"])
    if folder is None:
        return {}
    found = {}
    try:
        for path in _weight_files(folder):
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as f:
                    tensors = {k: f.get_tensor(k) for k in f.keys() if "pooler." in k}
            else:
                tensors = {k: v for k, v in torch.load(path, map_location="cpu", weights_only=True).items()
                           if "pooler." in k}
            for key, tensor in tensors.items():
                relative = key.removeprefix(f"{prefix}.")
                target = f"{prefix}.{relative}" if prefix else relative
                if relative.startswith("pooler.") and target not in have:
                    found[target] = tensor
    except Exception:  # a damaged or unusual checkpoint: keep the masked LM as it is
        return {}
    return found


def keep_sentence_encoder(base: str, model, state: dict, say=print):
    """The base's pooler weights go into `state` (a *ForMaskedLM has no pooler); returns the base's
    sentence-transformers files to write beside the model, or None (an incomplete set: with a note)."""
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and any(k.startswith(f"{prefix}.") for k in state):
        dtype = model.get_input_embeddings().weight.dtype
        state.update({k: v.to(dtype) for k, v in pooler_weights(base, prefix, set(state)).items()})
    layout = sentence_layout(base)
    if layout is not None and layout.missing:
        say(f"note: the sentence-transformers modules of {base} are incomplete ({'; '.join(layout.missing[:3])}), so "
            "the output is a plain masked LM without them (SentenceTransformer would fail on the missing module)")
        return None
    return layout


def write_sentence_files(layout: SentenceLayout, out: Path) -> list[str]:
    """Copy the sentence-transformers files into `out` (each atomically); returns their relative paths."""
    written = []
    for relative, data in layout.files.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
        written.append(relative)
    return sorted(written)
