"""hydrafit-eval: a finished run's model, reloaded from its checkpoint, scored and asked
(hydrafit.report.evaluation says what it writes).

    hydrafit-eval run=outputs/runs/2026-11-24_08-48-10
    hydrafit-eval run=outputs/runs/2026-11-24_08-48-10 input=new_x.csv output=predictions.csv
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hydrafit.config.errors import ConfigError, refuse
from hydrafit.engine.startup import import_lightning
from hydrafit.rundir.files import as_write_error


@hydra.main(version_base="1.3", config_path="pkg://hydrafit.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    logging.raiseExceptions = False  # evaluate.log on a full disk: said once, below, not per line
    import_lightning()
    from hydrafit.report.evaluation import evaluate  # torch and Lightning: once the request is checked

    try:
        evaluate(cfg)
    except ConfigError as error:
        refuse(str(error), "hydrafit-eval")
    except OSError as error:  # a full disk: the files it wrote stay complete
        failure = as_write_error(error, Path(HydraConfig.get().runtime.output_dir))
        if failure is None:
            raise
        print(f"hydrafit-eval: error: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
