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


class MaskedLMObjective(nn.Module):
    """Wraps a *ForMaskedLM: forward returns the summed NLL and correct count over labelled positions.

    Going through this module's forward (not `model.base_model` from outside) keeps DDP's
    gradient hooks and Accelerate's autocast in the path.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.head = masked_positions_head(model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        picked = labels != IGNORE_INDEX  # (B, L) bool
        logits = masked_logits(self.model, self.head, input_ids, attention_mask, picked)  # (M, V)
        targets = labels[picked]  # (M,)
        nll = F.cross_entropy(logits.float(), targets, reduction="sum")  # fp32 loss under autocast too
        if self.training:  # the training loop does not use the count: skip the (M x V) argmax (~2.5% of a step)
            return nll, torch.zeros((), dtype=torch.long, device=nll.device)
        correct = (logits.argmax(-1) == targets).sum()
        return nll, correct
