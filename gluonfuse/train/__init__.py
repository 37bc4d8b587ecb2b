"""Training and evaluation: ``gluonfuse train``, ``eval`` and ``predict`` as library functions.

  config.py      recipes (SPEC 1.6, 2-4), per-dataset defaults, the resolved TrainConfig, devices
  schedule.py    the piecewise-constant learning rate
  data.py        ImageRecordIter pipelines over a prepared dataset directory (exact zero padding)
  loop.py        the multi-device trainer (train(), Step, train_epoch)
  metrics.py     exact loss / top-1 / top-5 over the real records, per ensemble member
  checkpoint.py  atomic checkpoints, per-epoch reseeding for exact resumption
  rundir.py      the run directory contract and load_run()
  evaluate.py    evaluation of runs and exported symbols, FractalNet columns
  predict.py     top-k classes of image files
  synthetic.py   a tiny generated dataset for tests and benchmarks

Nothing here imports mxnet at module level except through the functions that need it.
"""
