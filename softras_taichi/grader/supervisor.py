"""Run one notebook in its sandbox: its cells, then its graded checks, within limits.

The supervisor (trusted) starts the harness in the sandbox, sends each cell's source, then
the hidden checks, then asks for each check by name, and keeps what comes back as data.
A cell past its time limit is interrupted; if the process does not answer (a Taichi
kernel in an endless loop ignores interrupts), ignores signals, dies, kills its parent,
floods its output or grows past the memory limit, the whole process tree is killed and
the notebook is run again in a fresh sandbox without that cell (at most MAX_RESTARTS
times), so it keeps every check it can still earn.  Past the notebook's wall time it
stops for good, keeping the checks already answered.
"""
import os
import signal
import threading
import time

from . import channel

MAX_RESTARTS = 3
START_TIMEOUT = 60.0      # seconds for a fresh sandbox to say "ready"
GRACE = 5.0               # seconds past a cell's own alarm before the tree is killed
WATCH_PERIOD = 0.2        # seconds between two looks at the tree's memory


class Gone(Exception):
    """The notebook's process is gone (killed or dead); `reason` says why."""

    def __init__(self, reason, fatal=False):
        super().__init__(reason)
        self.reason, self.fatal = reason, fatal


class Output:
    """The notebook's captured output: the first `cap` bytes, and a count of the rest."""

    def __init__(self, cap):
        self.cap, self.kept, self.dropped = int(cap), [], 0
        self.size = 0
        self.lock = threading.Lock()

    def feed(self, data):
        with self.lock:
            room = self.cap - self.size
            if room > 0:
                self.kept.append(data[:room])
                self.size += min(room, len(data))
            self.dropped += max(0, len(data) - max(room, 0))

    def text(self):
        return b"".join(self.kept).decode("utf-8", "replace")


def _tree(root):
    """pids of `root` and all its descendants (from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _memory(pids):
    """Bytes the processes use: their proportional set size (shared pages split between
    the processes sharing them, so a fork does not count twice), else their RSS."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total


class Process:
    """One sandboxed harness process, its output reader and its memory watchdog."""

    def __init__(self, sandbox, notebook_bytes, limits, output, env=None, seed_cache=None, write_cache=None):
        self.limits, self.output = limits, output
        self.proc, self._cleanup = sandbox.start(notebook_bytes, limits, env or {}, seed_cache, write_cache)
        self.killed = None            # why we killed it
        self.peak = 0
        self._stop = threading.Event()
        threading.Thread(target=self._read_output, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _read_output(self):
        fd = self.proc.stderr.fileno()
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                return
            if not data:
                return
            self.output.feed(data)

    def _watch(self):
        limit = self.limits.memory_gb * (1 << 30)
        while not self._stop.wait(WATCH_PERIOD):
            if self.proc.poll() is not None:
                return
            rss = _memory(_tree(self.proc.pid))
            self.peak = max(self.peak, rss)
            if rss > limit:
                self.kill(f"it used more than {self.limits.memory_gb:g} GiB of memory")
                return

    def kill(self, reason):
        if self.killed is None:
            self.killed = reason
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)   # the sandbox's init goes, and its namespace with it
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except OSError:
            pass

    def request(self, header, payload=b"", timeout=60.0):
        """Send a request, wait up to `timeout` s for the answer; Gone if there is none."""
        timer = threading.Timer(max(0.1, timeout), self.kill, args=(f"did not finish within {timeout:.0f} s",))
        timer.daemon = True
        timer.start()
        try:
            if header is not None:
                channel.send(self.proc.stdin.fileno(), header, payload)
            return channel.recv(self.proc.stdout.fileno())
        except (channel.ChannelError, OSError) as exc:
            self.kill("its process stopped")
            self.proc.wait()
            if self.killed and self.killed != "its process stopped":
                raise Gone(self.killed) from None
            code = self.proc.returncode
            why = "its process died" + (f" (exit status {code})" if code not in (None, -9) else "")
            cgroup = getattr(self.proc, "cgroup", None)
            if cgroup is not None and cgroup.oom_killed():
                why = f"it used more than {self.limits.memory_gb:g} GiB of memory"
            if isinstance(exc, channel.ChannelError) and "closed" not in str(exc):
                why = f"its process sent something that is not a grader message ({exc})"
            raise Gone(why) from None
        finally:
            timer.cancel()

    def close(self):
        self._stop.set()
        try:
            channel.send(self.proc.stdin.fileno(), {"op": "quit"})
        except (channel.ChannelError, OSError):
            pass
        try:
            self.proc.wait(timeout=2)
        except Exception:  # noqa: BLE001
            pass
        self.kill("closed")
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        self._cleanup()


