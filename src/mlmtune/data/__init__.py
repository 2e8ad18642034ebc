"""Stage 1, the data: text sources -> documents -> held-out split -> token blocks -> masked batches.

  sources    read .txt/.jsonl/.json/.csv/.tsv/.parquet files, folders, Hub datasets, bbc-news -> Documents
  split      exact repeats dropped, whole documents held out for evaluation (the one draw every reader uses)
  blocks     tokenize once (batched, fast tokenizer, word ids), concatenate-and-cut or line by line, downsample
  windows    a document longer than 100,000 characters tokenized in windows cut before whitespace (the same tokens)
  streaming  the same for a corpus larger than memory (--streaming)
  masking    80/10/10 masks drawn from (seed, example id), whole words optionally; never special tokens
  batching   epoch order, each process's share, the micro-batches of a step, the fixed evaluation batches
"""
