"""Offline learning from recorded bags (no rclpy): datasets, leave-one-subject-out training, metrics,
event-conditioned frame reconstruction and their reports.

- :mod:`~microexp.learn.dataset`: the on-disk clip format (one ``.npy`` per array per clip + ``index.json``)
  and its memory-mapped reader.
- :mod:`~microexp.learn.build`: bags / recording sessions -> clips (``microexp dataset``).
- :mod:`~microexp.learn.synth_dataset`: the paper's 7 x 21 layout through the real recording path
  (``microexp synth-dataset``).
- :mod:`~microexp.learn.train`: SNN / 3D-CNN, events or RGB, leave-one-subject-out (``microexp train``).
- :mod:`~microexp.learn.metrics`: accuracy, top-k, per-class F1, confusion; MSE/RMSE/MAE/PSNR/SSIM/NCC.
- :mod:`~microexp.learn.reconstruct`: the cVAE of §4.4 (``microexp reconstruct train|eval``).
- :mod:`~microexp.learn.report`: results folders (metrics.json, results.md, plots).

Importing this package imports neither torch nor rclpy; the submodules that need torch import it.
"""
