"""What the entry points run, one module per job:

- `training.train`: `train.py`, fit and export;
- `vos_evaluation.evaluate`: `eval.py`, masks and J&F;
- `tracking_evaluation.evaluate_tracking`: `eval.py task=tracking`, boxes (LaSOT, GOT-10k);
- `prediction.predict`: `predict.py`, the demo.

Steps they share: `inference_model` (the model eval and the demo run), `results` (an
evaluation's resumable output directory), `export` (trained SAM 2 weights out of a run).
"""

from mosam_train.tasks.prediction import predict
from mosam_train.tasks.tracking_evaluation import evaluate_tracking
from mosam_train.tasks.training import train
from mosam_train.tasks.vos_evaluation import evaluate

__all__ = ["evaluate", "evaluate_tracking", "predict", "train"]
