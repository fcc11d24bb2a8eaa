"""Other tools' entry points into the project: `vot` (the VOT toolkit's TraX tracker) and
`vot_workspace` (a local VOT workspace of the synthetic sets). Same layer as `tasks`: they
load models and run the engine as eval.py does."""
