"""``gradcase run -j N``: cases run in N worker processes, the report as a serial run's.

Each worker is a spawned process that loads the same rules as the parent and imports torch once;
the parent starts them (`Pool`) before it loads the cases, so their start-up overlaps its load.
Each is then sent chunks of cases, each case as the parent compiled it (pickled, the catalogue's
ops by name: `pack`), or, for a case that cannot be pickled (its own `rules:`, compiled to
closures; an op of a RULES module), by name with its file, which the worker loads; it runs the
cases and sends each result back as it is done. The parent keeps, per worker, the chunk it
holds, so:

- results are put back in the serial run's order (and given to ``on_result`` in that order);
- a worker that dies (a segfault in torch, the OOM killer) turns the case it was running into an
  error result and the rest of its chunk goes back in the queue for a fresh worker: no hang;
- Ctrl-C (SIGINT reaches the whole process group; the workers ignore it) stops the parent, which
  terminates its workers before `KeyboardInterrupt` goes on.

Nothing here imports torch; the workers do, when they run a case.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from schemas.report import CaseResult

STOPPING = ("failed", "error", "xpassed")
# A case file as the worker loads it: the path as the parent found it, the folder its case names
# are relative to, and the path resolved (`runner.loader.Found`, as strings).
Source = tuple[str, str, str]
# A case's name, file (as reports show it), line, source, and the case pickled (`pack`) or None.
Meta = tuple[str, str, int, Source, bytes | None]
Job = tuple[int, str, Source, bytes | None]  # a case's index in the run, name, source, pickle
# (the result, -v's lines or None, the --html page's view of the case or None)
OnResult = Callable[[CaseResult, list[str] | None, Any], None]


class WorkerError(Exception):
    """A worker could not start (its rules or cases failed to load)."""


class Interrupted(Exception):
    """Ctrl-C stopped the run: ``on_result`` has had the cases finished, in the serial order."""


@dataclass(frozen=True)
class Setup:
    """What a worker needs to rebuild the parent's run: ``--rules`` specs, ``--oracle`` names,
    the device, and whether to render ``-v``'s side-by-side view."""

    rules: tuple[str, ...] | None
    oracles: tuple[str, ...] | None
    device: str = "cpu"
    verbose: bool = False
    cwd: str = field(default_factory=os.getcwd)
    # Whether to build each case's view for --html (its arrays exist only in the worker).
    html: bool = False
    timeout: float | None = None  # seconds per case (`runner.execute.run_case`)
    max_memory: int | None = None  # bytes per case


def _worker(conn: Connection, setup: Setup) -> None:
    """A worker's life: set up once, then run the chunks it is sent until it is sent None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from runner import collector

    collector.FREEZE = True  # a worker is gradcase's own process
    try:
        os.chdir(setup.cwd)
        from runner.cli import oracles_for, rule_sets_for
        from runner.execute import run_case
        from runner.formats.html import case_view
        from runner.rules.modules import module_ops
        from runner.show import render

        rule_sets = rule_sets_for(setup.rules)
        oracles = oracles_for(setup.oracles, setup.device)
        ops = module_ops(rule_sets)
        if any(o.name == "torch" for o in oracles):
            import runner.torch_side  # noqa: F401  (torch's import, while the parent loads)
    except Exception as exc:  # reported by the parent as a usage error
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    files: dict[Source, dict[str, Any]] = {}
    while (chunk := conn.recv()) is not None:
        # Only the files of this chunk stay loaded: a worker's memory does not grow with the run.
        wanted = {source for _, _, source, packed in chunk if packed is None}
        files = {k: v for k, v in files.items() if k in wanted}
        for index, name, source, packed in chunk:
            if packed is not None:
                case = pickle.loads(packed)
            else:
                if source not in files:
                    files[source] = _load(source, ops)
                case = files[source][name]
            result, sources = run_case(
                case,
                rule_sets,
                oracles,
                timeout=setup.timeout,
                max_memory=setup.max_memory,
            )
            lines = render(result, sources) if setup.verbose else None
            view = case_view(result, sources) if setup.html else None
            conn.send(("result", index, result.model_dump_json(), lines, view))


class _Pickler(pickle.Pickler):
    """Pickles a compiled case with the catalogue's ops by name (their functions are lambdas)."""

    def reducer_override(self, obj: Any) -> Any:
        from runner.ops import REGISTRY
        from runner.ops.spec import Op

        if isinstance(obj, Op):
            if REGISTRY.get(obj.name) is not obj:
                raise pickle.PicklingError(f"op {obj.name} is not the catalogue's")
            return _catalogue_op, (obj.name,)
        return NotImplemented


