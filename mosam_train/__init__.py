"""mosam-train: train, fine-tune and evaluate SAM 2 based video object segmentation.

Entry points call `mosam_train.startup.start()` before Hydra starts.
"""
