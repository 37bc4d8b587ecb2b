"""Training and evaluation: ``gluonfuse train``, ``eval`` and ``predict`` as library functions.

  config.py      what the user chooses: recipes (docs/recipes.md), per-dataset defaults, TrainConfig, devices
  plan.py        what the dataset and the job decide: DataFacts, RunPlan (shards, batches, steps)
  session.py     train(): a run from start to finish (run directory, log, signals, status, export)
  build.py       from config and plan to the loop's parts: network, trainer, loss, schedule, evaluators
  epoch.py       one epoch: the training pass, the test passes, the log lines
  records.py     per-epoch recorders: metrics.csv, members.csv, checkpoints, status.json, curves.png
  step.py        the device step and the MXNet workarounds (initialize, make_trainer, Step)
  schedule.py    the learning rate per (epoch, iteration)
  data.py        ImageRecordIter pipelines over a prepared dataset directory (exact zero padding)
  metrics.py     exact loss / top-1 / top-5 over the real records, per ensemble member
  checkpoint.py  atomic checkpoints with checksums, per-epoch reseeding for exact resumption
  liveness.py    pid, host and heartbeat in status.json: is a "running" run alive, or did it die?
  dist.py        distributed jobs: the team of workers, shards, reductions, failure handling
  precision.py   float16 / bfloat16 mixed precision
  rundir.py      the run directory contract and its one reader, load_run()
  evaluate.py    evaluation of runs and exported symbols, FractalNet columns
  predict.py     top-k classes of image files
  synthetic.py   a tiny generated dataset for tests and benchmarks

Nothing here imports mxnet at module level except through the functions that need it.
"""
