"""Stage 2 on several processes: ``zoo run --processes N`` and ``accelerate launch -m zoo run ...``.

Both end in :func:`zoo.runner.stage2.train_job` on every process, under Accelerate: gloo on CPU
(or one GPU per process when there are at least N), each process holding the whole model and taking
its slice of every global batch (``split_batches``), gradients all-reduced by DDP. Stage 1 and the
run folder stay with one process (the caller, or rank 0), so features are extracted once and only one
process writes.

* ``--processes N`` (:func:`launch`): the calling process runs stage 1, then starts N workers the
  way ``accelerate launch --num_processes N --cpu`` does: fresh interpreters
  (``python -m zoo.runner.distributed JOBDIR``) with ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/
  ``MASTER_ADDR``/``MASTER_PORT`` set. Not ``fork`` (a process that already ran OpenMP/oneDNN
  kernels during feature extraction can deadlock its forked children's thread pools) and not
  multiprocessing's ``spawn`` (it re-runs the caller's ``__main__`` script, so a script without a
  ``__main__`` guard would start the whole run again in every worker). Rank 0 writes each epoch's
  history and then the result into the job folder; the caller writes ``metrics.jsonl`` from it. A
  failed worker stops the others.
* ``accelerate launch`` (:func:`serve`, :func:`share`, :func:`release`): every rank starts ``zoo run``;
  rank 0 runs the pipeline, the others wait until stage 2, receive the job (``broadcast_object_list``)
  and train; when there is no stage 2 (or rank 0 fails first) rank 0 releases them.

The backbone travels pickled (its current weights, byte for byte); a backbone that does not pickle
is loaded again by id on each worker.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

WAIT = timedelta(hours=4)  # how long waiting ranks give rank 0 for stage 1 (feature extraction) under accelerate launch
_shared = False


def launched() -> bool:
    """True in a process started by ``accelerate launch`` / ``torchrun`` with more than one process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return False
    return world > 1 and ("RANK" in os.environ or "LOCAL_RANK" in os.environ)


