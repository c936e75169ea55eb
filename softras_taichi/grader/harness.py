"""The notebook side of grading: runs inside the sandbox, one process per notebook.

    python -m softras_taichi.grader.harness      (started by the grader, never by hand)

It reads requests on stdin and answers on the original stdout (see `channel`): run this
cell's source in an IPython shell, define the hidden checks, run check X (as the
reference, with a seed; or as the student, with the reference's inputs).  Everything the
notebook prints goes to stderr, which the grader captures (capped).  Nothing here is
trusted: the grader only takes data from this process, and compares it itself.
"""
import os
import signal
import sys


def _redirect():
    """Keep the channel on private descriptors; the notebook's prints go to stderr."""
    req, rep = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    return req, rep


def _on_alarm(signum, frame):
    raise KeyboardInterrupt("the cell ran past its time limit")


def _error_text(result):
    err = result.error_before_exec or result.error_in_exec
    if err is None:
        return None
    return f"{type(err).__name__}: {err}"[:400]


def _copy_seed_cache():
    """Start from the grader's kernel cache (compiled by the reference run, read-only here)."""
    import shutil

    seed = os.environ.get("SOFTRAS_GRADER_SEED_CACHE")
    if seed and os.path.isdir(seed):
        dest = os.path.join(os.path.expanduser("~"), ".cache")
        try:
            shutil.copytree(seed, dest, dirs_exist_ok=True)
        except OSError:
            pass  # a cold cache only costs time


def serve():
    req, rep = _redirect()
    os.environ.setdefault("MPLBACKEND", "Agg")
    from IPython.core.interactiveshell import InteractiveShell

    from . import channel, hidden

    hidden._defining[0] = True
    _copy_seed_cache()
    shell = InteractiveShell.instance()
    signal.signal(signal.SIGALRM, _on_alarm)
    channel.send(rep, {"op": "ready", "python": sys.version.split()[0]})
    while True:
        try:
            msg, payload = channel.recv(req)
        except channel.ChannelError:
            return 0
        op = msg.get("op")
        if op == "quit":
            return 0
        if op in ("cell", "define"):
            signal.setitimer(signal.ITIMER_REAL, float(msg.get("timeout") or 0))
            try:
                result = shell.run_cell(str(msg.get("source", "")), store_history=op == "cell")
                error = _error_text(result)
            except BaseException as exc:  # noqa: BLE001 - a stray interrupt between statements
                error = f"{type(exc).__name__}: {exc}"[:400]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout.flush()
            sys.stderr.flush()
            channel.send(rep, {"op": op, "error": error})
        elif op == "check":
            try:
                inputs = channel.unpack_arrays(payload)
            except channel.ChannelError as exc:
                channel.send(rep, {"op": "check", "parts": [], "inputs": [], "error": str(exc), "seconds": 0})
                continue
            header, arrays = hidden.run_check(str(msg.get("name")), msg.get("role", hidden.STUDENT),
                                              seed=msg.get("seed"), inputs=inputs, timeout=msg.get("timeout"))
            sys.stdout.flush()
            sys.stderr.flush()
            header["op"] = "check"
            channel.send(rep, header, channel.pack_arrays(arrays))
        else:
            channel.send(rep, {"op": "error", "error": f"unknown request {op!r}"})


if __name__ == "__main__":
    sys.exit(serve())
