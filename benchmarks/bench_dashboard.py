"""Dashboards and reports of large studies: 1,000, 10,000 and 100,000 trials.

Each study is written record by record in the format ``nas search`` leaves (not by running
the search): genomes drawn uniformly from the default space and costed by ``space.cost`` at
224 px for Fashion-MNIST (10 classes, 1 channel); the 7.3% evaluated (the 730 complete of
the 10,000-trial study in issue 26) are window genomes with a synthetic accuracy, three
epochs of intermediate values, a note with the stage table and the two artifacts; the other
window genomes are prescreened (a naswot-like score below the median), the rest screened
outside the 400 M +- 10% window. The study's identity is that of a cheap proxy training
(1 epoch on 100 images at 16 px) so that the resume below trains for seconds, not minutes.

Measured per study, each in a fresh process on the study's SQLite file:

- ``request``: ``nas dashboard``'s study request ``/api/studies/<id>`` over HTTP, cold and
  repeated, its size, and the server's peak memory;
- ``browser``: the study page in headless Chromium (DevTools protocol over a pipe) until the
  optimization-history plot has drawn its points, on a fresh server;
- ``report``: ``nas report`` wall time, peak memory and page size;
- ``outputs``: ``trials.csv`` and ``best.json`` (:func:`nas.results.write_outputs`);
- ``resume``: ``nas search`` resumed on the study for two more evaluated trials.

    flock /tmp/nas-heavy.lock python3 benchmarks/bench_dashboard.py --label after
    git archive 173c97e nas space scaling | tar -x -C /tmp/before    # the code before
    flock /tmp/nas-heavy.lock python3 benchmarks/bench_dashboard.py --label before \
        --code /tmp/before --sizes 1000 10000
    python3 benchmarks/bench_dashboard.py --table                    # the markdown table

Results go to benchmarks/results/dashboard.json under the label (``before``: the code
before issue 26, ``after``: with it), one entry per size and measurement as they finish; a
measurement already there is skipped, so an interrupted run resumes (``--again`` redoes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution, distribution_to_json  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "dashboard.json"
SIZES = (1000, 10_000, 100_000)
MEASURES = ("request", "browser", "report", "outputs", "resume")
EVALUATED_SHARE = 730 / 10_000  # the mix of the default search in issue 26
TARGET = 400_000_000
WINDOW = 0.1
RESOLUTION, NUM_CLASSES, IN_CHANNELS = 224, 10, 1
PROXY = {"proxy_resolution": 16, "proxy_subset": 100, "proxy_epochs": 1, "proxy_val_size": 50}
STUDY = "big"
CHROMIUM = "/usr/bin/chromium"
BROWSER_LIMIT_S = 300
RESUME_LIMIT_S = 1200  # a resume that needs longer is recorded as timed out
# The history plot has drawn the evaluated trials once its scatter layer holds points.
PLOT_DRAWN = ("document.querySelectorAll('.js-plotly-plot .scatterlayer .point').length")


# -- writing a study -------------------------------------------------------------------------


class _Recorder:
    """A suggester for ``SearchSpace.sample`` that draws uniformly and keeps what a trial
    would hold: the parameters and their distributions."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, CategoricalDistribution] = {}

    def suggest_categorical(self, name: str, options):
        self.distributions[name] = CategoricalDistribution(list(options))
        self.params[name] = self.rng.choice(list(options))
        return self.params[name]


def _fast_sqlite(path: Path) -> optuna.storages.RDBStorage:
    """The study's SQLite file written without fsync (a bulk load, not a live search)."""

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=60)
        connection.execute("PRAGMA synchronous=OFF")
        return connection

    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"creator": connect})


