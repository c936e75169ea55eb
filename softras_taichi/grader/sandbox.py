"""Where a notebook runs: a sandbox per notebook process, with limits.

Mechanisms, chosen by `--sandbox` (default `auto`: the first that works here):

* `bwrap` (bubblewrap; Linux laptops and servers, CI as root): new user, PID, network,
  IPC, UTS and mount namespaces; uid 65534; an empty root with read-only binds of just
  what Python and the package need (the package directory, never the repository that
  holds solutions/); a private tmpfs home (size-capped) that holds only the notebook;
  no network; `--die-with-parent` and a PID namespace, so every process of the notebook,
  daemons included, dies with it.
* `docker` (where a Docker engine runs, as otter-grader does): `--network none`,
  `--read-only`, memory and process limits, uid 65534, in an image that has
  softras-taichi installed (`--docker-image`).
* `unsafe`: no isolation at all, only rlimits and a temporary working directory; only
  with `--unsafe`, for a machine where nothing else exists and the notebooks are trusted.

Limits on every mechanism: memory (a cgroup per notebook where the grader can create one,
else a watchdog over the proportional resident memory of the notebook's whole process
tree; plus RLIMIT_AS per process), processes (the cgroup's pids.max, RLIMIT_NPROC), CPU
time, file size, open files; the wall time per cell and per notebook and the captured output are enforced
by the supervisor (`supervisor.py`).
"""
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import tempfile

SANDBOX_UID = 65534
HOME = "/home/student"
SEED_CACHE = "/opt/softras-grader/ticache"     # read-only view of the trusted kernel cache
MECHANISMS = ("auto", "bwrap", "docker", "unsafe")


class SandboxUnavailable(RuntimeError):
    """No isolation mechanism can run here (the message says what to install)."""


@dataclasses.dataclass
class Limits:
    """What one notebook may use.  Memory counts the whole process tree."""
    memory_gb: float = 4.0        # resident memory of the tree (and address space per process)
    notebook_s: float = 300.0     # wall time for the whole notebook: cells and checks
    cell_s: float = 120.0         # wall time per cell
    check_s: float = 60.0         # wall time per graded check
    processes: int = 512          # processes and threads
    file_mb: int = 256            # largest file, and the size of the private home
    output_mb: float = 10.0       # captured output kept; the rest is dropped (and reported)
    open_files: int = 1024

    def describe(self):
        return (f"memory {self.memory_gb:g} GiB, {self.notebook_s:g} s per notebook, {self.cell_s:g} s per "
                f"cell, {self.processes} processes, files {self.file_mb} MB, output {self.output_mb:g} MB")


class Cgroup:
    """A cgroup of its own for one notebook (pids.max, memory limit), where the grader may
    create one (root, or a delegated cgroup v2): the kernel then counts every process and
    byte of the notebook's tree, whatever uid the sandbox maps to.  v2 and v1 layouts."""

    ROOT = "/sys/fs/cgroup"

    def __init__(self, limits):
        self.dirs = []
        name = f"softras-grade-{os.getpid()}-{os.urandom(4).hex()}"
        mem = int(limits.memory_gb * (1 << 30))
        if os.path.exists(os.path.join(self.ROOT, "cgroup.controllers")):         # v2, unified
            d = os.path.join(self.ROOT + self._own("0"), name)
            os.mkdir(d)
            self.dirs.append(d)
            self._write(d, "pids.max", limits.processes)
            self._write(d, "memory.max", mem)
            self._write(d, "memory.swap.max", 0, required=False)
        else:                                                                      # v1, one tree per controller
            for ctrl, files in (("pids", {"pids.max": limits.processes}),
                                ("memory", {"memory.limit_in_bytes": mem, "memory.memsw.limit_in_bytes": mem})):
                d = os.path.join(self.ROOT, ctrl + self._own(ctrl), name)
                os.mkdir(d)
                self.dirs.append(d)
                for f, v in files.items():
                    self._write(d, f, v, required=f != "memory.memsw.limit_in_bytes")

    @staticmethod
    def _own(controller):
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                num, ctrls, path = line.rstrip("\n").split(":", 2)
                if (controller == "0" and num == "0") or controller in ctrls.split(","):
                    return path.rstrip("/")
        raise OSError(f"no {controller} cgroup")

    @staticmethod
    def _write(d, f, v, required=True):
        try:
            with open(os.path.join(d, f), "w") as fh:
                fh.write(str(v))
        except OSError:
            if required:
                raise

    def oom_killed(self):
        """Whether the kernel killed a process of this cgroup for memory."""
        for d in self.dirs:
            for f, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
                try:
                    with open(os.path.join(d, f)) as fh:
                        for line in fh:
                            k, _, v = line.partition(" ")
                            if k == key and int(v) > 0:
                                return True
                except (OSError, ValueError):
                    pass
        return False

    def enter(self):
        """In the child before exec: move this process (and so all it starts) in."""
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))

    def remove(self):
        for d in self.dirs:
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    import time
                    time.sleep(0.05)

    @classmethod
    def make_probe(cls):
        c = cls.make(Limits())
        if c is None:
            return False
        c.remove()
        return True

    @classmethod
    def make(cls, limits):
        try:
            return cls(limits)
        except (OSError, ValueError):
            return None


