"""Experiment trackers: TensorBoard, Weights & Biases and MLflow, chosen in a recipe's ``[log]`` table.

```toml
[log]
tensorboard = true                                   # <run folder>/tensorboard
wandb = { project = "fairadv", mode = "offline" }    # <run folder>/wandb, `wandb sync` later
mlflow = { tracking_uri = "file:./mlruns" }
```

``metrics.jsonl`` stays the source of truth; trackers receive the same values under the names in
`fairadv.tracking.series`, one step per epoch, and follow the run through resumes (`fairadv.tracking.session`).
"""

from fairadv.tracking.base import RunInfo, Tracker
from fairadv.tracking.session import TrackingSession

__all__ = ["RunInfo", "Tracker", "TrackingSession"]