class _ScreenedRows:
    """Screened trials written straight into Optuna's SQLite schema, many per transaction:
    through the storage API (one transaction per trial, a row per parameter) a 100,000-trial
    study would take hours. The rows are those Optuna writes for a pruned trial; the
    evaluated trials between them go through the API."""

    def __init__(self, path: Path, study_id: int) -> None:
        self.connection = sqlite3.connect(path, timeout=60)
        self.connection.execute("PRAGMA synchronous=OFF")
        self.study_id = study_id
        self.pending: list[tuple] = []

    def add(self, number: int, start: datetime.datetime, end: datetime.datetime,
            params: dict, distributions: dict, attrs: dict) -> None:
        self.pending.append((number, start, end, params, distributions, attrs))

    def flush(self) -> None:
        if not self.pending:
            return
        cursor = self.connection.cursor()
        (last,) = cursor.execute("SELECT COALESCE(MAX(trial_id), 0) FROM trials").fetchone()
        trials, params, attrs = [], [], []
        for offset, (number, start, end, values, distributions, user_attrs) in enumerate(self.pending):
            trial_id = last + 1 + offset
            trials.append((trial_id, number, self.study_id, "PRUNED", _sql_time(start), _sql_time(end)))
            params += [(trial_id, name, distributions[name].to_internal_repr(value),
                        distribution_to_json(distributions[name])) for name, value in values.items()]
            attrs += [(trial_id, key, json.dumps(value)) for key, value in user_attrs.items()]
        cursor.executemany("INSERT INTO trials (trial_id, number, study_id, state, datetime_start, "
                           "datetime_complete) VALUES (?, ?, ?, ?, ?, ?)", trials)
        cursor.executemany("INSERT INTO trial_params (trial_id, param_name, param_value, "
                           "distribution_json) VALUES (?, ?, ?, ?)", params)
        cursor.executemany('INSERT INTO trial_user_attributes (trial_id, "key", value_json) '
                           "VALUES (?, ?, ?)", attrs)
        self.connection.commit()
        self.pending.clear()

    def finish_time(self, trial_id: int, end: datetime.datetime) -> None:
        """Put an evaluated trial's completion on the synthetic clock (Optuna stamps it now)."""
        self.connection.execute("UPDATE trials SET datetime_complete = ? WHERE trial_id = ?",
                                (_sql_time(end), trial_id))
        self.connection.commit()


def _sql_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy stores DATETIME in SQLite