def _rlimits(limits, cgroup=None):
    """preexec_fn: the kernel-enforced limits, inherited by every process of the notebook.
    The address space gets 2 GiB more than the memory limit: Taichi reserves a 1 GiB pool
    and LLVM more at start, virtual memory that is never resident; the resident memory
    is what the cgroup (or the supervisor's watchdog) holds to the limit."""
    mem = int((limits.memory_gb + 2) * (1 << 30))
    cpu = int(limits.notebook_s * max(1, os.cpu_count() or 1)) + 10

    def apply():
        os.setsid()
        if cgroup is not None:
            cgroup.enter()
        for res, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu),
                           (resource.RLIMIT_NPROC, limits.processes),
                           (resource.RLIMIT_FSIZE, limits.file_mb << 20),
                           (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0)):
            soft, hard = resource.getrlimit(res)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(res, (value, value))
    return apply


def _runtime_paths():
    """Read-only paths the sandboxed Python needs: the system, the interpreter, the
    environment's site-packages, the package directory (not the repository around it)."""
    import softras_taichi

    package = os.path.dirname(os.path.abspath(softras_taichi.__file__))
    repo = os.path.dirname(package)
    paths = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache",
             "/etc/ssl", "/etc/localtime"]
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    paths += prefixes + [os.path.dirname(os.path.realpath(sys.executable))]
    for p in sys.path:
        # installed packages only: never the grader's working directory, a test folder or a
        # "lenient" editable install's repository root that happen to be on sys.path
        if not p or not os.path.isabs(p):
            continue
        p = os.path.abspath(p)
        if p != repo and (any(p.startswith(q.rstrip("/") + "/") for q in prefixes)
                          or os.path.basename(p) in ("site-packages", "dist-packages")):
            paths.append(p)
    paths.append(package)
    out = []
    for p in paths:
        if os.path.exists(p) and p not in out and not any(p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


class Sandbox:
    name = "?"

    def describe(self):
        return self.name

    def start(self, notebook_bytes, limits, env, seed_cache=None, write_cache=None):
        """Start `python -m softras_taichi.grader.harness` in the sandbox; returns the
        Popen (stdin/stdout: the channel, stderr: the notebook's output) and a cleanup."""
        raise NotImplementedError


def _base_env(env):
    out = {"HOME": HOME, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "ENABLE_TAICHI_HEADER_PRINT": "0",
           "TI_OFFLINE_CACHE_FILE_PATH": f"{HOME}/.cache/taichi", "MPLCONFIGDIR": f"{HOME}/.cache/matplotlib"}
    out.update(env or {})
    return out


class Bubblewrap(Sandbox):
    name = "bwrap"

    def __init__(self, uid=SANDBOX_UID):
        self.uid = uid
        self.bwrap = shutil.which("bwrap")

    def describe(self):
        limits = ("a cgroup per notebook (pids.max, memory limit) + rlimits" if Cgroup.make_probe()
                  else "rlimits + a memory and process watchdog")
        return (f"bubblewrap ({self.bwrap}): user, pid, net, ipc, uts, mount namespaces; uid {self.uid}; "
                f"read-only system and package binds; private tmpfs home; no network; {limits}")

    def argv(self, limits, notebook_fd, seed_cache, write_cache):
        a = [self.bwrap, "--unshare-all", "--unshare-user", "--uid", str(self.uid), "--gid", str(self.uid),
             "--disable-userns", "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.file_mb << 20), "--tmpfs", "/tmp",
             "--size", str(limits.file_mb << 20), "--tmpfs", HOME]
        for p in _runtime_paths():
            a += ["--ro-bind", p, p]
        a += ["--file", str(notebook_fd), f"{HOME}/notebook.ipynb"]
        if write_cache:     # the trusted reference run fills the kernel cache the others copy
            a += ["--bind", write_cache, f"{HOME}/.cache"]
        elif seed_cache:
            a += ["--ro-bind", seed_cache, SEED_CACHE]
        a += ["--remount-ro", "/", "--chdir", HOME, "--", sys.executable, "-m", "softras_taichi.grader.harness"]
        return a

    def start(self, notebook_bytes, limits, env, seed_cache=None, write_cache=None):
        fd, path = tempfile.mkstemp(prefix="softras-nb-", suffix=".ipynb")
        with os.fdopen(fd, "wb") as fh:
            fh.write(notebook_bytes)
        nb_fd = os.open(path, os.O_RDONLY)
        os.unlink(path)
        env = _base_env(env)
        if seed_cache and not write_cache:
            env["SOFTRAS_GRADER_SEED_CACHE"] = SEED_CACHE
        cgroup = Cgroup.make(limits)
        try:
            proc = subprocess.Popen(self.argv(limits, nb_fd, seed_cache, write_cache), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, pass_fds=(nb_fd,),
                                    preexec_fn=_rlimits(limits, cgroup), close_fds=True)
        except BaseException:
            if cgroup:
                cgroup.remove()
            raise
        finally:
            os.close(nb_fd)
        proc.cgroup = cgroup
        return proc, (cgroup.remove if cgroup else (lambda: None))


class Docker(Sandbox):
    name = "docker"

    def __init__(self, image="softras-taichi-grader"):
        self.image = image

    def describe(self):
        return f"docker (image {self.image}): --network none, --read-only, uid {SANDBOX_UID}, memory and pids limits"

    def argv(self, limits, workdir):
        return ["docker", "run", "--rm", "-i", "--network", "none", "--read-only",
                "--user", f"{SANDBOX_UID}:{SANDBOX_UID}", "--memory", f"{int(limits.memory_gb * 1024)}m",
                "--memory-swap", f"{int(limits.memory_gb * 1024)}m", "--pids-limit", str(limits.processes),
                "--ulimit", f"fsize={limits.file_mb << 20}", "--cap-drop", "ALL", "--security-opt",
                "no-new-privileges", "--tmpfs", f"/tmp:size={limits.file_mb}m",
                "--tmpfs", f"{HOME}:size={limits.file_mb}m,uid={SANDBOX_UID}", "-v", f"{workdir}:/submission:ro",
                "-w", HOME, "-e", "HOME=" + HOME, "-e", "MPLBACKEND=Agg", "-e", "ENABLE_TAICHI_HEADER_PRINT=0",
                self.image, "python", "-m", "softras_taichi.grader.harness"]

    def start(self, notebook_bytes, limits, env, seed_cache=None, write_cache=None):
        workdir = tempfile.mkdtemp(prefix="softras-docker-")
        with open(os.path.join(workdir, "notebook.ipynb"), "wb") as fh:
            fh.write(notebook_bytes)
        proc = subprocess.Popen(self.argv(limits, workdir), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=os.setsid)
        return proc, lambda: shutil.rmtree(workdir, ignore_errors=True)


class Unsafe(Sandbox):
    name = "unsafe"

    def describe(self):
        return "unsafe: NO isolation (rlimits and a temporary directory only); the notebooks can read your files"

    def start(self, notebook_bytes, limits, env, seed_cache=None, write_cache=None):
        home = tempfile.mkdtemp(prefix="softras-unsafe-")
        with open(os.path.join(home, "notebook.ipynb"), "wb") as fh:
            fh.write(notebook_bytes)
        e = _base_env(env)
        cache = write_cache or os.path.join(home, ".cache")
        e.update({"HOME": home, "TI_OFFLINE_CACHE_FILE_PATH": os.path.join(cache, "taichi"),
                  "MPLCONFIGDIR": os.path.join(cache, "matplotlib"), "PATH": os.environ.get("PATH", "")})
        if seed_cache and not write_cache:
            e["SOFTRAS_GRADER_SEED_CACHE"] = seed_cache
        proc = subprocess.Popen([sys.executable, "-m", "softras_taichi.grader.harness"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=home,
                                preexec_fn=_rlimits(limits))
        return proc, lambda: shutil.rmtree(home, ignore_errors=True)


def _works(argv, timeout=30):
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def bwrap_works():
    b = shutil.which("bwrap")
    return bool(b) and _works([b, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid",
                               str(SANDBOX_UID), "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
                               "--", "true"])


def docker_works():
    return bool(shutil.which("docker")) and _works(["docker", "info"], timeout=20)


def choose(kind="auto", unsafe=False, docker_image="softras-taichi-grader"):
    """The sandbox to grade with, or SandboxUnavailable with what to do."""
    if kind not in MECHANISMS:
        raise ValueError(f"--sandbox must be one of {', '.join(MECHANISMS)}, got {kind!r}")
    if kind in ("auto", "bwrap") and bwrap_works():
        return Bubblewrap()
    if kind == "bwrap":
        raise SandboxUnavailable("bubblewrap cannot run here: install it (apt install bubblewrap) and allow "
                                 "user namespaces, or use --sandbox docker")
    if kind in ("auto", "docker") and docker_works():
        return Docker(docker_image)
    if kind == "docker":
        raise SandboxUnavailable("docker is not usable here (no client, or `docker info` fails: is the engine "
                                 "running?); use --sandbox bwrap")
    if kind == "unsafe" or unsafe:
        if not unsafe:
            raise SandboxUnavailable("--sandbox unsafe runs student code without isolation: add --unsafe to confirm")
        return Unsafe()
    raise SandboxUnavailable("no sandbox available: install bubblewrap (apt install bubblewrap) or Docker; "
                             "to grade WITHOUT isolation anyway (trusted notebooks only), pass --unsafe")
