"""What a genome is worth: proxy training or a zero-cost proxy, behind one interface.

Every evaluator returns a positive, higher-is-better score from
``evaluate(genome, *, on_epoch=None)``:

- ``proxy-train`` (the default of the search): train the genome briefly on a subset of
  the training set and return its accuracy in [0, 1] on a fixed, seeded validation split
  carved from the training set (the test set is never used). Defaults were chosen by
  ``benchmarks/bench_proxy.py`` and ``benchmarks/bench_rank_fidelity.py``.
- ``naswot`` (Mellor et al. 2021): ``ln |K|`` of the Hamming-similarity kernel of the
  binary activation codes (pre-activation > 0 at every ReLU/SiLU) of one mini-batch at
  initialisation. Positive for any network with more units than images, as ``K``'s
  diagonal holds the unit count.
- ``synflow`` (Tanaka et al. 2020; Abdelfattah et al. 2021): ``S = sum |theta * dR/dtheta|``
  with ``R`` the output sum for an all-ones input through ``|theta|`` (float64, batch
  normalisation in eval mode). Reported as ``ln(1 + S)``: the same ranking, positive, and
  readable where S spans hundreds of orders of magnitude.
- ``grad-norm`` (Abdelfattah et al. 2021): the sum over parameter tensors of the L2 norm
  of the cross-entropy gradient on one mini-batch at initialisation. Positive as is.

Zero-cost proxies score the architecture: they build the genome without dropout and
drop-connect, which are training settings. Every evaluator decodes its dataset once
(:func:`nas.data.load_dataset` caches it per process) and runs at the proxy resolution
times ``genome.resolution_multiplier``, never at ``genome.resolution`` (the deployment
resolution, 224 for a B0).

A failed evaluation (NaN/inf loss, out of memory, a degenerate score) raises
:class:`EvaluationFailed`, which is not a :class:`~space.NasError`: it says nothing
wrong about the user's input, and the search records the trial as failed and goes on.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import logging
import math
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from space import Genome, build

from .common import UsageError
from .settings import ProxySettings, usage_errors
from .data import Normalization, Split, load_dataset, preprocess, proxy_resolution, \
    split_train_val, take_subset
from .memory import InsufficientMemory, check_fits, inference_bytes, training_bytes
from .noise import binomial_standard_error
from .protocol import EVALUATOR_KINDS, EVALUATORS, PROXY_DEFAULTS, ZERO_COST_BATCH, \
    EvaluationFailed
from .train import TrainConfig, TrainingDiverged, default_device, fit

__all__ = ["EVALUATORS", "EvaluationFailed", "Evaluator", "ProxyTrainEvaluator",
           "NaswotEvaluator", "SynflowEvaluator", "GradNormEvaluator", "make_evaluator",
           "PROXY_DEFAULTS"]

log = logging.getLogger(__name__)

# name -> class, filled as subclasses are defined (make_evaluator imports their module).
_CLASSES: dict[str, type["Evaluator"]] = {}


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text
                                                or "can't allocate memory" in text)


class Evaluator(abc.ABC):
    """Scores genomes on one dataset. ``num_classes`` and ``in_channels`` are the
    dataset's (the search costs genomes with them). A subclass with a ``name`` is the
    evaluator of that name in :data:`nas.protocol.EVALUATOR_KINDS`; :func:`make_evaluator`
    makes it through :meth:`create`."""

    name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _CLASSES[cls.name] = cls

    @classmethod
    def create(cls, *, proxy: ProxySettings, batch_size: Optional[int],
               train_config: Optional[TrainConfig], common: dict[str, Any],
               **extra: Any) -> "Evaluator":
        """The evaluator for :func:`make_evaluator`'s arguments: ``proxy`` the checked
        protocol, ``batch_size`` None where not given, ``common`` this class's keyword
        arguments, ``extra`` what only some evaluators take (ignored by the rest)."""
        return cls(**common)

    @property
    def is_accuracy(self) -> bool:
        return EVALUATOR_KINDS[self.name].is_accuracy

    def __init__(self, *, dataset: str, data_dir: Union[str, None], resolution: int,
                 seed: int, device: Union[str, torch.device, None], quiet: bool) -> None:
        self.data = load_dataset(dataset, data_dir)
        self.resolution = resolution
        self.seed = seed
        self.device = torch.device(device) if device is not None else default_device()
        self.quiet = quiet

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def in_channels(self) -> int:
        return self.data.in_channels

    @property
    def normalization(self) -> Normalization:
        return self.data.normalization

    def input_resolution(self, genome: Genome) -> int:
        """Pixels of the evaluation input: proxy resolution x the genome's multiplier."""
        return proxy_resolution(self.resolution, genome.resolution_multiplier)

    def _check_memory(self, genome: Genome, *, resolution: int, batch: int, training: bool,
                      eval_batch: int = 0) -> None:
        """Fail the evaluation, with the estimate as its reason, before building a network
        that would not fit in memory (a search records it and goes on)."""
        shape = {"resolution": resolution, "batch": batch, "num_classes": self.num_classes,
                 "in_channels": self.in_channels}
        needed = (training_bytes(genome, **shape, eval_batch=eval_batch) if training
                  else inference_bytes(genome, **shape))
        try:
            check_fits(needed, f"{self.name} at {resolution} px, batch {batch}",
                       device=self.device, advice="not evaluated")
        except InsufficientMemory as error:
            raise EvaluationFailed(str(error)) from None

    def settings(self) -> dict[str, Any]:
        """What determines the scores (recorded next to them)."""
        return {"evaluator": self.name, "dataset": self.data.name, "resolution": self.resolution,
                "seed": self.seed}

    def noise(self, score: float) -> Optional[float]:
        """The standard error of ``score`` as this evaluator measures it, or None where it
        is unknown; :func:`nas.noise.verdict` says whether a lead is beyond it."""
        return None

    @abc.abstractmethod
    def evaluate(self, genome: Genome, *,
                 on_epoch: Optional[Callable[[int, float], None]] = None) -> float:
        """A positive, higher-is-better score of ``genome``."""


