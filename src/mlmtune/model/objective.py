"""The masked-LM objective, and the one forward pass that scores only the masked positions.

The vocabulary projection is the costliest layer of a small encoder: (tokens x hidden) @ (hidden x
30k). Only ~15% of positions carry a label, so `masked_logits` runs the encoder, picks the hidden
states at the wanted positions and applies the head to those alone. Training (MaskedLMObjective),
fill-mask (FillMask), the cloze probe and the masked-word measure all call it. The loss is the same
sum as the full computation (tests check it to 1e-5 in fp32).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..data.masking import IGNORE_INDEX

# Each family's MLM head: the modules its *ForMaskedLM applies, in order, to the encoder's last hidden
# states (`model.base_model(...)[0]`), each position on its own. tests/model/test_objective.py checks every
# entry against the family's full logits, loss and gradients to 1e-5.
HEAD_MODULES = {
    "bert": ("cls",),
    "roberta": ("lm_head",),  # and DistilRoBERTa
    "xlm-roberta": ("lm_head",),
    "camembert": ("lm_head",),
    "mpnet": ("lm_head",),
    "albert": ("predictions",),
    "electra": ("generator_predictions", "generator_lm_head"),  # the generator, ELECTRA's masked LM
    "modernbert": ("head", "decoder"),  # its base model applies the final norm
    "distilbert": ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),
}
# children of a *ForMaskedLM that are no part of its head (DistilBERT keeps its loss as a module)
LOSS_MODULES = (nn.CrossEntropyLoss, nn.Dropout)
# a guessed head, checked once per model: its module names, or None for the full logits
_verified: "weakref.WeakKeyDictionary[nn.Module, tuple[str, ...] | None]" = weakref.WeakKeyDictionary()


def _chain(model: nn.Module, names: tuple[str, ...]):
    """hidden -> logits through model.<name> for each name. The modules are looked up at each call, so a
    head whose decoder is replaced (resize_token_embeddings for --add-tokens) is the new one."""

    def head(h: torch.Tensor) -> torch.Tensor:
        for name in names:
            h = getattr(model, name)(h)
        return h

    return head


def _deberta_head(model: nn.Module):
    """DeBERTa's head: BERT's (`cls`, the default `legacy` config) or the newer one that takes the word embeddings."""
    if hasattr(model, "cls"):
        return _chain(model, ("cls",))
    return lambda h: model.lm_predictions(h, model.deberta.embeddings.word_embeddings)


def masked_positions_head(model: nn.Module):
    """The function hidden states -> vocabulary logits of the model's MLM head, or None: then the model's
    own forward computes the logits at every position (the same loss, a costlier head).

    A known family's head is HEAD_MODULES'. Another model's head is guessed as its modules beside the base
    model, in the order it registers them (BERT's relatives: `cls`), and kept only when it gives the model's
    own logits on a short input (checked once per model). A closure, not a module attribute, so the head
    is not registered twice in the state dict.
    """
    kind = getattr(model.config, "model_type", "")
    if kind in ("deberta", "deberta-v2"):
        return _deberta_head(model)
    names = HEAD_MODULES.get(kind)
    if names is not None and all(hasattr(model, n) for n in names):
        return _chain(model, names)
    if model not in _verified:
        _verified[model] = _guessed_head(model)
    names = _verified[model]
    return _chain(model, names) if names else None


def full_logits_note(model: nn.Module) -> str | None:
    """One line for a model whose MLM head runs at every position (masked_positions_head is None), else None."""
    if masked_positions_head(model) is not None:
        return None
    kind = getattr(model.config, "model_type", "?")
    return (f"note: mlmtune knows no masked-position head for {type(model).__name__} ({kind}), so its MLM head "
            "runs at every position instead of the masked ones alone (~15%): the same loss, a slower step")


@torch.no_grad()
def _guessed_head(model: nn.Module) -> tuple[str, ...] | None:
    """The modules beside the base model, in registration order, when they give the model's own logits
    (to 1e-4) on a short input with dropout off; None otherwise."""
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return None
    names = tuple(n for n, m in model.named_children() if m is not base and not isinstance(m, LOSS_MODULES))
    if not names:
        return None
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0)).to(device)
    attention = torch.ones_like(ids)
    was_training = model.training
    model.eval()
    try:
        with torch.autocast(device.type, enabled=False):
            full = model(input_ids=ids, attention_mask=attention).logits.float()
            sparse = _chain(model, names)(base(input_ids=ids, attention_mask=attention)[0]).float()
    except Exception:  # a head that takes more than the hidden states
        return None
    finally:
        model.train(was_training)
    same = sparse.shape == full.shape and torch.allclose(sparse, full, rtol=1e-4, atol=1e-4)
    return names if same else None


def masked_logits(model: nn.Module, head, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  picked: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits at the `picked` positions only: (M, V) for a (B, L) bool `picked`, in row-major
    order. `head` is masked_positions_head(model); for a family without one (None) the model computes
    its full logits and they are picked after."""
    if head is not None:
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, L, H)
        return head(hidden[picked])  # (M, V)
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[picked]