def build_study(run_dir: Path, size: int, *, seed: int = 0) -> dict[str, Any]:
    """Write a study of ``size`` trials to ``run_dir/study.db`` (and its artifacts and
    best.json); returns counts and the seconds it took."""
    from optuna_dashboard._note import note_ver_key, split_body  # the note's storage format
    from tqdm import tqdm

    from nas import trial_notes
    from nas.common import atomic_write_text
    from nas.storage import study_id
    from nas.trial import genome_digest
    from nas.reward import RewardSpec, reward
    from space import Genome, SearchSpace, cost

    started = time.perf_counter()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = _fast_sqlite(run_dir / "study.db")
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    identity = {"target": TARGET, "metric": "flops", "alpha": -0.07, "beta": -0.07,
                "objective": "single", "evaluator": "proxy-train", "dataset": "fashion-mnist",
                "resolution": RESOLUTION, **PROXY, "prescreen": "naswot",
                "num_classes": NUM_CLASSES, "in_channels": IN_CHANNELS,
                "space": "space/default_space.toml",
                "storage": f"sqlite:///{run_dir / 'study.db'}"}
    for key, value in identity.items():
        study.set_user_attr(key, value)
    rows = _ScreenedRows(run_dir / "study.db", study_id(study))
    space = SearchSpace.default()
    store = trial_notes.artifact_store_for(run_dir)
    spec = RewardSpec(TARGET, -0.07, -0.07)
    rng = random.Random(seed)
    quota = round(size * EVALUATED_SHARE)
    low, high = TARGET * (1 - WINDOW), TARGET * (1 + WINDOW)
    clock = datetime.datetime(2026, 1, 1, 12, 0, 0)
    counts = {"complete": 0, "screened": 0, "prescreened": 0}
    scores: list[float] = []
    best: tuple[float, Optional[Genome]] = (-math.inf, None)

    def draw(number: int):
        recorder = _Recorder(rng)
        genome = space.sample(recorder, name=f"{STUDY}-trial{number}")
        return recorder, genome, cost(genome, RESOLUTION, NUM_CLASSES, IN_CHANNELS)

    for number in tqdm(range(size), desc=f"write {size} trials", unit="trial", mininterval=2):
        left, evaluations_left = size - number, quota - counts["complete"]
        recorder, genome, costs = draw(number)
        in_window = low <= costs.flops <= high
        if evaluations_left >= left or (evaluations_left > 0 and in_window and rng.random() < 0.5):
            while not low <= costs.flops <= high:  # the quota must be met: a window genome
                recorder, genome, costs = draw(number)
            kind = "complete"
        else:
            kind = "prescreened" if in_window else "screened"
        counts[kind] += 1
        attrs: dict[str, Any] = {"worker": "bench:1", "genome": genome.to_dict(),
                                 "digest": genome_digest(genome), "flops": costs.flops,
                                 "params": costs.params, "activations": costs.activations,
                                 "cost": costs.flops, "evaluator": "proxy-train"}
        seconds = 0.05
        if kind == "screened":
            attrs["screened"] = (f"flops {costs.flops / 1e6:.1f}M outside the target window "
                                 "360.0M..440.0M; not evaluated")
        else:
            score = 1000 + 200 * math.log(costs.params) + rng.gauss(0, 20)
            attrs["prescreen_score"] = score
            bar = sorted(scores)[len(scores) // 2] if scores else -math.inf
            scores.append(score)
            seconds = 0.4
            if kind == "prescreened":
                attrs["screened"] = (f"naswot score {score:.4g} below the median {bar:.4g} of "
                                     f"the {len(scores) - 1} earlier candidates in the window; "
                                     "not trained")
        start = clock
        if kind != "complete":
            clock += datetime.timedelta(seconds=seconds)
            rows.add(number, start, clock, recorder.params, recorder.distributions, attrs)
            if len(rows.pending) >= 5000:
                rows.flush()
            continue
        rows.flush()
        accuracy = min(0.95, 0.85 + 0.04 * math.log(costs.flops / TARGET) + rng.uniform(-0.01, 0.01))
        value = reward(accuracy, costs.flops, spec)
        seconds = rng.uniform(60, 120)
        clock += datetime.timedelta(seconds=seconds)
        attrs.update(accuracy=accuracy, reward=value, eval_seconds=round(seconds, 3))
        best = max(best, (value, genome), key=lambda pair: pair[0])
        # Artifacts attach to running trials only: the trial finishes after them.
        trial_id = storage.create_new_trial(study_id(study), template_trial=FrozenTrial(
            number=number, trial_id=number, state=TrialState.RUNNING, value=None, values=None,
            datetime_start=start, datetime_complete=None, params=recorder.params,
            distributions=recorder.distributions, user_attrs=attrs, system_attrs={},
            intermediate_values={epoch: accuracy * (0.8 + 0.1 * epoch) for epoch in range(3)}))
        note = trial_notes.trial_note(genome, costs, accuracy=accuracy, reward=value,
                                      resolution=RESOLUTION)
        storage.set_study_system_attr(study_id(study), note_ver_key(trial_id), 1)
        for key, text in split_body(note, trial_id).items():
            storage.set_study_system_attr(study_id(study), key, text)
        trial_notes.attach_trial_artifacts(study, storage.get_trial(trial_id), genome, store)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
        rows.finish_time(trial_id, clock)
    rows.flush()
    rows.connection.close()
    atomic_write_text(run_dir / "best.json", best[1].to_json() + "\n")
    storage.engine.dispose()
    return {"trials": size, **counts, "seconds": round(time.perf_counter() - started, 1),
            "db_mb": round((run_dir / "study.db").stat().st_size / 2**20, 1)}


# -- measuring ---------------------------------------------------------------------------------


# Where the measured processes import nas from (--code): the tree itself, or a copy of an
# older commit for the figures before a change.
CODE = [REPO]


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(CODE[0]), "OMP_NUM_THREADS": "1"}