class ProxyTrainEvaluator(Evaluator):
    """Short training on a subset; the score is the validation accuracy in [0, 1]."""

    name = "proxy-train"

    @classmethod
    def create(cls, *, proxy: ProxySettings, batch_size: Optional[int],
               train_config: Optional[TrainConfig], common: dict[str, Any],
               **extra: Any) -> Evaluator:
        return cls(subset=proxy.subset, epochs=proxy.epochs,
                   batch_size=batch_size or proxy.batch_size, val_size=proxy.val_size,
                   train_config=train_config, **common)

    def __init__(self, *, subset: int, epochs: int, batch_size: int, val_size: int,
                 train_config: Optional[TrainConfig] = None, **common: Any) -> None:
        super().__init__(**common)
        train, self.val = split_train_val(self.data, val_size, self.seed)
        self.train = take_subset(train, subset, self.seed)
        self.config = dataclasses.replace(train_config or TrainConfig(), epochs=epochs,
                                          batch_size=batch_size, seed=self.seed)

    def noise(self, score: float) -> Optional[float]:
        """The binomial standard error of an accuracy on the validation split (a lower
        bound: the spread over training seeds comes on top of it)."""
        return binomial_standard_error(min(1.0, max(0.0, score)), len(self.val))

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "subset": len(self.train), "val_size": len(self.val),
                **{key: value for key, value in self.config.to_dict().items()
                   if key not in ("resolution", "seed")}}

    def evaluate(self, genome: Genome, *,
                 on_epoch: Optional[Callable[[int, float], None]] = None) -> float:
        raised_by_callback: list[BaseException] = []

        def report(epoch: int, accuracy: float) -> None:
            try:
                on_epoch(epoch, accuracy)
            except BaseException as error:
                raised_by_callback.append(error)
                raise

        torch.manual_seed(self.seed)
        config = dataclasses.replace(self.config, resolution=self.input_resolution(genome))
        self._check_memory(genome, resolution=config.resolution, batch=config.batch_size,
                           training=True, eval_batch=config.eval_batch_size)
        try:
            model = build(genome, num_classes=self.num_classes, in_channels=self.in_channels)
            result = fit(model, train=self.train, val=self.val, normalization=self.normalization,
                         config=config, device=self.device, quiet=self.quiet,
                         on_epoch=report if on_epoch is not None else None,
                         description=genome.name or "proxy")
        except TrainingDiverged as error:
            raise EvaluationFailed(f"training diverged: {error}") from error
        except (RuntimeError, MemoryError) as error:
            if raised_by_callback and error is raised_by_callback[0]:
                raise
            if _is_out_of_memory(error):
                _release_memory(self.device)
                raise EvaluationFailed(f"out of memory at {config.resolution} px, batch "
                                       f"{config.batch_size}: {str(error)[:200]}") from error
            raise
        return float(result.val_accuracy)


