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


class MaskedLMObjective(nn.Module):
    """Wraps a *ForMaskedLM: forward returns the summed NLL and correct count over labelled positions.

    Going through this module's forward (not `model.base_model` from outside) keeps DDP's
    gradient hooks and Accelerate's autocast in the path.
    """

    def __init__(self, model: nn.Module, sparse: bool = True):
        super().__init__()
        self.model = model
        self.head = masked_positions_head(model) if sparse else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        picked = labels != IGNORE_INDEX  # (B, L) bool
        if self.head is not None:
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, L, H)
            logits = self.head(hidden[picked])  # (M, V): only the labelled positions
        else:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits[picked]
        targets = labels[picked]  # (M,)
        nll = F.cross_entropy(logits.float(), targets, reduction="sum")  # fp32 loss under autocast too
        if self.training:  # the training loop does not use the count: skip the (M x V) argmax (~2.5% of a step)
            return nll, torch.zeros((), dtype=torch.long, device=nll.device)
        correct = (logits.argmax(-1) == targets).sum()
        return nll, correct
