"""Training a network from a labeled dataset, in one process or many (``torchrun``).

``train(dataset_dir, start, options)`` trains ``start`` (an architecture name, or a library model
id / model folder to continue from) on an MSD / nnU-Net dataset (:mod:`SegNetsLib.training.dataset`) and
adds the best weights to the model library with a card naming the dataset, case counts and
validation Dice. Per architecture it applies the paper's loss (:func:`SegNetsLib.losses.objective`)
and optimizer; RU-Net first trains its global image encoder and locator on the global Dice alone.

Each epoch: ``iterations_per_epoch`` steps on random patches (a foreground share, the paper
augmentations), the poly learning rate (power 0.9), mixed precision on CUDA, then validation Dice per
label. The main rank writes ``last.safetensors`` (everything needed to resume) and
``best.safetensors`` each epoch, plus ``log.csv`` / ``log.json`` and, at the end, ``curves.png``.
Under torchrun every rank trains on its shard of the cases, gradients are averaged by
DistributedDataParallel, and only rank 0 writes.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from SegNetsLib import nets
from SegNetsLib.card.card import ModelCard
from SegNetsLib.core.progress import CancelToken, ProgressFn, no_progress
from SegNetsLib.models.library import ModelLibrary
from SegNetsLib.models.store import meta_network
from SegNetsLib.runtime import distributed
from SegNetsLib.training.augment import AugmentOptions, build_augmentation, input_size, training_batch
from SegNetsLib.training.cards import final_card, new_card, ranks_used
from SegNetsLib.training.checkpoint import existing_checkpoint, load_checkpoint, save_checkpoint
from SegNetsLib.training.clock import EpochProgress, TimeLimit
from SegNetsLib.training.data import check_foreground, prepare_case, split_cases
from SegNetsLib.training.dataset import CasePatchSampler, LabeledDataset, PreparedCase, load_dataset
from SegNetsLib.training.log import TrainingLog
from SegNetsLib.training.options import (
    BEST,
    DEFAULT_EPOCHS,
    LAST,
    PROVISIONAL_EPOCHS,
    TrainOptions,
    TrainResult,
    default_work_dir,
    with_device_defaults,
)
from SegNetsLib.training.schedule import (
    Stage,
    has_unused_parameters,
    make_optimizer,
    plan_stages,
    poly_learning_rate,
    stage_loss,
    stage_module,
)
from SegNetsLib.training.start import starting_point, weights_digest
from SegNetsLib.training.validation import mean_dice, validation_dice

log = logging.getLogger(__name__)


class _Trainer:
    """One training run on this rank; see :func:`train`."""

    def __init__(
        self,
        dataset: LabeledDataset,
        start: str,
        options: TrainOptions,
        ranks: distributed.Ranks,
        progress: ProgressFn,
        cancel: CancelToken | None,
        began: float,
    ) -> None:
        options = with_device_defaults(options, ranks.device)
        self.dataset, self.options, self.ranks = dataset, options, ranks
        self.progress, self.cancel, self.began = progress, cancel, began
        self.work_dir = Path(options.work_dir) if options.work_dir else default_work_dir(options.save_model)
        self.label_names = list(dataset.labels.values())
        self.amp = options.amp and ranks.device.type == "cuda"
        self.train_cases, self.validation_cases = split_cases(dataset.cases, options.validation_fraction)
        if len(self.train_cases) < ranks.world_size:
            raise distributed.refuse(
                f"dataset {dataset.name!r} has {len(self.train_cases)} training case(s) but {ranks.world_size} "
                "ranks; start at most as many processes as training cases."
            )
        checkpoint = existing_checkpoint(self.work_dir, options.resume, dataset.name, ranks.is_main)
        self.state: dict[str, Any] = checkpoint.state if checkpoint else {}
        base_net, base_card, architecture = distributed.on_every_rank(starting_point, start, dataset)  # said once
        self.card = (
            ModelCard.from_dict(self.state["card"])
            if checkpoint
            else new_card(architecture, self.dataset, self.train_cases, self.options, base_card)
        )
        self.architecture = self.card.architecture  # a resumed run goes on with its checkpoint's network
        self.patch_size = tuple(self.card.patch_size)
        torch.manual_seed(options.seed)
        if base_net is None:
            meta_network(self.card)  # a width or depth no memory holds is refused before anything is allocated
        self.net = (
            base_net
            if base_net is not None
            else nets.build(self.architecture, len(dataset.channels), self.card.num_classes, **self.card.build_args)
        )
        self.net.to(ranks.device).train()
        if checkpoint:
            self.net.load_state_dict(checkpoint.model)
        planned = (
            options.epochs
            or self.state.get("epochs")
            or (PROVISIONAL_EPOCHS if options.time_limit_s else DEFAULT_EPOCHS)
        )
        self.stages = plan_stages(self.architecture, planned)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self._checkpoint = checkpoint
        self.base_card = base_card
        self.iteration_losses: list[float] = []
        earlier = self.state.get("ranks")  # a run resumed with another number of processes changes shards and batch
        self.state["ranks"] = ranks_used(earlier, ranks.world_size)
        if earlier and earlier[-1] != ranks.world_size and ranks.is_main:
            log.info("The run trained on %d process(es) and goes on with %d.", earlier[-1], ranks.world_size)
        self.log = TrainingLog.resume(self.work_dir, self.label_names, self.state.get("epoch", 0))

    def _prepare(self, cases, rng: np.random.Generator, pad_to: tuple[int, int, int]) -> list[PreparedCase]:
        prepared = []
        for case in cases:
            prepared.append(prepare_case(case, self.dataset, self.card, pad_to, rng))
            if self.cancel:
                self.cancel.raise_if_cancelled()
        return prepared

    # ----- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        options, ranks = self.options, self.ranks
        rng = np.random.default_rng([options.seed, ranks.rank])
        augmentation_options = AugmentOptions()
        crop = input_size(self.patch_size, augmentation_options) if options.augment else self.patch_size
        train_cases = self._prepare(distributed.shard(self.train_cases), rng, crop)
        check_foreground(train_cases, self.dataset, self.label_names)
        self.rank_cases = distributed.gather_objects([case.name for case in train_cases])
        validation_cases = self._prepare(distributed.shard(self.validation_cases), rng, self.patch_size)
        sampler = CasePatchSampler(train_cases, crop, options.foreground_share)
        transform = (
            build_augmentation(self.patch_size, augmentation_options, device=ranks.device) if options.augment else None
        )
        elapsed = float(self.state.get("seconds", 0.0))
        epoch = int(self.state.get("epoch", 0))
        best = self.state.get("best_dice")
        started = self.began - elapsed
        self.clock = TimeLimit(options.time_limit_s, started)
        if options.time_limit_s and self.validation_cases:  # the first epoch must know what its end will take
            timed = time.monotonic()
            validation_dice(self.net, validation_cases, self.label_names, self.patch_size, ranks.device, self.amp)
            self.clock.validation_s = time.monotonic() - timed
        self.clock.rehearse_epoch_end(self.work_dir, self.net, self.label_names, ranks.is_main)
        model, optimizer, stage = None, None, None
        saved = distributed.broadcast_object(self.log.summary)  # rank 0's log; other nodes may not see it
        if epoch >= self.stages[-1].end and "model" in saved:
            raise distributed.refuse(
                f"{self.work_dir}: this run already finished and saved model {saved['model']} {saved['version']}; "
                "pass a larger --epochs to train on, or use another --work-dir."
            )
        while epoch < self.stages[-1].end:
            if cancel := self.cancel:
                cancel.raise_if_cancelled()
            current = next(s for s in self.stages if s.start <= epoch < s.end)
            if stage is None or current.name != stage.name:
                model, optimizer = self._stage_setup(current, epoch)
            stage = current
            epoch_rng = np.random.default_rng([options.seed, ranks.rank, epoch])
            torch.manual_seed(options.seed * 100003 + epoch * 1009 + ranks.rank)
            if transform is not None:
                transform.set_random_state(seed=int(epoch_rng.integers(2**31)))
            epoch_began = time.monotonic()
            loss, done = self._train_epoch(model, optimizer, stage, epoch, sampler, transform, epoch_rng)
            # each rank's last forward updated its running statistics on its own patches; DDP's next forward would
            # take rank 0's, so validation, checkpoint and the final weight check take them now
            distributed.broadcast_buffers(self.net)
            timed = time.monotonic()
            dice = validation_dice(
                self.net, validation_cases, self.label_names, self.patch_size, ranks.device, self.amp
            )
            self.clock.validation_s = time.monotonic() - timed
            epoch += 1
            seconds = time.monotonic() - started
            cut_short = done < options.iterations_per_epoch
            self.state["iterations"] = int(self.state.get("iterations", 0)) + done
            if options.time_limit_s and not options.epochs:
                self._plan_epochs(time.monotonic() - epoch_began, epoch, stage)
            score = mean_dice(dice)
            # model selection within the final stage only (RU-Net's global stage does not segment yet)
            improved = stage.name == self.stages[-1].name and score is not None and (best is None or score > best)
            best = score if improved else best
            self.state.update(
                epoch=epoch, epochs=self.stages[-1].end, seconds=seconds, best_dice=best, stage=stage.name
            )
            row = {
                "epoch": epoch,
                "stage": stage.name,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "train_loss": loss,
                "dice": dice,
                "dice_mean": score,
                "seconds": round(seconds, 2),
                "iterations": done,
            }
            timed = time.monotonic()
            if ranks.is_main:
                self._write_epoch(optimizer, row, improved)
            distributed.barrier()
            self.clock.epoch_end_s = time.monotonic() - timed
            if cut_short:
                self._say(
                    "Time limit of %.0f s: epoch %d was cut short after %d of %d iterations; the run ends.",
                    options.time_limit_s,
                    epoch,
                    done,
                    options.iterations_per_epoch,
                )
                break
            if not self._room_for_iteration():
                self._say("Time limit of %.0f s reached after epoch %d.", options.time_limit_s, epoch)
                break
        return self._finish()

    def _say(self, message: str, *args: Any) -> None:
        """Log ``message`` once per run: on rank 0 (every rank takes the same decisions)."""
        if self.ranks.is_main:
            log.info(message, *args)

    def _stage_setup(self, stage: Stage, epoch: int):
        """(model, optimizer) for ``stage``: DDP-wrapped under torchrun, optimizer state restored on resume."""
        model = stage_module(self.architecture, stage, self.net)
        optimizer = make_optimizer(self.architecture, model, self.options.learning_rate)
        if self.ranks.distributed:
            device_ids = [self.ranks.device.index] if self.ranks.device.type == "cuda" else None
            model = DistributedDataParallel(
                model, device_ids=device_ids, find_unused_parameters=has_unused_parameters(self.architecture, stage)
            )
        checkpoint = self._checkpoint
        if (
            checkpoint is not None
            and checkpoint.optimizer is not None
            and self.state.get("stage") == stage.name
            and epoch > stage.start
        ):
            optimizer.load_state_dict(checkpoint.optimizer)
            if checkpoint.scaler:
                self.scaler.load_state_dict(checkpoint.scaler)
        self._checkpoint = None
        return model, optimizer

    def _room_for_iteration(self) -> bool:
        """One more iteration and the ends of its epoch and of the run fit the time limit (same on every rank)."""
        if self.options.time_limit_s is None:
            return True
        return bool(distributed.broadcast_object(self.clock.room_for_iteration()))

    def _train_epoch(self, model, optimizer, stage: Stage, epoch: int, sampler, transform, rng) -> tuple[float, int]:
        """(mean loss over ranks, iterations done): fewer than an epoch's when the time limit comes first."""
        iterations = self.options.iterations_per_epoch
        total = (stage.end - stage.start) * iterations
        bar = tqdm(
            total=iterations,
            desc=f"epoch {epoch + 1}/{self.stages[-1].end} ({stage.name})",
            leave=False,
            disable=not (self.ranks.is_main and sys.stderr.isatty()),
        )
        running = EpochProgress(epoch + 1, self.stages[-1].end, iterations, self.clock, self.log.running)
        losses = []
        for step in range(iterations):
            if self.cancel:
                self.cancel.raise_if_cancelled()
            if (losses or self.iteration_losses) and not self._room_for_iteration():
                break
            timed = time.monotonic()
            lr = poly_learning_rate(optimizer.defaults["lr"], (epoch - stage.start) * iterations + step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            image, target, weight = training_batch(sampler, self.options.batch_size, transform, self.ranks.device, rng)
            with torch.autocast(self.ranks.device.type, dtype=torch.float16, enabled=self.amp):
                output = model(image)
                loss = stage_loss(self.architecture, stage, output, target, weight)
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), 12.0)
            self.scaler.step(optimizer)
            self.scaler.update()
            losses.append(float(loss.detach()))
            self.clock.record_iteration(time.monotonic() - timed)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if self.ranks.is_main:  # one line and one log entry per run, not one per rank
                running.report(step + 1, losses[-1], force=step == 0)
            done = epoch * iterations + step + 1
            self.progress(done / (self.stages[-1].end * iterations), f"epoch {epoch + 1}/{self.stages[-1].end}")
        bar.close()
        self.iteration_losses.extend(losses)
        return distributed.mean_over_ranks(float(np.mean(losses)), self.ranks.device), len(losses)

    def _plan_epochs(self, epoch_s: float, done: int, stage: Stage) -> None:
        """With a time limit: after each epoch, plan as many epochs as the time left holds, rounded up (the
        clock cuts the last one short), from the last epoch's duration (same on every rank). A plan that would
        move the current epoch into another stage (RU-Net) is not taken."""
        left = max(self.clock.left() - self.clock.still_needed(), 0.0)
        epochs = max(done, done + math.ceil(left / max(epoch_s, 1e-6)), plan_stages(self.architecture, 1)[-1].end)
        stages = plan_stages(self.architecture, distributed.broadcast_object(epochs))
        if next((s.name for s in stages if s.start <= done - 1 < s.end), None) == stage.name:
            self.state["epochs"], self.stages = stages[-1].end, stages

    def _write_epoch(self, optimizer, row: dict[str, Any], improved: bool) -> None:
        self.state["card"] = self.card.to_dict()
        self.state["dataset"] = self.dataset.name
        weights = self.net.state_dict()
        save_checkpoint(self.work_dir / LAST, weights, self.state, optimizer.state_dict(), self.scaler.state_dict())
        if improved:
            save_checkpoint(self.work_dir / BEST, weights, {"epoch": row["epoch"], "dice": row["dice"]})
        self.log.add(row)
        self.log.plot()  # curves kept current while the run goes (and the run's end timed with them)
        log.info(
            "epoch %d: loss %.4f, validation Dice %s",
            row["epoch"],
            row["train_loss"],
            ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} -" for k, v in row["dice"].items()),
        )

    # ----- the end -----------------------------------------------------------------------------------
    def _finish(self) -> TrainResult:
        digests = distributed.gather_objects(weights_digest(self.net))
        if len(set(digests)) != 1:
            raise RuntimeError(f"the ranks ended with different weights ({digests}); the run is not consistent")
        model_path = None
        if self.ranks.is_main:
            best_path = self.work_dir / BEST
            final_dice = self.log.rows[-1]["dice"] if self.log.rows else {}
            if best_path.is_file():
                best = load_checkpoint(best_path)
                self.net.load_state_dict(best.model)
                final_dice = best.state["dice"]
            self.card = final_card(
                self.card,
                final_dice,
                options=self.options,
                epochs=self.state["epoch"],
                iterations=int(self.state.get("iterations", self.state["epoch"] * self.options.iterations_per_epoch)),
                seconds=float(self.state["seconds"]),
                base_card=self.base_card,
                dataset=self.dataset,
                train_cases=self.train_cases,
                validation_cases=self.validation_cases,
                ranks=self.state["ranks"],
                patch_size=self.patch_size,
            )
            model_path = ModelLibrary().add_or_keep(self.net, self.card)  # or kept aside, and said where
            self.log.summary = {
                "model": self.card.id,
                "version": self.card.version,
                "path": str(model_path),
                "rank_weight_digests": digests,
                "rank_training_cases": self.rank_cases,
                "validation_dice": final_dice,
            }
            self.log.write()
            self.log.plot()
            log.info("Saved model %s version %s to %s", self.card.id, self.card.version, model_path)
        distributed.barrier()
        losses, rows = self.iteration_losses, self.log.rows
        return TrainResult(self.net, self.card, model_path, rows, self.work_dir, losses, self.clock.durations)


def train(
    dataset_dir: str | os.PathLike,
    start: str,
    options: TrainOptions,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train ``start`` (architecture name or model id / folder) on the dataset in ``dataset_dir``.

    Under torchrun every rank calls this with the same arguments; only rank 0 writes. Returns the
    trained network (best validation weights) and its card; raises SegNetsError for bad input and
    Cancelled when ``cancel`` is set (the last finished epoch's checkpoint stays for --resume).
    """
    began = time.monotonic()  # a time limit counts from here: reading and preparing the data are part of it
    ranks = distributed.start(options.device)
    try:
        dataset = distributed.on_every_rank(load_dataset, dataset_dir)  # a bad dataset is reported once, by rank 0
        return _Trainer(dataset, start, options, ranks, progress or no_progress, cancel, began).run()
    finally:
        distributed.stop()