def slot_logits(model: nn.Module, head, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor) -> torch.Tensor:
    """masked_logits at flat `positions` (K,) of the (B, L) batch: one shape for a compiled graph. A padding
    slot points at position 0 (its target -100 costs nothing in the loss and its gradient is zero)."""
    if head is not None:
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, L, H)
        return head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))  # (K, V)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits.reshape(-1, logits.shape[-1]).index_select(0, positions)


def tied_groups(model: nn.Module) -> list[list[str]]:
    """The names under which one parameter appears more than once (a decoder tied to the word
    embeddings, a decoder bias tied to the head's bias), each group in the model's own order."""
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return [group for group in names.values() if len(group) > 1]


def retie(state: dict, groups: list[list[str]]) -> dict:
    """A state dict gathered from shards (FSDP, DeepSpeed ZeRO-3) holds a separate copy per tied name;
    point them all at the first again, so the model is saved with each tensor once, as from one process."""
    for first, *others in groups:
        if first in state:
            for name in others:
                if name in state:
                    state[name] = state[first]
    return state


def separable_layers(model: nn.Module) -> list[str]:
    """The model's layer classes (its `_no_split_modules`) whose modules share no parameter with another
    module: FSDP may shard each such layer on its own. The embeddings, whose weight the decoder shares,
    stay with the root, which FSDP2 requires of a shared parameter."""
    uses: dict[int, int] = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        uses[id(parameter)] = uses.get(id(parameter), 0) + 1
    shared = {key for key, count in uses.items() if count > 1}
    found = []
    for name in getattr(model, "_no_split_modules", None) or []:
        modules = [m for m in model.modules() if type(m).__name__ == name]
        if modules and not any(id(p) in shared for m in modules for p in m.parameters()):
            found.append(name)
    return found


class MaskedLMObjective(nn.Module):
    """Wraps a *ForMaskedLM: forward returns the summed NLL and correct count over labelled positions.

    Going through this module's forward (not `model.base_model` from outside) keeps DDP's
    gradient hooks and Accelerate's autocast in the path.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.head = masked_positions_head(model)

    @property
    def _no_split_modules(self) -> list[str]:
        """What Accelerate's FSDP transformer wrap shards layer by layer (read from the prepared module)."""
        return separable_layers(self.model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                positions: torch.Tensor | None = None, targets: torch.Tensor | None = None):
        """`positions`, `targets` (--compile): the labelled positions as flat indices into (B * L), padded
        to static slots (target -100), instead of a boolean index whose size changes every batch."""
        if positions is None:
            picked = labels != IGNORE_INDEX  # (B, L) bool
            logits = masked_logits(self.model, self.head, input_ids, attention_mask, picked)  # (M, V)
            targets = labels[picked]  # (M,)
        else:
            logits = slot_logits(self.model, self.head, input_ids, attention_mask, positions)  # (K, V)
        nll = F.cross_entropy(logits.float(), targets, reduction="sum")  # fp32 loss under autocast too
        if self.training:  # the training loop does not use the count: skip the (M x V) argmax (~2.5% of a step)
            return nll, torch.zeros((), dtype=torch.long, device=nll.device)
        correct = ((logits.argmax(-1) == targets) & (targets != IGNORE_INDEX)).sum()
        return nll, correct
