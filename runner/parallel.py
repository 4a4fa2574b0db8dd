"""``gradcase run -j N``: cases run in N worker processes, the report as a serial run's.

Each worker is a spawned process that imports torch once, loads the same paths and rules as the
parent, and runs the cases it is sent by name, in chunks, sending each result back as it is done.
The parent keeps, per worker, the chunk it holds, so:

- results are put back in the serial run's order (and given to ``on_result`` in that order);
- a worker that dies (a segfault in torch, the OOM killer) turns the case it was running into an
  error result and the rest of its chunk goes back in the queue for a fresh worker: no hang;
- Ctrl-C (SIGINT reaches the whole process group; the workers ignore it) stops the parent, which
  terminates its workers before `KeyboardInterrupt` goes on.

Nothing here imports torch; the workers do, when they run a case.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from schemas.report import CaseResult

STOPPING = ("failed", "error", "xpassed")
Meta = tuple[str, str, int]  # a case's name, file and line
# (the result, -v's lines or None, the --html page's view of the case or None)
OnResult = Callable[[CaseResult, list[str] | None, Any], None]


class WorkerError(Exception):
    """A worker could not start (its rules or cases failed to load)."""


class Interrupted(Exception):
    """Ctrl-C stopped the run: ``on_result`` has had the cases finished, in the serial order."""


@dataclass(frozen=True)
class Setup:
    """What a worker needs to rebuild the parent's run: the command line's paths, ``--rules``
    specs, ``--oracle`` names, the device, and whether to render ``-v``'s side-by-side view."""

    paths: tuple[str, ...]
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
    try:
        os.chdir(setup.cwd)
        from runner.cli import oracles_for, rule_sets_for
        from runner.execute import run_case
        from runner.formats.html import case_view
        from runner.loader import load
        from runner.rules.modules import module_ops
        from runner.show import render

        rule_sets = rule_sets_for(setup.rules)
        oracles = oracles_for(setup.oracles, setup.device)
        cases = {c.name: c for c in load(list(setup.paths), module_ops(rule_sets)).cases}
    except Exception as exc:  # reported by the parent as a usage error
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    while (chunk := conn.recv()) is not None:
        for index, name in chunk:
            result, sources = run_case(
                cases[name],
                rule_sets,
                oracles,
                timeout=setup.timeout,
                max_memory=setup.max_memory,
            )
            lines = render(result, sources) if setup.verbose else None
            view = case_view(result, sources) if setup.html else None
            conn.send(("result", index, result.model_dump_json(), lines, view))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    pending: deque[tuple[int, str]] = field(default_factory=deque)
    ready: bool = False


def run_parallel(
    cases: Sequence[Meta],
    setup: Setup,
    jobs: int,
    on_result: OnResult | None = None,
    exitfirst: bool = False,
) -> int:
    """Run ``cases`` (name, file, line; names as `runner.loader.load` gives them for
    ``setup.paths``) in ``jobs`` worker processes, handing each result to ``on_result`` in the
    given order (with ``exitfirst``: up to the first that fails the run, as a serial ``-x``
    run); return how many were handed on. Nothing is kept once handed on: the caller keeps
    what it needs (`runner.report.Collector`).

    Raises `WorkerError` when a worker cannot load the cases or rules."""
    context = multiprocessing.get_context("spawn")
    # Each worker keeps torch's default number of threads, as a serial run has: with fewer,
    # torch's CPU reductions add in another order and the last bits of a report would differ.
    # Small chunks: few messages per worker, yet the last ones still spread over all workers.
    size = max(1, min(8, len(cases) // (jobs * 4)))
    queue: deque[list[tuple[int, str]]] = deque(
        [(i, cases[i][0]) for i in range(start, min(start + size, len(cases)))]
        for start in range(0, len(cases), size)
    )
    results: dict[int, CaseResult] = {}  # finished, not yet handed on
    emitted = 0
    workers: list[_Worker] = []

    def start() -> None:
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(child, setup), daemon=True)
        process.start()
        child.close()
        worker = _Worker(process, parent)
        workers.append(worker)
        feed(worker)

    def feed(worker: _Worker) -> None:
        if queue:
            chunk = queue.popleft()
            worker.pending.extend(chunk)
            worker.conn.send(chunk)
        else:
            worker.conn.send(None)

    def receive(worker: _Worker) -> None:
        while worker.conn.poll():
            message = worker.conn.recv()
            if message[0] == "fatal":
                raise WorkerError(f"a worker process could not start: {message[1]}")
            if message[0] == "ready":
                worker.ready = True
                continue
            _, index, data, lines, view = message
            worker.pending.popleft()
            result = CaseResult.model_validate_json(data)
            results[index] = result
            pending_lines[index] = lines
            pending_views[index] = view
            if not worker.pending:
                feed(worker)

    def died(worker: _Worker) -> None:
        workers.remove(worker)
        worker.conn.close()
        if not worker.pending:
            return
        if not worker.ready:
            raise WorkerError(
                f"a worker process exited while starting (exit code {worker.process.exitcode})"
            )
        index, _ = worker.pending.popleft()
        name, file, line = cases[index]
        results[index] = CaseResult(
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
        pending_lines[index] = None
        if worker.pending:
            queue.appendleft(list(worker.pending))
        if queue:
            start()

    pending_lines: dict[int, list[str] | None] = {}
    pending_views: dict[int, Any] = {}
    try:
        for _ in range(min(jobs, len(queue))):
            start()
        while True:
            # Hand results on in the serial order as soon as the next one is in.
            while emitted in results:
                result = results.pop(emitted)
                if on_result is not None:
                    lines, view = pending_lines.pop(emitted, None), pending_views.pop(emitted, None)
                    on_result(result, lines, view)
                emitted += 1
                if exitfirst and result.status in STOPPING:
                    return emitted
            if emitted == len(cases):
                break
            if not workers:  # every case not yet in results is back in the queue
                start()
            ready = wait([w.conn for w in workers] + [w.process.sentinel for w in workers])
            for w in list(workers):
                if w.conn not in ready and w.process.sentinel not in ready:
                    continue
                try:
                    receive(w)
                    gone = not w.process.is_alive()
                    if gone:
                        receive(w)  # what it sent before it went
                except (EOFError, OSError):
                    gone = True  # the pipe closed: the process is gone or going
                if gone:
                    w.process.join()
                    died(w)
        return emitted
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    finally:
        for w in workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
            w.conn.close()


def _exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
