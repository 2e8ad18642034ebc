"""--freeze-layers N: for the first --freeze-until share of the run, the lowest N encoder layers and the
embeddings (but their word rows) take no gradient, and no backward runs through them.

A short run from a pretrained encoder spends its first steps fitting the head and the upper layers to
the new text; the lower layers move little then. Cutting the backward at layer N (its output is
detached) makes those steps cheaper (minilm, 4 of 6 layers: about 0.6x the FLOPs of a full step), so a
budget holds more of them; then every layer trains. The word embeddings stay trainable throughout: the
MLM head's decoder is tied to them, and the head is what learns most at first.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError


def encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The list of the encoder's layers of a *ForMaskedLM: the ModuleList under its base model whose
    length is config.num_hidden_layers (BERT, RoBERTa, DistilBERT, ELECTRA, MPNet, DeBERTa, ModernBERT...);
    None where there is none (ALBERT shares one layer between its positions)."""
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layers", None)
    for module in model.base_model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    return None


class LowerLayersFrozen:
    """Freeze the lowest `n` layers (and the embeddings but the word rows) until `until` of the run."""

    def __init__(self, model: nn.Module, n: int, until: float):
        layers = encoder_layers(model)
        if layers is None:
            raise ConfigError(f"--freeze-layers: {type(model).__name__} has no list of "
                              f"{getattr(model.config, 'num_hidden_layers', '?')} encoder layers to freeze (its layers "
                              "are shared or named otherwise): drop --freeze-layers")
        if n > len(layers):
            raise ConfigError(f"--freeze-layers {n} is more than the model's {len(layers)} encoder layers: give at "
                              f"most {len(layers)}")
        words = model.get_input_embeddings().weight
        below = list(layers[:n])
        embeddings = getattr(model.base_model, "embeddings", None)
        if embeddings is not None:
            below.append(embeddings)
        self.params = [p for m in below for p in m.parameters() if p is not words]
        self.boundary, self.until = layers[n - 1], until
        self.hook = None
        self.frozen = False

    def update(self, progress: float) -> None:
        """Frozen while `progress` (the share of the run done, 0..1) is below `until`, thawed after."""
        if progress < self.until and not self.frozen:
            self._freeze()
        elif progress >= self.until and self.frozen:
            self._thaw()

    def _freeze(self) -> None:
        for p in self.params:
            p.requires_grad_(False)
        self.hook = self.boundary.register_forward_hook(detach_output)
        self.frozen = True

    def _thaw(self) -> None:
        for p in self.params:
            p.requires_grad_(True)
        self.hook.remove()
        self.hook = None
        self.frozen = False


def detach_output(module: nn.Module, inputs, output):
    """A forward hook: the layer's output without its history, so the backward stops here."""
    if isinstance(output, tuple):
        return (output[0].detach(),) + output[1:]
    return output.detach()
