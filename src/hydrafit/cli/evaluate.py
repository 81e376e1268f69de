"""hydrafit-eval: a finished run's model, reloaded from its checkpoint, scored and asked
(hydrafit.report.evaluation says what it writes).

    hydrafit-eval run=outputs/runs/2026-11-24_08-48-10
    hydrafit-eval run=outputs/runs/2026-11-24_08-48-10 input=new_x.csv output=predictions.csv
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from hydrafit.config.errors import ConfigError, refuse
from hydrafit.engine.startup import import_lightning


@hydra.main(version_base="1.3", config_path="pkg://hydrafit.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    import_lightning()
    from hydrafit.report.evaluation import evaluate  # torch and Lightning: once the request is checked

    try:
        evaluate(cfg)
    except ConfigError as error:
        refuse(str(error), "hydrafit-eval")


if __name__ == "__main__":
    main()
