"""Stage 4, evaluation: how good a model is, on fixed masks and beyond.

  metrics       perplexity and accuracy summed per masked token over the fixed evaluation batches
  words         masked words chosen in word space: a measure that does not depend on the vocabulary
  cloze         cloze sentences (one [MASK], accepted answers): top-1 and top-5 accuracy
  linear_probe  logistic regression on mean-pooled features of held-out documents
  compare       `mlmtune evaluate`: several models side by side on the same masks
"""
