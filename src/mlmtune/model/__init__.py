"""Stage 2, the model: load it, run it on the masked positions only, start a grown head, add words.

  load        resolve a name (minilm, a folder, a Hub id), load the masked LM, its positions
  tokenizer   load the tokenizer; whether two tokenizers read the same ids
  objective   the one masked-position forward (the vocabulary projection at labelled positions only)
  warmstart   a grown MLM head's unigram bias and optional pre-fit
  normaliser  what the tokenizer's normaliser loses of a corpus (accents, unknown characters): a note
  vocabulary  how a tokenizer cuts a corpus; words added to the tokenizer and the model (--add-tokens)
  device      precision, autocast and the Accelerator every command runs on
  fill_mask   FillMask: load once, fill the masks of strings (predict, serve, report, the Python API)
"""
