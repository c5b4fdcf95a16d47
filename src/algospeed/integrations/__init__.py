"""algospeed inside other training loops, and its curves in experiment trackers.

- `algospeed.integrations.lightning.AlgospeedCallback`: methods as a `lightning.pytorch.Callback`.
- `algospeed.integrations.transformers.AlgospeedCallback`: methods as a `transformers.TrainerCallback`.
- `algospeed.integrations.loggers.logger_from_spec("csv:runs/metrics.csv")`: TensorBoard, MLflow, CSV
  and Weights & Biases loggers as algospeed callbacks.

Each module imports its library only when it is imported itself, so none of them is a dependency of
algospeed; `docs/integrations.md` says which methods work in which loop, and why the others cannot.
"""
