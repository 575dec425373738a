"""Reads a crosskd TensorBoard event file with TensorBoard's own reader and checks the
scalars. Skips (exit 77) when the tensorboard package is not installed (CI needs none).
usage: check_tfevents.py WRITER_PROGRAM"""
import glob
import os
import subprocess
import sys
import tempfile

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    print("tensorboard not installed: skipped")
    sys.exit(77)

with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.argv[1], d], check=True)
    (path,) = glob.glob(os.path.join(d, "events.out.tfevents.*"))
    acc = EventAccumulator(path)
    acc.Reload()
    events = acc.Scalars("train/lr")
    assert [e.step for e in events] == [0, 10, 20], events
    assert all(abs(e.value - 0.01 * (i + 1)) < 1e-7 for i, e in enumerate(events)), events
    print("ok: TensorBoard read", len(events), "scalars")
