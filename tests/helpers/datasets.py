"""Tiny dataset folders in the real on-disk format (microexp.learn.dataset), for training and export tests."""

from __future__ import annotations

import numpy as np

from microexp.aus import au_index
from microexp.learn.dataset import empty_index, save_array, save_index


def write_tiny_dataset(root, subjects=("S01", "S02"), aus=("AU2", "AU26", "AU51"), slices=8, seed=0):
    """A dataset folder in the real format: each AU lights a different blob of ON events in the middle slices."""
    rng = np.random.default_rng(seed)
    doc = empty_index(slice_us=33_000, size=64, margin=1.2, evk4_map=[1, 1, 0, 0])
    for subject in subjects:
        for au in aus:
            label = au_index(au)
            ev = rng.poisson(0.05, size=(slices, 2, 64, 64)).astype(np.float32)
            r0, c0 = 8 + 16 * (label % 3), 8 + 12 * (label % 4)
            ev[slices // 2 - 1 : slices // 2 + 1, 1, r0 : r0 + 12, c0 : c0 + 12] += 3.0
            rgb = rng.integers(0, 255, size=(slices, 3, 64, 64), dtype=np.uint8)
            clip_id = f"{subject}__seg_{label:04d}_{au}_t1"
            arrays = {
                "davis346": save_array(root, clip_id, "davis346", ev),
                "webcam_rgb": save_array(root, clip_id, "webcam_rgb", rgb),
                "webcam_gray": save_array(root, clip_id, "webcam_gray", rgb[:, 0]),
            }
            doc["clips"].append(
                {
                    "id": clip_id,
                    "subject": subject,
                    "au": au,
                    "label": label,
                    "trial": 1,
                    "lux": 500.0,
                    "lux_source": "test",
                    "session": subject,
                    "segment": clip_id,
                    "segment_id": label,
                    "bags": [],
                    "slices": slices,
                    "t_start_ns": 0,
                    "reference": "davis346",
                    "activity_peak": slices // 2,
                    "arrays": arrays,
                    "ground_truth": None,
                    "sensors": {"davis346": {"activity_peak": slices // 2, "box_source": "test"}},
                }
            )
    save_index(root, doc)
    return root