def _run_timed(command: list[str], *, limit: float) -> dict[str, Any]:
    """Run a command; its wall seconds, peak memory (MB, of the process and the largest
    child it waited for) and exit code."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=_child_env(), cwd=CODE[0], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return {"seconds": None, "timed_out_after_s": limit, "exit": None}
    seconds = time.perf_counter() - started
    peak_kb = _peak_rss_kb(err)
    return {"seconds": round(seconds, 2), "exit": process.returncode,
            "peak_mb": None if peak_kb is None else round(peak_kb / 1024, 1),
            "stdout_tail": out.strip().splitlines()[-3:], "stderr_tail": err.strip().splitlines()[-3:]
            if process.returncode else []}


_TIME_V = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def _peak_rss_kb(stderr: str) -> Optional[int]:
    match = _TIME_V.search(stderr)
    return int(match.group(1)) if match else None


def _timed_python(code: str, *, limit: float) -> dict[str, Any]:
    """``python3 -c code`` under ``/usr/bin/time -v`` (peak resident memory)."""
    return _run_timed(["/usr/bin/time", "-v", sys.executable, "-c", code], limit=limit)


class _Dashboard:
    """``nas dashboard RUN_DIR`` in a child process, for one measurement."""

    def __init__(self, run_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nas", "dashboard", str(run_dir)], env=_child_env(), cwd=CODE[0],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if ": http://" not in line:
            raise RuntimeError(f"nas dashboard did not start: {line}{self.process.stderr.read()}")
        self.url = line.split(": ", 1)[1].strip()
        self.base = self.url.split("/dashboard/")[0]
        self.study_id = int(self.url.rstrip("/").rsplit("/", 1)[1])

    def cpu_s(self) -> float:
        """CPU seconds the server has used: less moved by other load than wall time."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def peak_mb(self) -> float:
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return round(int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024, 1)

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def measure_request(run_dir: Path) -> dict[str, Any]:
    server = _Dashboard(run_dir)
    try:
        result: dict[str, Any] = {}
        for attempt in ("cold", "repeated"):
            started, cpu = time.perf_counter(), server.cpu_s()
            with urllib.request.urlopen(f"{server.base}/api/studies/{server.study_id}",
                                        timeout=600) as response:
                body = response.read()
            result[f"{attempt}_s"] = round(time.perf_counter() - started, 2)
            result[f"{attempt}_cpu_s"] = round(server.cpu_s() - cpu, 2)
        detail = json.loads(body)
        trials = detail["trials"]
        result.update(mb=round(len(body) / 2**20, 2), trials_served=len(trials),
                      kb_per_trial=round(len(body) / 1024 / max(1, len(trials)), 1),
                      notes=sum(bool(t["note"]["body"]) for t in trials),
                      artifacts=sum(len(t["artifacts"]) for t in trials),
                      server_peak_mb=server.peak_mb())
        return result
    finally:
        server.close()


