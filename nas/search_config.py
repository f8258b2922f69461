"""What a search is asked to do: :class:`SearchConfig`, its defaults, bounds and help
(which ``nas search`` turns into its options), and the study identity it implies.

Importable without torch: ``nas search`` checks its flags before torch loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from .common import MAX_SEED, format_count, parse_seed
from .evolution import POPULATION_SIZE
from .protocol import EVALUATORS, PRESCREENS
from .settings import ProxySettings, SettingError, Settings, setting

__all__ = ["SearchConfig", "METRICS", "SAMPLERS", "PRUNERS", "DEFAULT_TRIALS",
           "DEFAULT_TIMEOUT", "IDENTITY_ATTRS", "DEFAULT_REFERENCES", "default_study_name",
           "check_study_name"]

METRICS = ("flops", "params", "activations", "latency")
SAMPLERS = ("tpe", "random", "nsga2", "evolution")
PRUNERS = ("median", "hyperband", "none")
# The budget of a search given neither --n-trials nor --timeout: a first search that ends
# in under 20 minutes even on a slow 2-core CPU (a proxy trial takes 1.5-4 min there).
DEFAULT_TRIALS = 12
DEFAULT_TIMEOUT = 18 * 60

# Study attributes that must match when a study is resumed: changing any of them would
# mix incomparable scores in one study. (The prescreen is recorded too, but only decides
# which genomes are trained, so a resumed study may change it.)
IDENTITY_ATTRS = ("target", "metric", "alpha", "beta", "objective", "evaluator", "dataset",
                  "resolution", "proxy_resolution", "proxy_subset", "proxy_epochs",
                  "proxy_val_size", "latency_table", "supernet")

_TARGET, _EVALUATION, _STUDY = "target and reward", "evaluation", "study"
_SELECTION = "selection of the best"
# The hand-designed networks every study evaluates beside its search (space.presets names).
DEFAULT_REFERENCES = "efficientnet-b0,mnasnet-a1"
# The confirmation's training is this many times the proxy's epochs unless given.
CONFIRM_EPOCH_FACTOR = 5


def _proxy(name: str) -> Any:
    """``proxy_<name>``: the :class:`ProxySettings` field, under the evaluation options."""
    field = next(f for f in dataclasses.fields(ProxySettings) if f.name == name)
    return dataclasses.field(default=field.default,
                             metadata={**field.metadata, "group": _EVALUATION})


@dataclass(frozen=True)
class SearchConfig(Settings):
    """One search; its fields (but ``target``, which ``nas search`` parses with units)
    are ``nas search``'s options."""

    target: float = setting(help="in the metric's unit; multiply-adds for flops", low=0,
                            low_open=True, cli=False)
    # metric "latency": the table that prices genomes (nas.latency), refused when measured
    # on another machine unless allow_foreign_table
    latency_table: Optional[str] = setting(
        None, "latency table (default: this machine's, runs/latency/)", metavar="FILE",
        group=_TARGET)
    allow_foreign_table: bool = setting(
        False, "use a latency table measured on another machine (with a warning)",
        group=_TARGET)
    metric: str = setting(
        "flops", "cost in the reward: multiply-adds at deployment resolution (default), "
        "parameters, activations, or latency predicted by this machine's latency table "
        "(see --target-latency)", choices=METRICS, group=_TARGET)
    # The MnasNet soft constraint; nas search sets both from --reward unless given.
    alpha: float = setting(-0.07, "reward exponent at or below T (overrides --reward)",
                           low=-10, high=10, group=_TARGET)
    beta: float = setting(-0.07, "reward exponent above T (overrides --reward)",
                          low=-10, high=10, group=_TARGET)
    objective: str = setting("single", "multi: NSGA-II on (accuracy, cost); reports the "
                             "Pareto front", choices=("single", "multi"), group=_TARGET)
    cost_window: float = setting(
        0.1, "only evaluate genomes whose cost is within T x (1 +- F); the rest are "
        "recorded as screened without training (default 0.1; 0 evaluates everything)",
        low=0, high=1, high_open=True, metavar="F", group=_TARGET)
    evaluator: str = setting(
        "proxy-train", f"one of {', '.join(EVALUATORS)} (default proxy-train)",
        choices=EVALUATORS, cli_choices=False, noun="evaluator", metavar="NAME",
        group=_EVALUATION)
    dataset: str = setting("fashion-mnist", "fashion-mnist (default), cifar10, cifar100 or "
                           "imagefolder", group=_EVALUATION)
    data_dir: Optional[str] = setting(
        None, "dataset folder (default for Fashion-MNIST: /usr/share/datasets/fashion-mnist)",
        flags=("--data",), metavar="DIR", group=_EVALUATION)
    resolution: Optional[int] = setting(
        None, "deployment resolution of the costs (default: the space's, 224)", low=8,
        high=4096, group=_EVALUATION)
    # One artifact for every worker of a distributed study (workers on other machines
    # cannot find the default one under their own runs folder).
    supernet: Optional[str] = setting(
        None, "supernet artifact for --evaluator supernet (default: runs/supernets/"
        "<digest>.pt, trained there on first use); give every worker the same file",
        metavar="FILE", group=_EVALUATION)
    proxy_resolution: int = _proxy("resolution")
    proxy_subset: int = _proxy("subset")
    proxy_epochs: int = _proxy("epochs")
    proxy_val_size: int = _proxy("val_size")
    # Zero-cost score a genome of the target window must reach (the median of the window's
    # earlier candidates) before it is trained; used with proxy-train in a single-objective
    # search with a cost window, where size is nearly fixed. Elsewhere a zero-cost score,
    # which grows with size, would only favour the larger genomes.
    prescreen: str = setting(
        "naswot", "with proxy-train: train a genome of the target window only if this "
        "zero-cost score reaches the median of the window's earlier candidates; the rest "
        "are recorded as screened (default naswot, which ranks genomes better than the "
        "3-epoch proxy; none trains every one)", choices=PRESCREENS, group=_EVALUATION)
    space_path: Optional[str] = setting(
        None, "search-space file (TOML/JSON); see `nas show --space`", flags=("--space",),
        metavar="FILE", group=_STUDY)
    n_trials: int = setting(
        DEFAULT_TRIALS, "total evaluated trials of the study, over all workers and restarts "
        "(not in addition: a rerun finishes the remainder); default "
        f"{DEFAULT_TRIALS}", low=1, group=_STUDY)
    timeout: Optional[float] = setting(
        None, "time budget of this process: no trial starts that the median trial so far "
        "says would overrun it. Given neither --n-trials nor --timeout, a search stops "
        f"after {DEFAULT_TRIALS} trials or {DEFAULT_TIMEOUT // 60} minutes, whichever comes "
        "first", low=0, low_open=True, metavar="SECONDS", group=_STUDY)
    seed: int = setting(0, None, low=0, high=MAX_SEED, parse=parse_seed, group=_STUDY)
    sampler: Optional[str] = setting(
        None, "default: tpe (seeded, multivariate); nsga2 with --objective multi; evolution: "
        "regularized evolution (one objective)", choices=SAMPLERS, group=_STUDY)
    population_size: int = setting(
        POPULATION_SIZE, "evolution: the N most recent complete trials form the population "
        "(default %(default)s)", low=2, metavar="N", group=_STUDY)
    # Members per tournament, the best of them mutated; None: the whole population.
    tournament_size: Optional[int] = setting(
        None, "evolution: the best of N random members is mutated in one choice (default: "
        "the whole population)", metavar="N", group=_STUDY)
    pruner: str = setting("median", "prunes proxy training on per-epoch validation accuracy",
                          choices=PRUNERS, group=_STUDY)
    study: Optional[str] = setting(None, "study name (default: <dataset>-<target>-<evaluator>)",
                                   group=_STUDY)
    storage: Optional[str] = setting(
        None, "Optuna storage: sqlite:///PATH, postgresql://USER:PW@HOST/DB or journal:PATH "
        "(default: runs/<study>/study.db)", metavar="URL", group=_STUDY)
    runs_dir: str = setting("runs", "output folder", flags=("--runs",), group=_STUDY)
    references: str = setting(
        DEFAULT_REFERENCES, "hand-designed networks evaluated once per study beside the search, "
        "outside its trial budget, by the same evaluator (by the confirmation's training, after "
        "the search and within --timeout, where the evaluator cannot score them, e.g. a "
        "supernet); comma-separated preset names, or "
        "none (default %(default)s)", metavar="NAMES", group=_SELECTION)
    # Off until the reference trainings measure what it buys (README, docs/search.md).
    confirm_top: int = setting(
        0, "re-train the K best genomes of the study (and the reference networks) longer, "
        "with --confirm-seeds seeds, and choose best.json by that confirmed reward "
        "(default 0: off, best.json is the best proxy reward)", low=0, metavar="K",
        group=_SELECTION)
    confirm_epochs: Optional[int] = setting(
        None, f"epochs of the confirmation's proxy training (default {CONFIRM_EPOCH_FACTOR} x "
        "--proxy-epochs)", low=1, metavar="N", group=_SELECTION)
    confirm_seeds: int = setting(2, "training seeds per confirmed genome; the confirmed "
                                 "score is their mean (default %(default)s)", low=1, high=10,
                                 metavar="N", group=_SELECTION)
    quiet: bool = setting(False, "no progress bar")

    def __post_init__(self) -> None:
        if self.sampler is None:
            object.__setattr__(self, "sampler", "nsga2" if self.objective == "multi" else "tpe")
        super().__post_init__()

    def check(self) -> None:
        if self.sampler == "evolution" and self.objective != "single":
            raise SettingError("{sampler} evolution optimises one objective; with {objective} "
                               "multi use nsga2, tpe or random")
        from space import presets

        if self.supernet is not None and self.evaluator != "supernet":
            raise SettingError("{supernet} is the artifact of --evaluator supernet; the "
                               "evaluator is {evaluator_name}", evaluator_name=self.evaluator)
        unknown = [name for name in self.reference_names if name not in presets.names()]
        if unknown:
            raise SettingError("{references}: unknown network {name!r}; choose from {known} "
                               "or none", name=unknown[0], known=", ".join(presets.names()))
        if self.tournament_size is not None and not \
                1 <= self.tournament_size <= self.population_size:
            raise SettingError("{tournament_size} must be between 1 and {population_size} "
                               "({size})", size=self.population_size)

    @property
    def proxy(self) -> ProxySettings:
        """The proxy-train protocol of this search (batch size: the protocol's)."""
        return ProxySettings(resolution=self.proxy_resolution, subset=self.proxy_subset,
                             epochs=self.proxy_epochs, val_size=self.proxy_val_size)

    @property
    def reference_names(self) -> tuple[str, ...]:
        """The reference networks of :attr:`references`, in order, each once."""
        names = [name.strip() for name in self.references.split(",") if name.strip()]
        return () if names in ([], ["none"]) else tuple(dict.fromkeys(names))

    @property
    def confirm(self) -> ProxySettings:
        """The confirmation's protocol: the proxy's, trained :attr:`confirm_epochs`."""
        return dataclasses.replace(self.proxy, epochs=self.confirm_epochs
                                   or CONFIRM_EPOCH_FACTOR * self.proxy_epochs)

    @property
    def active_prescreen(self) -> Optional[str]:
        if self.prescreen == "none" or not self.evaluator_is_accuracy \
                or self.objective != "single" or not self.cost_window:
            return None
        return self.prescreen

    @property
    def evaluator_is_accuracy(self) -> bool:
        """Whether the evaluator trains and scores accuracy (it then reports epochs, which
        a pruner can act on, and a zero-cost prescreen can save it work)."""
        from .protocol import is_accuracy

        return is_accuracy(self.evaluator)

    def identity(self, resolution: int, latency_digest: Optional[str],
                 supernet_digest: Optional[str] = None) -> dict[str, Any]:
        """The study attributes a resumed study must match (:data:`IDENTITY_ATTRS`), and
        the prescreen; ``resolution`` is the deployment resolution in effect; the digests
        name the latency table and the supernet whose scores the study holds."""
        resolved = {"resolution": resolution, "latency_table": latency_digest,
                    "supernet": supernet_digest}
        identity = {key: resolved[key] if key in resolved else getattr(self, key)
                    for key in IDENTITY_ATTRS}
        for key in ("latency_table", "supernet"):  # absent from studies that have none
            if identity[key] is None:
                del identity[key]
        identity["prescreen"] = self.active_prescreen or "none"
        return identity


def default_study_name(config: SearchConfig) -> str:
    """``fashion-mnist-400M-proxy-train``: the study a repeated command resumes."""
    target = (f"{1e3 * config.target:g}ms" if config.metric == "latency"
              else format_count(config.target).replace(".0", ""))
    parts = [config.dataset, target]
    if config.metric != "flops":
        parts.append(config.metric)
    parts.append(config.evaluator)
    if config.objective == "multi":
        parts.append("pareto")
    return "-".join(parts)


def check_study_name(name: str) -> str:
    """``name`` if it can name a run folder."""
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SettingError("{study} {name!r} may use letters, digits, '-', '_' and '.' only "
                           "(it names a folder)", name=name)
    return name