class _ZeroCostEvaluator(Evaluator):
    """Scores one fixed, seeded mini-batch of training images at initialisation."""

    @classmethod
    def create(cls, *, proxy: ProxySettings, batch_size: Optional[int],
               train_config: Optional[TrainConfig], common: dict[str, Any],
               **extra: Any) -> Evaluator:
        return cls(batch_size=batch_size or ZERO_COST_BATCH, val_size=proxy.val_size, **common)

    def __init__(self, *, batch_size: int, val_size: int, **common: Any) -> None:
        super().__init__(**common)
        train, _ = split_train_val(self.data, val_size, self.seed)
        self.batch: Split = take_subset(train, batch_size, self.seed)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "batch_size": len(self.batch)}

    def evaluate(self, genome: Genome, *,
                 on_epoch: Optional[Callable[[int, float], None]] = None) -> float:
        architecture = dataclasses.replace(genome, dropout=0.0, drop_connect_rate=0.0)
        resolution = self.input_resolution(genome)
        # synflow and grad-norm keep what a backward pass needs; naswot only runs forward.
        self._check_memory(genome, resolution=resolution, batch=len(self.batch),
                           training=self.name != "naswot")
        torch.manual_seed(self.seed)
        try:
            model = build(architecture, num_classes=self.num_classes,
                          in_channels=self.in_channels).to(self.device)
            inputs = preprocess(self.batch.images.to(self.device), resolution,
                                self.normalization)
            score = self._score(model, inputs, self.batch.labels.to(self.device))
        except (RuntimeError, MemoryError) as error:
            if _is_out_of_memory(error):
                _release_memory(self.device)
                raise EvaluationFailed(f"out of memory at {resolution} px: "
                                       f"{str(error)[:200]}") from error
            raise
        if not math.isfinite(score) or score <= 0:
            raise EvaluationFailed(f"{self.name} score is {score} (not a positive finite number)")
        return score

    @abc.abstractmethod
    def _score(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        """The raw proxy of a freshly initialised model on one batch."""


class NaswotEvaluator(_ZeroCostEvaluator):
    """``ln |K_H|``, ``K_H[i, j]`` = number of units where images i and j agree on
    being active (Mellor et al. 2021, Eq. 2)."""

    name = "naswot"

    def _score(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        count = inputs.shape[0]
        kernel = torch.zeros((count, count), dtype=torch.float64, device=inputs.device)

        def record(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            # A pre-hook: in-place activations would overwrite the pre-activation.
            codes = (args[0].detach().reshape(count, -1) > 0).to(torch.float32)
            # Agreements = both active + both inactive = 2 c.c' - |c| - |c'| + units: one
            # matmul instead of two; the counts stay integers below 2^24, exact in float32.
            active = codes.sum(dim=1)
            agree = 2 * (codes @ codes.T) - active[:, None] - active[None, :] + codes.shape[1]
            kernel.add_(agree.to(torch.float64))

        handles = [module.register_forward_pre_hook(record) for module in model.modules()
                   if isinstance(module, (nn.ReLU, nn.SiLU))]
        try:
            model.train()  # batch statistics, as the activations of a first training step
            with torch.no_grad():
                model(inputs)
        finally:
            for handle in handles:
                handle.remove()
        sign, logdet = torch.linalg.slogdet(kernel)
        if float(sign) <= 0:
            raise EvaluationFailed("NASWOT kernel is singular: two images share every "
                                   "activation code")
        return float(logdet)


class SynflowEvaluator(_ZeroCostEvaluator):
    """``ln(1 + sum |theta * dR/dtheta|)`` with ``R = sum f_|theta|(1)`` (Tanaka et al. 2020)."""

    name = "synflow"

    def _score(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        model = model.double().eval()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.abs_()
        ones = torch.ones((1,) + tuple(inputs.shape[1:]), dtype=torch.float64,
                          device=inputs.device)
        model.zero_grad(set_to_none=True)
        model(ones).sum().backward()
        total = sum(float((parameter.detach() * parameter.grad).abs().sum())
                    for parameter in model.parameters() if parameter.grad is not None)
        if not math.isfinite(total):
            raise EvaluationFailed("synflow overflowed float64 (the network is too deep for "
                                   "the all-ones signal)")
        return math.log1p(total)


class GradNormEvaluator(_ZeroCostEvaluator):
    """Sum over parameter tensors of ``||dL/dtheta||_2`` for the cross-entropy of one batch."""

    name = "grad-norm"

    def _score(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
        return sum(float(parameter.grad.norm()) for parameter in model.parameters()
                   if parameter.grad is not None)


def _release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def make_evaluator(name: str, *, dataset: str = "fashion-mnist", data_dir: Optional[str] = None,
                   resolution: Optional[int] = None, subset: Optional[int] = None,
                   epochs: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
                   device: Union[str, torch.device, None] = None, quiet: bool = True,
                   val_size: Optional[int] = None, train_config: Optional[TrainConfig] = None,
                   proxy: Optional[ProxySettings] = None, **extra: Any) -> Evaluator:
    """An evaluator by name (one of :data:`EVALUATORS`).

    ``proxy`` is the protocol (default :class:`~nas.settings.ProxySettings`); the keyword
    arguments of the same names replace its fields: ``resolution`` is the proxy
    resolution in pixels (a genome is evaluated at it times its
    ``resolution_multiplier``); ``subset``, ``epochs`` and ``batch_size`` are the proxy
    training's (``batch_size`` None: the protocol's for proxy-train, 64 images for the
    zero-cost proxies); ``val_size`` training images are held out for validation.
    ``train_config`` sets the proxy's optimiser and schedule; ``extra`` goes to the
    evaluators that take more (the rest ignore it). Torch's thread count is the caller's
    (the search splits the cores between its workers)."""
    if name not in EVALUATORS:
        raise UsageError(f"unknown evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")
    given = {"resolution": resolution, "subset": subset, "epochs": epochs,
             "batch_size": batch_size, "val_size": val_size}
    fields = [f.name for f in dataclasses.fields(ProxySettings)]
    with usage_errors(names={field: f"proxy {field.replace('_', ' ')}" for field in fields}):
        proxy = dataclasses.replace(proxy or ProxySettings(),
                                    **{k: v for k, v in given.items() if v is not None})
    importlib.import_module(EVALUATOR_KINDS[name].module)  # defines and registers the class
    common = {"dataset": dataset, "data_dir": data_dir, "resolution": proxy.resolution,
              "seed": seed, "device": device, "quiet": quiet}
    return _CLASSES[name].create(proxy=proxy, batch_size=batch_size, train_config=train_config,
                                 common=common, **extra)