def _catalogue_op(name: str) -> Any:
    from runner.ops import REGISTRY

    return REGISTRY[name]


def pack(case: Any) -> bytes | None:
    """A compiled case as a worker can rebuild it (about 0.1 ms against 0.5 ms to load its file
    again), or None when it holds what cannot be pickled (its own rules, compiled to closures; an
    op of a RULES module or of the case itself): the worker then loads its file."""
    out = io.BytesIO()
    try:
        _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(case)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    return out.getvalue()


def _load(source: Source, ops: Any) -> dict[str, Any]:
    """The cases of one file by name, as `runner.loader.load` names them (the first of a name)."""
    from pathlib import Path

    from runner.loader import _display, load_file

    file, root, resolved = (Path(p) for p in source)
    cases, _ = load_file(file, root, _display(file), ops, resolved)
    found: dict[str, Any] = {}
    for c in cases:
        found.setdefault(c.name, c)
    return found


class Pool:
    """``jobs`` worker processes for `run_parallel`, started at once (each imports torch and
    loads the rules while the caller loads its cases); `close` ends those still running.

    Raises nothing when a worker cannot set up: that shows when the run starts (`WorkerError`)."""

    def __init__(self, setup: Setup, jobs: int) -> None:
        self.setup = setup
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = [self.spawn() for _ in range(jobs)]

    def spawn(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(child, self.setup), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def close(self) -> None:
        for w in self.workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in self.workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
            w.conn.close()
        self.workers = []


@dataclass
class _Worker:
    process: Any
    conn: Connection
    pending: deque[Job] = field(default_factory=deque)
    ready: bool = False


def _job(index: int, meta: Meta) -> Job:
    name, _, _, source, packed = meta
    return index, name, source, packed


def run_parallel(
    cases: Sequence[Meta],
    setup: Setup,
    jobs: int,
    on_result: OnResult | None = None,
    exitfirst: bool = False,
    pool: Pool | None = None,
) -> int:
    """Run ``cases`` (name, file, line and source, as `runner.loader.load` gives them) in
    ``jobs`` worker processes (those of ``pool`` when given, which this closes), handing each
    result to ``on_result`` in the given order (with ``exitfirst``: up to the first that fails
    the run, as a serial ``-x`` run); return how many were handed on. Nothing is kept once
    handed on: the caller keeps what it needs (`runner.report.Collector`).

    Raises `WorkerError` when a worker cannot load the cases or rules, `Interrupted` on
    Ctrl-C."""
    # Each worker keeps torch's default number of threads, as a serial run has: with fewer,
    # torch's CPU reductions add in another order and the last bits of a report would differ.
    # Small chunks: few messages per worker, yet the last ones still spread over all workers.
    size = max(1, min(8, len(cases) // (jobs * 4)))
    queue: deque[list[Job]] = deque(
        [_job(i, cases[i]) for i in range(start, min(start + size, len(cases)))]
        for start in range(0, len(cases), size)
    )
    pool = pool if pool is not None else Pool(setup, min(jobs, len(queue)))
    run = _Run(cases, queue, pool, on_result)
    try:
        return run.until_done(exitfirst)
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    finally:
        pool.close()


class _Run:
    """One parallel run's state: the chunks not yet sent, the results not yet handed on (with
    their -v lines and --html views), and the workers of ``pool``."""

    def __init__(
        self,
        cases: Sequence[Meta],
        queue: deque[list[Job]],
        pool: Pool,
        on_result: OnResult | None,
    ) -> None:
        self.cases, self.queue, self.pool, self.on_result = cases, queue, pool, on_result
        self.workers = pool.workers
        self.results: dict[int, CaseResult] = {}  # finished, not yet handed on
        self.lines: dict[int, list[str] | None] = {}
        self.views: dict[int, Any] = {}
        self.emitted = 0

    def until_done(self, exitfirst: bool) -> int:
        """Feed the workers and hand results on in the serial order until every case is (or,
        with ``exitfirst``, one fails the run); how many were handed on."""
        for worker in list(self.workers):  # a worker with no chunk is sent None and ends
            self.feed(worker)
        while True:
            if self.hand_on(exitfirst):
                return self.emitted
            if self.emitted == len(self.cases):
                return self.emitted
            if not self.workers:  # every case not yet in results is back in the queue
                self.start()
            self.listen()

    def hand_on(self, exitfirst: bool) -> bool:
        """Hand on every result that is next in the serial order; True when ``exitfirst``
        stops the run."""
        while self.emitted in self.results:
            result = self.results.pop(self.emitted)
            if self.on_result is not None:
                lines = self.lines.pop(self.emitted, None)
                self.on_result(result, lines, self.views.pop(self.emitted, None))
            self.emitted += 1
            if exitfirst and result.status in STOPPING:
                return True
        return False

    def listen(self) -> None:
        """Wait for a message or a worker's exit, and take in what came."""
        workers = self.workers
        ready = wait([w.conn for w in workers] + [w.process.sentinel for w in workers])
        for w in list(workers):
            if w.conn not in ready and w.process.sentinel not in ready:
                continue
            try:
                self.receive(w)
                gone = not w.process.is_alive()
                if gone:
                    self.receive(w)  # what it sent before it went
            except (EOFError, OSError):
                gone = True  # the pipe closed: the process is gone or going
            if gone:
                w.process.join()
                self.died(w)

    def start(self) -> None:
        worker = self.pool.spawn()
        self.workers.append(worker)
        self.feed(worker)

    def feed(self, worker: _Worker) -> None:
        if self.queue:
            chunk = self.queue.popleft()
            worker.pending.extend(chunk)
            worker.conn.send(chunk)
        else:
            worker.conn.send(None)

    def receive(self, worker: _Worker) -> None:
        while worker.conn.poll():
            message = worker.conn.recv()
            if message[0] == "fatal":
                raise WorkerError(f"a worker process could not start: {message[1]}")
            if message[0] == "ready":
                worker.ready = True
                continue
            _, index, data, lines, view = message
            worker.pending.popleft()
            self.results[index] = CaseResult.model_validate_json(data)
            self.lines[index] = lines
            self.views[index] = view
            if not worker.pending:
                self.feed(worker)

    def died(self, worker: _Worker) -> None:
        """A worker that exited: its current case is an error that says so, the rest of its
        chunk goes back to the queue, and a fresh worker takes over when there is work."""
        self.workers.remove(worker)
        worker.conn.close()
        if not worker.pending:
            return
        if not worker.ready:
            raise WorkerError(
                f"a worker process exited while starting (exit code {worker.process.exitcode})"
            )
        index = worker.pending.popleft()[0]
        name, file, line = self.cases[index][:3]
        self.results[index] = CaseResult(
            name=name,
            file=file,
            line=line,
            status="error",
            duration=0.0,
            messages=[
                f"the worker process running this case died ({_exit(worker.process.exitcode)}); "
                "the case could not run: run it alone (gradcase show) to see why"
            ],
        )
        self.lines[index] = None
        if worker.pending:
            self.queue.appendleft(list(worker.pending))
        if self.queue:
            self.start()


def _exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
