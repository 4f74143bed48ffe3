"""Scale many files out over a Ray cluster (the ``distributed`` extra): one task per file.

Each task builds its own pipeline (models load once per task) and writes its output atomically, so a
task that dies leaves nothing half-written and can simply be retried. Inputs and outputs must be
reachable at the same paths from every node (shared storage), as with any file-based batch job.

    faceanon-video videos/ -o out/ --ray              # local Ray on this machine's cores
    faceanon-video videos/ -o out/ --ray auto         # an existing cluster (``ray start --head``)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from faceanon_video.config import RunConfig
from faceanon_video.errors import ConfigError, FaceanonError
from faceanon_video.memory import keep_freed_memory
from faceanon_video.pipeline import RunSummary, process_file

log = logging.getLogger(__name__)


def _process_one(source: str, destination: str, config_json: str) -> dict:
    """Runs on a Ray worker. Returns a summary dict, or ``{"error": ...}`` for a user-facing failure."""
    keep_freed_memory()  # the worker process runs our tasks only (see faceanon_video.memory)
    config = RunConfig.from_json(config_json)
    try:
        return process_file(Path(source), Path(destination), config).as_dict()
    except FaceanonError as exc:
        return {"input": source, "error": str(exc)}


def init_ray(address: str | None):
    """The ``ray`` module, connected to ``address`` (None: a local Ray on this machine's cores)."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError('--ray needs Ray: pip install "faceanon-video[distributed]"') from exc
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:  # "auto" with no cluster running
            raise ConfigError(_NO_CLUSTER.format(address=address)) from exc
    return ray


_NO_CLUSTER = "--ray {address}: no Ray cluster answers there (start one with 'ray start --head', or give its address)"


def _check_reachable(address: str | None) -> None:
    """``ConfigError`` when nothing listens at a HOST:PORT address: ray.init would retry for minutes,
    printing its own log lines and deaf to SIGTERM (its wait is in C++)."""
    import socket

    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(_NO_CLUSTER.format(address=address)) from exc


def run_distributed(
    jobs: list[tuple[Path, Path]],
    config: RunConfig,
    address: str | None = None,
    cpus_per_task: int = 1,
    max_retries: int = 2,
) -> list[dict]:
    """Process ``(source, destination)`` pairs as Ray tasks; returns one summary (or error) dict per job,
    in job order. ``address=None`` starts a local Ray instance."""
    ray = init_ray(address)
    # One detection thread per task: Ray places one task per CPU, so the cluster's cores are the parallelism.
    task_config = replace(config, workers=cpus_per_task, progress=False, jobs=1)  # the cluster's cores are the parallelism
    remote = ray.remote(num_cpus=cpus_per_task, max_retries=max_retries)(_process_one)
    refs = [remote.remote(str(src), str(dst), task_config.to_json()) for src, dst in jobs]
    results = []
    for (src, _), ref in zip(jobs, refs):
        try:
            results.append(ray.get(ref))
        except ray.exceptions.RayError as exc:
            results.append({"input": str(src), "error": f"task failed: {type(exc).__name__}"})
    return results


def summary_line(result: dict) -> str:
    if "error" in result:
        return f"{result['input']}: error: {result['error']}"
    s = RunSummary(**{k: v for k, v in result.items() if k != "fps"})
    line = f"{s.input} -> {s.output}: {s.frames} frames, {s.faces} faces, {s.fps:.1f} fps"
    return f"{line}\n  {s.redaction}" if s.redaction else line