class _DevTools:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and
    4, messages separated by NUL), so no WebSocket client is needed."""

    def __init__(self, profile: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # the child's fds 3 (commands in) and 4 (replies out)
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "--window-size=1400,1000", "about:blank"],
            # preexec_fn runs before the child closes other descriptors: keep 3 and 4.
            preexec_fn=wire, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
             timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(method)
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def measure_browser(run_dir: Path) -> dict[str, Any]:
    server = _Dashboard(run_dir)
    profile = tempfile.mkdtemp(prefix="nas-bench-chromium-")
    browser = _DevTools(profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target,
                                                         "flatten": True})["sessionId"]
        browser.call("Performance.enable", {}, session)
        started, server_cpu = time.perf_counter(), server.cpu_s()
        browser.call("Page.navigate", {"url": server.url}, session)
        points = 0
        while time.perf_counter() - started < BROWSER_LIMIT_S:
            try:
                points = browser.call("Runtime.evaluate", {"expression": PLOT_DRAWN,
                                                           "returnByValue": True},
                                      session, timeout=BROWSER_LIMIT_S)["result"].get("value", 0)
            except TimeoutError:
                break
            if points:
                break
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        if not points:
            return {"seconds": None, "gave_up_after_s": round(seconds, 1)}
        server_cpu = server.cpu_s() - server_cpu
        heap = browser.call("Runtime.evaluate", {
            "expression": "performance.memory ? performance.memory.usedJSHeapSize : 0",
            "returnByValue": True}, session)["result"].get("value", 0)
        metrics = {m["name"]: m["value"] for m in
                   browser.call("Performance.getMetrics", {}, session)["metrics"]}
        # The page's main thread busy time and the server's CPU time: what the page costs
        # on an idle machine, roughly, where the wall time also waits for other jobs.
        return {"seconds": round(seconds, 2), "plot_points": points,
                "js_heap_mb": round(heap / 2**20, 1),
                "page_busy_s": round(metrics.get("TaskDuration", 0), 2),
                "server_cpu_s": round(server_cpu, 2)}
    finally:
        browser.close()
        server.close()
        shutil.rmtree(profile, ignore_errors=True)


def measure_report(run_dir: Path) -> dict[str, Any]:
    out = run_dir / "report.html"
    result = _run_timed(["/usr/bin/time", "-v", sys.executable, "-m", "nas", "report",
                         str(run_dir), "--out", str(out)], limit=3600)
    if out.is_file():
        result["page_mb"] = round(out.stat().st_size / 2**20, 2)
        text = out.read_text(encoding="utf-8")
        match = re.search(r'<p class="sub">([^<]*)</p>', text)
        result["counts_line"] = match.group(1) if match else None
    return result


def measure_outputs(run_dir: Path) -> dict[str, Any]:
    code = (f"import optuna, time; from pathlib import Path; from nas.results import write_outputs; "
            f"from nas.storage import open_storage; "
            f"s = optuna.load_study(study_name={STUDY!r}, storage=open_storage("
            f"'sqlite:///{run_dir / 'study.db'}')); t = time.perf_counter(); "
            f"r = write_outputs(s, Path({str(run_dir)!r})); "
            f"print('write_outputs_s', round(time.perf_counter() - t, 2), r.counts)")
    result = _timed_python(code, limit=3600)
    tail = " ".join(result.get("stdout_tail", []))
    match = re.search(r"write_outputs_s ([0-9.]+)", tail)
    result["write_outputs_s"] = float(match.group(1)) if match else None
    result["csv_mb"] = round((run_dir / "trials.csv").stat().st_size / 2**20, 2) \
        if (run_dir / "trials.csv").is_file() else None
    return result


def measure_resume(run_dir: Path) -> dict[str, Any]:
    """Two more evaluated trials on a copy of the study (the original stays as written)."""
    copy = run_dir.parent / f"{run_dir.name}-resume" / STUDY
    if copy.parent.exists():
        shutil.rmtree(copy.parent)
    shutil.copytree(run_dir, copy)
    before = _evaluated_count(copy / "study.db")
    with sqlite3.connect(copy / "study.db") as connection:
        total = connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "nas", "search",
               "--target-flops", "400M", "--runs", str(copy.parent), "--study", STUDY,
               "--n-trials", str(before + 2), "--quiet", "--seed", "1", "--references", "none",
               *[f"--{key.replace('_', '-')}={value}" for key, value in PROXY.items()]]
    result = _run_timed(command, limit=RESUME_LIMIT_S)
    with sqlite3.connect(copy / "study.db") as connection:
        new, screened = connection.execute(
            "SELECT COUNT(*), COUNT(a.trial_id) FROM trials t LEFT JOIN trial_user_attributes a "
            "ON a.trial_id = t.trial_id AND a.key = 'screened' WHERE t.number >= ?",
            (total,)).fetchone()
    result.update(evaluated_before=before, evaluated_after=_evaluated_count(copy / "study.db"),
                  new_trials=new, new_screened=screened)
    shutil.rmtree(copy.parent)
    return result


def _evaluated_count(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]


# The page and its request take seconds, so a moment of load elsewhere on a shared machine
# moves them by half: --repeat N keeps the run with the median time, and all the times.
REPEATED = {"request": "cold_s", "browser": "seconds"}


def _median_of(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    if len(runs) == 1:
        return runs[0]
    key = REPEATED[name]
    ordered = sorted(runs, key=lambda run: math.inf if run.get(key) is None else run[key])
    return {**ordered[len(ordered) // 2], "runs_s": [run.get(key) for run in runs]}


MEASURE: dict[str, Callable[[Path], dict[str, Any]]] = {
    "request": measure_request, "browser": measure_browser, "report": measure_report,
    "outputs": measure_outputs, "resume": measure_resume}


# -- main ---------------------------------------------------------------------------------------


def _record(path: Path, keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    """Set ``results[keys[0]][keys[1]]...`` in the results file and return the file's
    content: read, changed and written under a lock, so that runs of other sizes or labels
    going on at the same time keep their entries."""
    import fcntl

    from nas.common import atomic_write_json

    with open(Path(tempfile.gettempdir()) / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.is_file() else {}
        node = results
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        atomic_write_json(path, results)
    return results


def table(results: dict[str, Any]) -> str:
    """The figures as a markdown table, before -> after per study size."""

    def cell(label: str, size: str, measure: str, render: Callable[[dict], str]) -> str:
        figures = results.get(label, {}).get(size, {}).get(measure)
        if figures is None:
            return "not measured"
        if figures.get("seconds", 0) is None and measure != "request":
            return f"gave up after {figures.get('gave_up_after_s') or figures.get('timed_out_after_s')} s"
        return render(figures)

    rows = {
        "dashboard study request, cold / repeated": ("request", lambda f: (
            f"{f['cold_s']} s / {f['repeated_s']} s, {f['mb']} MB, {f['trials_served']:,} trials")),
        "dashboard server peak memory": ("request", lambda f: f"{f['server_peak_mb']:,.0f} MB"),
        "study page drawn in Chromium": ("browser", lambda f: f"{f['seconds']} s"),
        "`nas report`": ("report", lambda f: f"{f['seconds']} s, {f['peak_mb']:,.0f} MB"),
        "trials.csv and best.json (`write_outputs`)": ("outputs", lambda f: (
            f"{f['write_outputs_s']} s, {f['peak_mb']:,.0f} MB")),
        "resume: `nas search` for 2 more evaluated trials": ("resume", lambda f: (
            f"{f['seconds']} s, {f['peak_mb']:,.0f} MB")),
    }
    sizes = [size for size in map(str, SIZES) if size in results.get("studies", {})]
    lines = ["| trials | " + " | ".join(f"{int(size):,}" for size in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for name, (measure, render) in rows.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{cell('before', size, measure, render)} -> {cell('after', size, measure, render)}"
            for size in sizes) + " |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--only", nargs="+", choices=MEASURES, default=list(MEASURES))
    parser.add_argument("--label", help="before / after: where the figures go")
    parser.add_argument("--work", default="/tmp/nas-bench-dashboard",
                        help="where the studies are written (kept between runs)")
    parser.add_argument("--code", default=str(REPO), help="folder whose nas/ the measured "
                        "processes import (e.g. `git archive` of the commit before a change)")
    parser.add_argument("--results", default=str(RESULTS), help="the results file")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the request and the "
                        "page measurements; the median is kept (default 1)")
    parser.add_argument("--again", action="store_true", help="redo measurements already recorded")
    parser.add_argument("--table", action="store_true",
                        help="print the recorded figures as a markdown table and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.results).read_text())))
        return 0
    if not args.label:
        parser.error("--label is needed to record figures (before, after)")
    CODE[0] = Path(args.code).resolve()
    results_path = Path(args.results)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
               f"optuna {optuna.__version__}")
    results = _record(results_path, ("machine",), machine)
    for size in args.sizes:
        run_dir = Path(args.work) / str(size) / STUDY
        if str(size) not in results.get("studies", {}) or not (run_dir / "study.db").is_file():
            built = build_study(run_dir, size)
            results = _record(results_path, ("studies", str(size)), built)
            print(f"{size}: built {built}", flush=True)
        for name in args.only:
            if name in results.get(args.label, {}).get(str(size), {}) and not args.again:
                continue
            print(f"{size}: {name} ...", flush=True)
            figures = _median_of(name, [MEASURE[name](run_dir) for _ in range(
                args.repeat if name in REPEATED else 1)])
            figures["load_1min"] = round(os.getloadavg()[0], 1)  # other jobs on the machine
            print(f"{size}: {name} {figures}", flush=True)
            results = _record(results_path, (args.label, str(size), name), figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
