"""The output folder a run writes, in one place: what it holds, who may write it, how files land whole.

  files        atomic writes (temporary name, then rename), JSON without NaN, the final model's save
  layout       the names: run files, checkpoints/step-NNNNNNN, the card; what a run wrote
  ownership    which folder a run may take, --overwrite's set-aside and put-back, undoing a failed new run
  metrics_log  metrics.jsonl
  checkpoints  full training states (Accelerate's save_state plus the run's counters)
  card         README.md, the model card the Hub reads
  sentence     the sentence-transformers files of a sentence-encoder base, kept beside the tuned model
  report       report.html: curves, results, the side by side, fill-mask before and after
  verdict      what the curve says: still improving (and the command that trains further), converged, rising
  figures      the report's curves, one figure a panel (readable on a phone), and curves.png
  formats      the one number format and the one duration format
  before       the honest "before": a base without an MLM head, warm-started as training began
  hub          upload a finished run to the Hugging Face Hub
"""
