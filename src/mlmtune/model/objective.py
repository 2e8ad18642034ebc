"""The masked-LM objective, and the one forward pass that scores only the masked positions.

The vocabulary projection is the costliest layer of a small encoder: (tokens x hidden) @ (hidden x
30k). Only ~15% of positions carry a label, so `masked_logits` runs the encoder, picks the hidden
states at the wanted positions and applies the head to those alone. Training (MaskedLMObjective),
fill-mask (FillMask), the cloze probe and the masked-word measure all call it. The loss is the same
sum as the full computation (tests check it to 1e-5 in fp32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.masking import IGNORE_INDEX


def masked_positions_head(model: nn.Module):
    """The function hidden states -> vocabulary logits of a known MLM family, or None.

    A closure, not a module attribute, so the head is not registered twice in the state dict.
    """
    if hasattr(model, "cls") and hasattr(model.cls, "predictions"):  # BERT and relatives
        return lambda h: model.cls(h)
    if hasattr(model, "lm_head") and model.config.model_type in ("roberta", "xlm-roberta", "camembert"):
        return lambda h: model.lm_head(h)
    if hasattr(model, "vocab_projector"):  # DistilBERT

        def distilbert_head(h: torch.Tensor) -> torch.Tensor:
            return model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))

        return distilbert_head
    return None


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