def run_notebook(sandbox, notebook_bytes, cells, hidden, checks, limits, request_for, env=None,
                 seed_cache=None, write_cache=None, on_result=None):
    """Run `cells` ([(index, source)]), define `hidden` ([source]), then each check of
    `checks` (names): `request_for(name)` gives the (header, payload) to send, or None to
    skip it.  Returns {"results": {name: (header, arrays) | reason}, "cell_errors",
    "skipped" (cells left out, with why), "notes", "output" (Output), "seconds", "peak"}."""
    output = Output(limits.output_mb * (1 << 20))
    start = time.monotonic()
    deadline = start + limits.notebook_s
    results, cell_errors, skipped, notes = {}, {}, {}, []
    pending = list(checks)
    peak = 0

    def left():
        return deadline - time.monotonic()

    for attempt in range(MAX_RESTARTS + 1):
        if left() <= 1:
            break
        where = None
        proc = Process(sandbox, notebook_bytes, limits, output, env, seed_cache, write_cache)
        try:
            hello, _ = proc.request(None, timeout=min(START_TIMEOUT, left()))
            if hello.get("op") != "ready":
                raise Gone("its process did not start the grader's harness")
            for index, source in cells:
                if index in skipped:
                    continue
                where = ("cell", index)
                budget = min(limits.cell_s, left())
                if budget <= 1:
                    raise Gone(f"the notebook ran past its {limits.notebook_s:g} s limit", fatal=True)
                reply, _ = proc.request({"op": "cell", "source": source, "timeout": budget},
                                        timeout=min(budget + GRACE, left() + 1))
                if reply.get("error"):
                    cell_errors[index] = str(reply["error"])[:400]
            where = ("define", None)
            reply, _ = proc.request({"op": "define", "source": "\n\n".join(hidden), "timeout": limits.cell_s},
                                    timeout=min(limits.cell_s + GRACE, max(left(), 1)))
            if reply.get("error"):
                notes.append(f"the graded checks could not be defined: {str(reply['error'])[:300]}")
            while pending:
                name = pending[0]
                req = request_for(name)
                if req is None:
                    pending.pop(0)
                    continue
                where = ("check", name)
                budget = min(limits.check_s, left())
                if budget <= 1:
                    raise Gone(f"the notebook ran past its {limits.notebook_s:g} s limit", fatal=True)
                header, payload = req
                header = dict(header, timeout=budget)
                reply, data = proc.request(header, payload, timeout=min(budget + GRACE, left() + 1))
                try:
                    arrays = channel.unpack_arrays(data)
                except channel.ChannelError as exc:
                    reply, arrays = {"parts": [], "error": f"its answer was not data ({exc})"}, {}
                results[name] = (reply, arrays)
                if on_result:
                    on_result(name, results[name])
                pending.pop(0)
            break
        except Gone as gone:
            reason = gone.reason
            if left() <= 1 or gone.fatal:
                reason = f"the notebook ran past its {limits.notebook_s:g} s limit"
            if where and where[0] == "cell":
                skipped[where[1]] = reason
            elif where and where[0] == "check":
                results[where[1]] = f"the check stopped the notebook's process: {reason}"
                pending.pop(0)
            elif where and where[0] == "define":
                notes.append(f"defining the graded checks stopped the notebook's process: {reason}")
                break
            else:
                notes.append(f"the sandbox did not start: {reason}")
                break
            if left() <= 1 or gone.fatal:
                break
        finally:
            peak = max(peak, proc.peak)
            proc.close()
    else:
        notes.append(f"the notebook's process had to be restarted {MAX_RESTARTS} times; what was left was not run")
    for name in pending:
        if name not in results:
            results[name] = ("the notebook ran past its time limit before this check"
                             if left() <= 1 else "the check did not run")
    if output.dropped:
        notes.append(f"the notebook printed more than {limits.output_mb:g} MB; "
                     f"{output.dropped} bytes of output were dropped")
    return {"results": results, "cell_errors": cell_errors, "skipped": skipped, "notes": notes,
            "output": output, "seconds": time.monotonic() - start, "peak": peak}
