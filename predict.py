"""The demo: `python predict.py video=<file.mp4 | frame folder> box=<file> ckpt=PATH`
(see README "Demo")."""

import hydra
from omegaconf import DictConfig

from mosam_train.errors import DataError
from mosam_train.startup import start
from mosam_train.tasks import predict

start()  # before Hydra starts: see mosam_train.startup


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        predict(cfg)
    except DataError as e:  # bad input: the message names the file and the fix
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
