"""`--push-to-hub REPO` and `mlmtune push OUT REPO`: upload a finished output folder to the Hub.

What goes up is what the run wrote (outputs.run_written): the model and tokenizer, the
sentence-transformers modules, the card (README.md, rewritten for the repository first), report.html,
curves.png, run.json, results.json and metrics.jsonl; never checkpoints/ (unless `--checkpoints`),
a tracker's log folder, a temporary, or a file of the user's that happens to lie in the folder.

`check_hub_access` runs before training (offline, no token, a malformed repository name: one line,
nothing trained in vain); the upload itself runs after the folder is complete, so a failure there
(no network, a token without write access) loses nothing: `mlmtune push OUT REPO` retries it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, HubError
from .card import write_card
from .files import TEMP_PREFIX, read_json
from .layout import _tracker_folder, is_run, run_written
from .layout import inside as _inside
from .ownership import run_folder_lock

LOGIN = "set HF_TOKEN to a token with write access (https://huggingface.co/settings/tokens) or run `hf auth login`"


def check_hub_access(repo: str | None, flag: str = "--push-to-hub") -> None:
    """Refuse, before anything runs, a push that cannot happen: a malformed repository id, offline
    mode (HF_HUB_OFFLINE), no token."""
    if repo is None:
        return
    from huggingface_hub import constants, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        if not repo.strip() or repo != repo.strip():
            raise HFValidationError("it is empty or has spaces around it")
        validate_repo_id(repo)
    except HFValidationError as exc:
        first = str(exc).splitlines()[0][:120]
        raise ConfigError(f"{flag} {repo!r} is not a Hub repository id ({first}): give owner/name, "
                          "e.g. me/bert-news") from None
    if constants.is_offline_mode():
        later = (f", or leave out {flag} and upload later with `mlmtune push OUTPUT {repo}`"
                 if flag.startswith("--") else "")
        raise ConfigError(f"{flag} needs the network, but HF_HUB_OFFLINE is set: unset it{later}")
    if not get_token():
        raise ConfigError(f"{flag} {repo} needs a Hugging Face token and none is set: {LOGIN}")


def files_to_push(out: Path, checkpoints: bool = False) -> list[str]:
    """The run's own files in `out`, as paths relative to it."""

    here = out.resolve()
    tracker = _tracker_folder(out)
    names = []
    for path in run_written(out):
        if path.name.startswith(TEMP_PREFIX) or path == tracker:
            continue
        if path.parent.name == "checkpoints":
            if checkpoints:
                names += [p.relative_to(out).as_posix() for p in sorted(path.rglob("*")) if p.is_file()]
            continue
        if path.is_file() and _inside(path.resolve(), here):  # never a link to a file elsewhere (private notes)
            names.append(path.relative_to(out).as_posix())
    return sorted(names)


def push(output_dir: str | Path, repo: str, *, private: bool | None = None, checkpoints: bool = False,
         say=print) -> str:
    """Upload the finished run in `output_dir` to the model repository `repo` (created if missing).
    Returns the URL of the commit. Holds the folder's lock while it rewrites the card and uploads (a run
    writing the folder refuses it, and it refuses a run)."""
    out = Path(output_dir)
    check_hub_access(repo, "push")
    with run_folder_lock(out, "push", say):
        return _push(out, repo, private=private, checkpoints=checkpoints, say=say)


def _push(out: Path, repo: str, *, private: bool | None, checkpoints: bool, say) -> str:

    if not is_run(out):
        raise ConfigError(f"{out} holds no run (no run.json mlmtune wrote): give a folder written by mlmtune train")
    if not (out / "results.json").is_file() or not (out / "config.json").is_file():
        raise ConfigError(f"{out} holds no finished model (no results.json): let the run finish (or resume it with "
                          f"mlmtune train --config {out / 'run.json'} --resume), then push")
    listed = _read_results_files(out)
    lost = [n for n in listed if n != "README.md" and not (out / n).is_file()]
    if lost:  # a repository without its weights (or tokenizer) is a model no one can load
        raise ConfigError(f"{out} lacks {', '.join(lost[:3])}{' ...' if len(lost) > 3 else ''} that its run saved "
                          "(results.json lists it): put it back, or train again, then push")

    try:
        write_card(out, repo=repo, say=say)  # the card names the repository in its example
    except OSError as exc:  # a read-only copy of a run: upload the card it has
        say(f"note: the card in {out} cannot be rewritten for {repo} ({exc.strerror or exc}); it is uploaded as it is")
    names = files_to_push(out, checkpoints)
    if "README.md" in names:  # an edited card's metadata the Hub would refuse: say so before any upload
        from huggingface_hub import ModelCard

        try:
            ModelCard.load(out / "README.md", ignore_metadata_errors=False)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise ConfigError(f"{out / 'README.md'} has metadata the Hub cannot read ({first}): fix the YAML block at "
                              "its top, or delete README.md to have mlmtune write its card, then push") from None
    from huggingface_hub import HfApi

    api = HfApi()
    say(f"uploading {len(names)} files of {out} to {api.endpoint}/{repo}")
    try:
        api.create_repo(repo, exist_ok=True, private=private)
        commit = api.upload_folder(folder_path=out, repo_id=repo, allow_patterns=names,
                                   commit_message=f"mlmtune: upload {out.resolve().name}")
    except Exception as exc:  # httpx, HfHubHTTPError, OSError: one line, the folder stays as it is
        raise HubError(f"the upload of {out} to {repo} failed ({_reason(exc)}): the model stays complete in {out}; "
                       f"{_fix(exc)}, then run `mlmtune push {out} {repo}`") from None
    url = getattr(commit, "commit_url", None) or f"{api.endpoint}/{repo}"
    say(f"pushed to {api.endpoint}/{repo} ({url})")
    return str(url)


def _read_results_files(out: Path) -> list[str]:
    results = read_json(out / "results.json")
    names = results.get("files") if isinstance(results, dict) else None
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _reason(exc: BaseException) -> str:
    status = _status(exc)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return f"HTTP {status}: {first}" if status else f"{type(exc).__name__}: {first}"


def _fix(exc: BaseException) -> str:
    status = _status(exc)
    if status in (401, 403):
        return f"the token has no write access to this repository: {LOGIN}"
    if status is None:
        return "check your network and HF_ENDPOINT"
    return "check the repository name and your access to it"
