"""pbt_replay=<member dir>: the run a PBT member's lineage describes (hydrafit.report.lineage),
trained again into a run directory of its own.

    hydrafit-train pbt_replay=outputs/multiruns/<date>_<time>/<member>

The member's net trains as in its PBT run: in a population (hydrafit.engine.population), beside
a twin of itself that is not written, with the lineage's values from each segment's epoch on
(engine.pbt.Replay). Why a population and not a Lightning run of the net alone: vmapped over two
or more members, a net's gradients are not bitwise those of the net alone (~3e-8 apart in a step
on this project's CPU), and over hundreds of epochs at PBT's learning rates such differences grew
to 0.3% of a member's final train/mse; in a population the replay is the member, bitwise. Its
directory holds what a member's does (metrics.json, fit.png, checkpoints, TensorBoard with
`pbt/<key>` each epoch), so hydrafit-eval and resume= read it as any run.
"""
from __future__ import annotations

from omegaconf import DictConfig

from hydrafit.config.view import RunView
from hydrafit.engine.pbt import Replay
from hydrafit.engine.population import Member, fit, load_results
from hydrafit.engine.single import build_model
from hydrafit.report.figure import fit_images
from hydrafit.report.member import write_member, write_started
from hydrafit.rundir.owner import owner_record


def replay(cfg: DictConfig, lineage: list[dict]):
    """Train `cfg` (engine.single.replayed_run) with `lineage`; (its Regressor, trained, and its
    optimized metric). Raises RunStopped as a single run does (interrupted, diverged)."""
    member = Member(cfg, *build_model(cfg))
    twin = Member(cfg, *build_model(cfg, announce=False))
    write_started(member, owner_record())
    outcome = fit([member, twin], RunView.of(cfg).run_dir, pbt=Replay(lineage))
    load_results([member, twin], outcome)
    return member.module, write_member(member, outcome, 0, fit_images([member, twin], outcome)[0])
