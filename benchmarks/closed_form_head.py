"""Issue 22's lever "a better head start": a grown MLM head fitted in closed form, against the unigram bias
alone (the demo's `--head-init warm`) and the SGD pre-fit (`--head-init prefit`), on the same cached features.

minilm (no MLM head) on bbc-news: the frozen encoder's hidden states at the masked positions of 768 blocks of
128 tokens (30% masked: ~29k features) fit the head; 150 other blocks (15% masked) score it. The closed form
is ridge least squares from a hidden state h to the target's tied embedding row E[y]: A = argmin
|[h, 1] A - E[y]|^2 + ridge |A|^2. BERT's head is LayerNorm(gelu(W h + b)) E^T + bias; with W = A^T and b
shifted by +20 the gelu is the identity on it and the LayerNorm removes the shift, so the head computes the
fitted direction, normalised, at a scale (the LayerNorm's weight) chosen on the training features. Variants:
the raw rows, the rows less their mean (the bias carries the frequencies), and W = I (the hidden state itself).
The SGD pre-fit is the library's own (warmstart.prefit, at its constants).

    python benchmarks/closed_form_head.py      # ~10 min on 2 cores; clock-independent (seeded)
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SHIFT = 20.0  # added to the dense layer's bias: gelu(x + 20) = x + 20 for the pre-activations seen here
SCALES = [0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.35, 0.5, 1, 2]
RIDGES = [1.0, 30.0]


def main() -> None:
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from mlmtune.data.sources import bbc_news_folder
    from mlmtune.model import warmstart
    from mlmtune.model.load import load_masked_lm, quiet_transformers, resolve_model

    quiet_transformers()
    torch.manual_seed(0)
    lm = load_masked_lm("minilm", seed=42)
    model = lm.model.eval()
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    files = sorted(bbc_news_folder().rglob("*.txt"))
    random.Random(1).shuffle(files)
    ids: list[int] = []
    for f in files[:400]:
        ids.extend(tok(f.read_text(encoding="latin-1"), add_special_tokens=False)["input_ids"] + [tok.sep_token_id])
    blocks = [[tok.cls_token_id] + ids[i:i + 126] + [tok.sep_token_id] for i in range(0, len(ids) - 126, 126)]
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.3)

    def features(chosen):
        hs, ys = [], []
        for i in range(0, len(chosen), 32):
            b = collator([{"input_ids": x} for x in chosen[i:i + 32]])
            with torch.no_grad():
                h = model.base_model(input_ids=b["input_ids"])[0]
            picked = b["labels"] != -100
            hs.append(h[picked])
            ys.append(b["labels"][picked])
        return torch.cat(hs), torch.cat(ys)

    t0 = time.perf_counter()
    h_fit, y_fit = features(blocks[:768])
    collator.mlm_probability = 0.15
    h_eval, y_eval = features(blocks[-150:])
    print(f"{len(blocks)} blocks; {len(h_fit):,} features to fit, {len(h_eval):,} to score "
          f"({time.perf_counter() - t0:.0f} s of encoder forward)")
    warmstart.set_unigram_bias(model, warmstart.unigram_counts(np.array(ids), model.config.vocab_size),
                               tok.all_special_ids)
    head = model.cls.predictions
    bias_only = {k: v.clone() for k, v in head.state_dict().items()}

    def perplexity(h, y) -> float:
        with torch.no_grad():
            return math.exp(F.cross_entropy(head(h), y).item())

    def set_head(weight, bias) -> tuple[float, float]:
        """Install the transform; pick the LayerNorm scale on the fit features. (scale, eval perplexity)"""
        with torch.no_grad():
            head.transform.dense.weight.copy_(weight)
            head.transform.dense.bias.copy_(bias + SHIFT)
            head.transform.LayerNorm.bias.zero_()
        scores = []
        for s in SCALES:
            head.transform.LayerNorm.weight.data.fill_(s)
            scores.append((perplexity(h_fit, y_fit), s))
        scale = min(scores)[1]
        head.transform.LayerNorm.weight.data.fill_(scale)
        return scale, perplexity(h_eval, y_eval)

    print("| head start | eval perplexity |\n|---|---:|")
    print(f"| unigram bias alone (random transform) | {perplexity(h_eval, y_eval):,.1f} |")
    embeddings = model.get_input_embeddings().weight.detach()
    x = torch.cat([h_fit, torch.ones(len(h_fit), 1)], 1)
    for centred in (False, True):
        rows = embeddings - embeddings.mean(0) if centred else embeddings
        for ridge in RIDGES:
            a = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1]), x.T @ rows[y_fit])
            scale, ppl = set_head(a[:-1].T, a[-1])
            print(f"| least squares to E[y]{' - mean' if centred else ''}, ridge {ridge:g} (scale {scale:g}) "
                  f"| {ppl:,.1f} |")
    hidden = h_fit.shape[1]
    scale, ppl = set_head(torch.eye(hidden), torch.zeros(hidden))
    print(f"| W = I: the hidden state itself (scale {scale:g}) | {ppl:,.1f} |")

    head.load_state_dict(bias_only)
    t0 = time.perf_counter()
    warmstart.prefit(model, head, lm.new_parameters, h_fit, y_fit, passes=warmstart.PREFIT_PASSES,
                     lr=warmstart.PREFIT_LR, rows=warmstart.PREFIT_ROWS, seed=0)
    print(f"| SGD pre-fit, {warmstart.PREFIT_PASSES} passes ({time.perf_counter() - t0:.0f} s) "
          f"| {perplexity(h_eval, y_eval):,.1f} |")


if __name__ == "__main__":
    main()
