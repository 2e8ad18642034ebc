"""The seed's code (../shared/seeds/000_*.txt, the IMDB Accelerate loop), kept as close to the
original as a benchmark allows. Deviations, all made so the comparison with mlmtune is about speed:

- the data is mlmtune's blocks of 128 from bbc-news (same blocks, same order in both loops) instead
  of IMDB through `train_test_split`; the rows carry the columns the seed's training dataset has
  (input_ids, token_type_ids, attention_mask, labels: `group_texts` output minus word_ids);
- the DataLoader takes a fixed batch order (mlmtune's epoch order) instead of `shuffle=True`;
- the optimizer is `torch.optim.AdamW` with the seed's defaults (weight decay 0.01 on everything,
  no foreach / fused on CPU) but in two parameter groups: a grown MLM head learns at head_lr and
  the rest at lr, as in mlmtune, so both loops follow the same learning rates.
"""

from __future__ import annotations

import torch

# --- data preparation (verbatim but for chunk_size being a parameter) -------------------------

def make_tokenize_function(tokenizer):
    def tokenize_function(data):
        result = tokenizer(data["text"])
        if tokenizer.is_fast:
            result["word_ids"] = [result.word_ids(i) for i in range(len(result["input_ids"]))]

        return result

    return tokenize_function


def make_group_texts(chunk_size: int = 128):
    def group_texts(data):
        # concatenate texts
        concatenated_sequences = {k: sum(data[k], []) for k in data.keys()}
        # compute length of concatenated texts
        total_concat_length = len(concatenated_sequences[list(data.keys())[0]])

        # drop the last chunk if is smaller than the chunk size
        total_length = (total_concat_length // chunk_size) * chunk_size

        # split the concatenated sentences into chunks using the max length
        result = {k: [t[i: i + chunk_size] for i in range(0, total_length, chunk_size)]
                  for k, t in concatenated_sequences.items()}
        result["labels"] = result["input_ids"].copy()

        return result

    return group_texts


def seed_prepare(texts: list[str], tokenizer, chunk_size: int = 128):
    """tokenize_function in batched map, then group_texts in batched map (the seed's defaults)."""
    import datasets

    raw = datasets.Dataset.from_dict({"text": texts})
    tokenized = raw.map(make_tokenize_function(tokenizer), batched=True, remove_columns=["text"])
    return tokenized.map(make_group_texts(chunk_size), batched=True)


# --- training -------------------------------------------------------------------------------

def seed_train_dataset(blocks):
    """mlmtune's fixed-size blocks as the seed's training dataset (a datasets.Dataset)."""
    import datasets
    import numpy as np

    ids = blocks.tokens[blocks.offsets[0]:blocks.offsets[-1]].reshape(len(blocks), -1).astype(np.int64)
    return datasets.Dataset.from_dict({
        "input_ids": ids,
        "token_type_ids": np.zeros_like(ids),
        "attention_mask": np.ones_like(ids),
        "labels": ids.copy(),
    })


class FixedBatches(torch.utils.data.Sampler):
    """A batch sampler over a precomputed list of index arrays (mlmtune's epoch order)."""

    def __init__(self, batches):
        self.batches = [[int(i) for i in b] for b in batches]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def seed_dataloader(dataset, batches, tokenizer, mlm_probability: float = 0.15):
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForLanguageModeling

    data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=mlm_probability)
    return DataLoader(dataset, batch_sampler=FixedBatches(batches), collate_fn=data_collator)


def seed_optimizer(model, *, lr: float, head_lr: float, new_parameters) -> torch.optim.Optimizer:
    """`AdamW(model.parameters(), lr=lr)` with torch's defaults; a grown head gets its own group at head_lr."""
    new = set(new_parameters)
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if n not in new], "lr": lr}]
    if new:
        groups.append({"params": [p for n, p in named if n in new], "lr": head_lr})
    return torch.optim.AdamW(groups, lr=lr)


def seed_setup(model, dataset, batches, tokenizer, *, lr, head_lr, new_parameters, total_steps, warmup=0):
    """The seed's setup: Accelerator(), prepare(model, optimizer, dataloader), then the scheduler on
    the prepared optimizer (the seed does not prepare the scheduler)."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    train_dataloader = seed_dataloader(dataset, batches, tokenizer)
    optimizer = seed_optimizer(model, lr=lr, head_lr=head_lr, new_parameters=new_parameters)
    accelerator = Accelerator(mixed_precision="no")
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=warmup,
                                 num_training_steps=total_steps)
    return accelerator, model, optimizer, train_dataloader, lr_scheduler


def seed_step(accelerator, model, batch, optimizer, lr_scheduler, max_grad_norm=None) -> tuple[float, int]:
    """One iteration of the seed's training loop; returns (loss, tokens). `max_grad_norm` is not the
    seed's: the parity control `seed + clip_grad_norm` sets it."""
    outputs = model(**batch)
    loss = outputs.loss
    accelerator.backward(loss)
    if max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)

    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad()
    return loss.item(), int(batch["attention_mask"].sum())
