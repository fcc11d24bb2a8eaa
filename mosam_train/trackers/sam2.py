"""`tracker=sam2` (the default): SAM 2's own rule, which is `TrackerRule` itself. Every
tracked frame enters memory; each frame attends to the prompted frames, the model's window
of recent frames and their object pointers."""

from mosam_train.inference.rules import TrackerRule

RULE = TrackerRule