def rank() -> int:
    """This process's global rank (0 when not launched)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def _state() -> Any:
    from accelerate import PartialState

    from zoo.runner.stage2 import _cpu_only

    return PartialState(cpu=_cpu_only(int(os.environ.get("WORLD_SIZE", "1"))), timeout=WAIT)


def _pack(backbone: Any) -> bytes | None:
    try:
        return pickle.dumps(backbone, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any unpicklable member: the workers load the backbone by id instead
        return None


def _unpack(blob: bytes | None, plan: Any) -> Any:
    if blob is not None:
        return pickle.loads(blob)  # noqa: S301 - bytes this run pickled itself, a moment ago
    import zoo

    return zoo.load(plan.backbone)


def share(backbone: Any, job: dict[str, Any]) -> None:
    """Rank 0 under ``accelerate launch``: hand the stage-2 job to the ranks waiting in :func:`serve`."""
    import torch.distributed as dist

    global _shared
    _state()
    dist.broadcast_object_list([{"backbone": _pack(backbone), "job": job}], src=0)
    _shared = True


def release() -> None:
    """Rank 0 under ``accelerate launch``: tell waiting ranks there is no stage 2 (call once the run ended)."""
    global _shared
    if _shared or not launched():  # before importing torch: a Ctrl-C that stopped torch's own import ends here
        return
    import torch.distributed as dist  # only under a launcher: a Keras run may have no torch

    _state()
    dist.broadcast_object_list([None], src=0)
    _shared = True


def serve() -> int:
    """Ranks > 0 under ``accelerate launch``: wait for rank 0's stage-2 job, train on it, return an exit code.

    Errors are reported by rank 0 (every process reaches the same verdict); a worker only exits 1.
    """
    import torch.distributed as dist

    from zoo.errors import ZooError
    from zoo.runner.stage2 import train_job

    _state()
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    msg = box[0]
    if msg is None:
        return 0
    job = dict(msg["job"], progress=False)
    try:
        train_job(_unpack(msg["backbone"], job["plan"]), **job)
    except ZooError:
        return 1
    finally:
        _finish()
    return 0


def _finish() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send(folder: Path, seq: int, kind: str, value: Any) -> None:
    tmp = folder / f".msg-{seq:06d}.tmp"
    tmp.write_bytes(pickle.dumps((kind, value)))
    os.replace(tmp, folder / f"msg-{seq:06d}.pkl")


def _exit_with_parent(parent: int, box: Path) -> None:
    """Stop this worker (and remove the job folder) once process ``parent`` is gone: a launching ``zoo run`` killed
    with SIGKILL or SIGTERM runs no cleanup, and its workers went on training, writing checkpoints into the run folder
    that a ``--resume`` was then writing too."""
    import threading

    first = os.getppid()

    def alive() -> bool:
        if os.getppid() != first:  # orphaned: the parent exited
            return False
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return False
        except OSError:  # exists, another user's: not ours to judge
            pass
        return True

    def watch() -> None:
        while alive():
            time.sleep(0.2)
        shutil.rmtree(box, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, name="zoo-parent-watch", daemon=True).start()


def _worker(folder: str) -> int:
    """One of N processes started by :func:`launch` (``python -m zoo.runner.distributed JOBDIR``; ``RANK`` in the env)."""
    from zoo.runner.stage2 import train_job

    box = Path(folder)
    _exit_with_parent(int(os.environ.get("ZOO_LAUNCHER_PID") or os.getppid()), box)
    payload = pickle.loads((box / "job.pkl").read_bytes())  # noqa: S301 - written by the launching process
    main = rank() == 0
    job = dict(payload["job"], progress=payload["job"]["progress"] and main)
    seq = [0]

    def send(kind: str, value: Any) -> None:
        seq[0] += 1
        _send(box, seq[0], kind, value)

    try:
        result = train_job(_unpack(payload["backbone"], job["plan"]), log=(lambda h: send("log", h)) if main else None, **job)
    except Exception as exc:  # noqa: BLE001 - rank 0 hands its error to the caller, which raises it
        if not main:
            raise
        try:
            pickle.loads(pickle.dumps(exc))
            send("error", exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            send("error", RuntimeError("".join(traceback.format_exception_only(type(exc), exc)).strip()))
        return 1
    finally:
        _finish()
    if main:
        send("result", result)
    return 0


def launch(backbone: Any, job: dict[str, Any], processes: int, *, log: Any = None) -> Any:
    """Run the stage-2 ``job`` on ``processes`` fresh worker processes and return rank 0's ``Stage2Result``.

    Workers are new interpreters (``python -m zoo.runner.distributed``) with the environment
    ``accelerate launch`` gives its processes (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``PORT``, ``ACCELERATE_USE_CPU``): nothing is forked from a process that already
    ran OpenMP kernels, and the caller's script is not re-imported (no ``__main__`` guard needed, as
    multiprocessing's spawn would). CPU workers get ``OMP_NUM_THREADS = cores // processes`` unless
    set. The first worker to fail stops the others.

    Raises:
        the error rank 0 raised (``DivergedError``, ``CheckpointError``, ...);
        RuntimeError: a worker died without one (its traceback is on stderr).
    """
    import zoo
    from zoo.runner.stage2 import _cpu_only

    cpu = _cpu_only(processes)
    box = Path(tempfile.mkdtemp(prefix="zoo-run-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        (box / "job.pkl").write_bytes(pickle.dumps({"backbone": _pack(backbone), "job": job}, protocol=pickle.HIGHEST_PROTOCOL))
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(processes), LOCAL_WORLD_SIZE=str(processes),
                   ZOO_LAUNCHER_PID=str(os.getpid()))
        src = str(Path(zoo.__file__).resolve().parents[1])  # the zoo the caller imported, installed or not
        env["PYTHONPATH"] = os.pathsep.join([src, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        if cpu:
            env["ACCELERATE_USE_CPU"] = "true"
            if not env.get("OMP_NUM_THREADS"):
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
        for r in range(processes):
            procs.append(subprocess.Popen([sys.executable, "-m", "zoo.runner.distributed", str(box)], env=dict(env, RANK=str(r), LOCAL_RANK=str(r))))
        result: Any = None
        error: BaseException | None = None
        seen: set[str] = set()

        def drain() -> None:
            nonlocal result, error
            for f in sorted(box.glob("msg-*.pkl")):
                if f.name in seen:
                    continue
                seen.add(f.name)
                kind, value = pickle.loads(f.read_bytes())  # noqa: S301 - our own workers' messages
                if kind == "log" and log is not None:
                    log(value)
                elif kind == "result":
                    result = value
                elif kind == "error":
                    error = value

        failed: list[tuple[int, int]] = []
        while True:
            drain()
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed or all(c == 0 for c in codes):
                break
            time.sleep(0.1)
        if failed:
            deadline = time.monotonic() + 5  # rank 0 may still be reporting why
            while procs[0].poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        drain()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(box, ignore_errors=True)
    if error is not None:
        raise error
    if failed:
        r, c = failed[0]
        raise RuntimeError(f"stage-2 worker {r} of {processes} exited with code {c} (its traceback is above); rerun with --resume to continue from the last checkpoint.")
    if result is None:
        raise RuntimeError("the stage-2 workers ended without a result")
    return result


__all__ = ["launch", "launched", "rank", "release", "serve", "share"]

if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
