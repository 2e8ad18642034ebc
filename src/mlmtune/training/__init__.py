"""Stage 3, training: `fit(config)` orders the phases; the step and the loop are functions.

  fit        the recipe: prepare data, build the model, warm start, take the folder, resume, loop, finish
  step       one optimizer step over its micro-batches (the benchmark times this very function)
  loop       the training loop: steps, logging, evaluation and checkpoints when due, stopping
  optimizer  AdamW groups and the learning-rate schedule (by steps or by a time budget)
  resume     --resume: which checkpoint, the same data and plan, training further with a longer plan
  signals    SIGINT/SIGTERM: finish the step and save, or stop before the loop
  trackers   --report-to tensorboard / mlflow through Accelerate
"""
