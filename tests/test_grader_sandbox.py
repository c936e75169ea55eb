"""The sandbox, probed from inside (CI runs as root: it must isolate there too).

One sandboxed process runs probe cells, each asserting what a notebook must not be able
to do: see the repository or the solutions, reach the network, write outside its home,
see other processes or the grader's environment, outgrow its memory, processes, files or
output, outlive its notebook.  A probe that fails shows up as a cell error.
"""
import os
import socket
import time

import pytest

from grading import ROOT, SOLUTIONS, processes_with
from softras_taichi.grader import sandbox as sb
from softras_taichi.grader.supervisor import run_notebook

pytestmark = pytest.mark.skipif(not sb.bwrap_works(), reason="bubblewrap cannot run here")

PROBES = {
    "uid": "import os\nassert os.getuid() == 65534 and os.getgid() == 65534, (os.getuid(), os.getgid())",
    "no repository": f"import os\nassert not os.path.exists({SOLUTIONS!r})\n"
                     f"assert sorted(os.listdir({ROOT!r})) == ['softras_taichi'], os.listdir({ROOT!r})",
    "home holds only the notebook": "import os\nassert {'notebook.ipynb'} <= set(os.listdir(os.path.expanduser('~'))) "
                                    "<= {'notebook.ipynb', '.cache', '.ipython'}, os.listdir('.')\n"
                                    "assert os.listdir('/tmp') == []",
    "pid namespace": "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
                     "assert len(pids) < 8, pids\n"
                     "assert b'solutions' not in open(f'/proc/{os.getppid()}/cmdline', 'rb').read()",
    "environment": "import os\nassert 'SOFTRAS_TEST_SECRET' not in os.environ and 'SOFTRAS_GRADER_RESULTS' not in os.environ",
    "read-only package": "import softras_taichi, os\np = os.path.join(os.path.dirname(softras_taichi.__file__), 'x.py')\n"
                         "try:\n    open(p, 'w').write('boom')\nexcept OSError:\n    pass\nelse:\n    raise AssertionError('wrote ' + p)",
    "no way out of the home": "for p in ('/usr/x', '/etc/x', '/x'):\n    try:\n        open(p, 'w').write('boom')\n"
                              "    except OSError:\n        continue\n    raise AssertionError('wrote ' + p)",
    "file size": "import os\ntry:\n    with open('big', 'wb') as fh:\n        for _ in range(64):\n"
                 "            fh.write(b'x' * (1 << 20))\nexcept OSError:\n    pass\nelse:\n    raise AssertionError('64 MB written')\n"
                 "finally:\n    os.path.exists('big') and os.remove('big')",
    "memory": "import numpy as np\ntry:\n    x = np.ones(int(3 * 2**30 / 8))\n    x[::4096] = 2.0\nexcept MemoryError:\n    pass\n"
              "else:\n    raise AssertionError('allocated 3 GB')",
    "processes": "import os, time\nkids = []\nfor i in range(200):\n    try:\n        pid = os.fork()\n"
                 "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n    kids.append(pid)\n"
                 "assert len(kids) < 100, len(kids)\nfor k in kids:\n    os.waitpid(k, 0)",
}


@pytest.fixture(scope="module")
def probed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    probes = dict(PROBES)
    probes["network"] = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                         "except OSError:\n    pass\nelse:\n    raise AssertionError('reached the host')\n"
                         "import os\nassert sorted(os.listdir('/sys/class/net')) == ['lo'] if os.path.isdir('/sys/class/net') else True")
    probes["daemon"] = ("import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                        "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(120)', 'softras-daemon-probe'])\n"
                        "    os._exit(0)\ntime.sleep(0.5)")
    os.environ["SOFTRAS_TEST_SECRET"] = "the grader's environment"
    limits = sb.Limits(memory_gb=2, processes=64, file_mb=32, cell_s=30, notebook_s=120, output_mb=1)
    cells = list(enumerate(probes.values()))
    cells.append((len(cells), "print('y' * 100000 * 30)"))      # 3 MB of output, 1 MB kept
    try:
        res = run_notebook(sb.choose("bwrap"), b'{"cells": []}', cells, [], [], limits, lambda n: None)
    finally:
        del os.environ["SOFTRAS_TEST_SECRET"]
        server.close()
    return dict(zip(probes, range(len(probes)))), res


@pytest.mark.parametrize("probe", list(PROBES) + ["network", "daemon"])
def test_the_sandbox_holds(probed, probe):
    index, res = probed
    i = index[probe]
    if probe == "memory" and i in res["skipped"]:        # stopped from outside rather than refused inside
        assert "more than 2 GiB of memory" in res["skipped"][i]
        return
    assert i not in res["cell_errors"] and i not in res["skipped"], (res["cell_errors"].get(i), res["skipped"].get(i))


def test_daemons_die_with_the_notebook(probed):
    time.sleep(0.5)
    assert processes_with("softras-daemon-probe") == []


def test_output_is_capped_and_the_report_says_so(probed):
    _, res = probed
    assert res["output"].size <= 1 << 20 and res["output"].dropped > 1_000_000
    assert any("printed more than 1 MB" in n for n in res["notes"])


def test_no_sandbox_means_a_loud_refusal(monkeypatch):
    monkeypatch.setattr(sb, "bwrap_works", lambda: False)
    monkeypatch.setattr(sb, "docker_works", lambda: False)
    with pytest.raises(sb.SandboxUnavailable, match="--unsafe"):
        sb.choose("auto")
    with pytest.raises(sb.SandboxUnavailable, match="add --unsafe"):
        sb.choose("unsafe")
    assert isinstance(sb.choose("auto", unsafe=True), sb.Unsafe)
    with pytest.raises(sb.SandboxUnavailable, match="docker"):
        sb.choose("docker")


def test_docker_sandbox(tmp_path):
    d = sb.Docker("img")
    argv = d.argv(sb.Limits(), str(tmp_path))
    for flag in ("--network", "none", "--read-only", "--pids-limit", "--cap-drop", "ALL", "no-new-privileges"):
        assert flag in argv
    assert f"{sb.SANDBOX_UID}:{sb.SANDBOX_UID}" in argv and "4096m" in argv
    if not sb.docker_works():
        pytest.skip("LOUD SKIP: no Docker engine here (`docker info` fails): --sandbox docker is untested on this "
                    "machine beyond its command line")
    res = run_notebook(sb.choose("docker"), b"{}", [(0, "import os\nassert os.getuid() == 65534")], [], [],
                       sb.Limits(notebook_s=120), lambda n: None)
    assert not res["cell_errors"] and not res["skipped"], res
