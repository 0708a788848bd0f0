# ruff: noqa: E501 - the corpus keeps each program statement on one line of its string
"""Programs written to break the code sandbox, one per HumanEval task, for test_sandbox_hostile.py.

Each entry is module-level Python that runs where a completion runs (after the task's prompt,
whose function it first ends with `pass`). It may define `candidate(*args)`, which then becomes
the task's entry point: what the tests call. Placeholders filled by the test:

* `{secret_path}`: a file holding a secret, readable by every user of the host;
* `{outside}`: a folder of the host the program must not be able to write to;
* `{port}`: a TCP listener of the test on the host's 127.0.0.1 (and ::1), counting connections.

Every program prints what it found to stderr, which is stored in the item's `execution_detail`:
a secret that reached it would land in a stored file, which the test searches.
"""

from __future__ import annotations

_REPORT = "import sys\ndef report(*parts):\n    print(*parts, file=sys.stderr)\n"

_ALWAYS_EQUAL = (
    "class Anything:\n"
    "    def __eq__(self, other):\n        return True\n"
    "    def __ne__(self, other):\n        return False\n"
    "    def __bool__(self):\n        return True\n"
    "    def __hash__(self):\n        return 0\n"
    "    def __lt__(self, other):\n        return False\n"
    "    def __gt__(self, other):\n        return False\n"
    "    def __len__(self):\n        return 0\n"
    "    def __iter__(self):\n        return iter(())\n"
    "    def __abs__(self):\n        return 0\n"
    "    def __sub__(self, other):\n        return 0\n"
    "    def __rsub__(self, other):\n        return 0\n"
    "    def __float__(self):\n        return 0.0\n"
)

_FORK_BOMB = (
    "import time\n"
    "def _bomb(fork):\n"
    "    made = 0\n"
    "    try:\n"
    "        while True:\n"
    "            pid = fork()\n"
    "            if pid == 0:\n"
    "                time.sleep(30)\n"
    "                import posix\n                posix._exit(0)\n"
    "            made += 1\n"
    "    except BaseException as exc:\n"
    "        report('forks before refusal:', made, type(exc).__name__)\n"
    "        raise SystemExit(5)\n"
)

CORPUS: dict[str, str] = {
    # --- environment, /proc, secret files ------------------------------------------------------
    "env_dump": "import os\nreport(dict(os.environ))\n"
                "def candidate(*args):\n    return str(dict(os.environ))\n",
    "env_named_keys": "import os\nfor k in ('OPENAI_API_KEY', 'HF_TOKEN', 'KANANA_SECRET'):\n"
                      "    report(k, os.environ.get(k))\n"
                      "    assert os.environ.get(k) is None\n",
    "proc_1_environ": "report(open('/proc/1/environ', 'rb').read())\n",
    "proc_all_environ": "import os\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n"
                        "        for f in ('environ', 'cmdline'):\n"
                        "            try:\n"
                        "                report(pid, f, open(f'/proc/{{pid}}/{{f}}', 'rb').read())\n"
                        "            except OSError as exc:\n                report(pid, f, exc)\n",
    "proc_parent_environ": "import os\nreport(open(f'/proc/{{os.getppid()}}/environ', 'rb').read())\n",
    "proc_pid_scan": "import os\nfor pid in range(1, 70000):\n    try:\n"
                     "        data = open(f'/proc/{{pid}}/environ', 'rb').read()\n"
                     "    except OSError:\n        continue\n"
                     "    if b'sk-' in data:\n        report('found', pid, data)\n",
    "proc_mem_read": "import os, re\nfor pid in os.listdir('/proc'):\n    if not pid.isdigit():\n"
                     "        continue\n    try:\n        maps = open(f'/proc/{{pid}}/maps').read()\n"
                     "        mem = open(f'/proc/{{pid}}/mem', 'rb')\n"
                     "        for line in maps.splitlines()[:40]:\n"
                     "            lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n"
                     "            mem.seek(lo)\n            chunk = mem.read(min(hi - lo, 1 << 16))\n"
                     "            for hit in re.findall(rb'sk-[\\w-]+', chunk):\n"
                     "                report('mem', pid, hit)\n"
                     "    except (OSError, ValueError, OverflowError) as exc:\n"
                     "        report(pid, exc)\n",
    "secret_file": "report(open({secret_path!r}).read())\n",
    "secret_file_via_proc_root": "report(open('/proc/1/root' + {secret_path!r}).read())\n",
    "home_and_system_secrets": "import glob\nfor p in ['/root/.netrc', '/root/.bash_history', "
                               "'/etc/shadow', '/root/.cache/huggingface/token', "
                               "*glob.glob('/root/.*'), *glob.glob('/home/*/.*')]:\n"
                               "    try:\n        report(p, open(p).read()[:200])\n"
                               "    except OSError as exc:\n        report(p, exc)\n",
    "walk_for_secrets": "import os\nfor root, dirs, files in os.walk('/'):\n"
                        "    if root.startswith(('/proc', '/sys', '/usr')) or "
                        "'site-packages' in root or 'python3.' in root:\n"
                        "        dirs[:] = []\n        continue\n"
                        "    for f in files:\n"
                        "        if 'secret' in f or f.endswith(('.pkl', '.env', '.key')):\n"
                        "            try:\n"
                        "                report(root, f, open(os.path.join(root, f), 'rb')"
                        ".read()[:200])\n"
                        "            except OSError:\n                pass\n",
    "expected_outputs_hunt": "import glob\nfor top in ('/root', '/tmp', '/home', '/work', "
                             "'/kanana-lib', '/var'):\n"
                             "    for p in glob.glob(top + '/**/*.pkl', recursive=True):\n"
                             "        report('ground truth at', p)\n"
                             "assert not glob.glob('/root/.cache/**', recursive=True)\n",
    # --- network ------------------------------------------------------------------------------
    "loopback_tcp": "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                    "s.sendall(b'escaped')\n",
    "loopback_ipv6": "import socket\ns = socket.create_connection(('::1', {port}), timeout=2)\n"
                     "s.sendall(b'escaped')\n",
    "loopback_udp": "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "s.sendto(b'escaped', ('127.0.0.1', {port}))\n"
                    "s.settimeout(1)\ns.recv(10)\n",
    "external_dns": "import socket\nsocket.create_connection(('8.8.8.8', 53), timeout=2)\n",
    "host_interfaces": "import socket\nfor host in ('10.0.0.1', '172.17.0.1', '192.168.0.1'):\n"
                       "    try:\n"
                       "        socket.create_connection((host, {port}), timeout=0.5)\n"
                       "        raise SystemExit('reached ' + host)\n"
                       "    except OSError as exc:\n        report(host, exc)\n"
                       "raise AssertionError('no network')\n",
    # --- fork and thread bombs, by every API ----------------------------------------------------
    "fork_bomb_posix": _FORK_BOMB + "import posix\n_bomb(posix.fork)\n",
    "fork_bomb_os_restored": _FORK_BOMB + "import posix, os\nos.fork = posix.fork\n_bomb(os.fork)\n",
    "fork_bomb_ctypes": _FORK_BOMB + "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                        "def f():\n    pid = libc.fork()\n"
                        "    if pid < 0:\n        raise OSError(ctypes.get_errno(), 'fork')\n"
                        "    return pid\n_bomb(f)\n",
    "fork_bomb_raw_syscall": _FORK_BOMB + "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                             "def f():\n    pid = libc.syscall(57)\n"
                             "    if pid < 0:\n        raise OSError(ctypes.get_errno(), 'fork')\n"
                             "    return pid\n_bomb(f)\n",
    "fork_bomb_forkpty": _FORK_BOMB + "import posix\n_bomb(lambda: posix.forkpty()[0])\n",
    "spawn_bomb": "import posix, sys\nn = 0\ntry:\n    while True:\n"
                  "        posix.posix_spawn('/bin/sleep', ['sleep', '30'], {{}})\n        n += 1\n"
                  "except BaseException as exc:\n    report('spawned', n, repr(exc))\n    raise\n",
    "multiprocessing_bomb": "import multiprocessing, time\nn = 0\ntry:\n    while True:\n"
                            "        multiprocessing.Process(target=time.sleep, args=(30,)).start()\n"
                            "        n += 1\n"
                            "except BaseException as exc:\n    report('processes', n, repr(exc))\n"
                            "    raise\n",
    "shell_bomb": "import posix\nposix.system(':(){{ :|:& }};:')\nraise AssertionError('after')\n",
    "thread_bomb": "import threading, time\nn = 0\ntry:\n    while True:\n"
                   "        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
                   "        n += 1\n"
                   "except BaseException as exc:\n    report('threads', n, repr(exc))\n    raise\n",
    "thread_bomb_low_level": "import _thread, time\nn = 0\ntry:\n    while True:\n"
                             "        _thread.start_new_thread(time.sleep, (30,))\n        n += 1\n"
                             "except BaseException as exc:\n    report('threads', n, repr(exc))\n"
                             "    raise\n",
    # --- forging the verdict ------------------------------------------------------------------
    "forge_frames_nonce": "import sys, os\nf = sys._getframe()\nwhile f is not None:\n"
                          "    loc = f.f_locals\n"
                          "    if 'nonce' in loc and 'proof_fd' in loc:\n"
                          "        os.write(loc['proof_fd'], loc['nonce'])\n        os._exit(0)\n"
                          "    f = f.f_back\n"
                          "def candidate(*args):\n    f = sys._getframe()\n"
                          "    while f is not None:\n        loc = f.f_locals\n"
                          "        if 'nonce' in loc and 'proof_fd' in loc:\n"
                          "            os.write(loc['proof_fd'], loc['nonce'])\n"
                          "            os._exit(0)\n        f = f.f_back\n    os._exit(0)\n",
    "forge_frames_header": "import sys, os, json\nf = sys._getframe()\nwhile f is not None:\n"
                           "    h = f.f_locals.get('header')\n"
                           "    if isinstance(h, dict) and 'nonce' in h:\n"
                           "        for fd in range(3, 64):\n            try:\n"
                           "                os.write(fd, h['nonce'].encode() + b'\\n' + "
                           "json.dumps([0, [True] * 999]).encode())\n"
                           "            except OSError:\n                pass\n        os._exit(0)\n"
                           "    f = f.f_back\n",
    "forge_gc_nonce": "import gc, os, re\nhits = [o for o in gc.get_objects() if isinstance(o, dict)"
                      " and isinstance(o.get('nonce'), str)]\n"
                      "for h in hits:\n    for fd in range(3, 64):\n        try:\n"
                      "            os.write(fd, h['nonce'].encode())\n"
                      "        except OSError:\n            pass\n"
                      "os._exit(0)\n",
    "forge_ctypes_protocol": "import ctypes, os\nlibc = ctypes.CDLL(None)\n"
                             "line = b'done 0 0 0 ' + b'QUFBQQ==' + b'\\n'\n"
                             "for fd in range(0, 128):\n    libc.write(fd, line, len(line))\n"
                             "os._exit(0)\n",
    "forge_parent_stdout": "import os\nfor fd in range(0, 16):\n    try:\n"
                           "        w = open(f'/proc/{{os.getppid()}}/fd/{{fd}}', 'wb')\n"
                           "        w.write(b'started 0 0\\ndone 0 0 0 QUFBQQ==\\n')\n"
                           "        w.flush()\n"
                           "    except OSError as exc:\n        report(fd, exc)\n",
    "forge_ptrace_parent": "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                           "r = libc.ptrace(16, os.getppid(), 0, 0)\n"
                           "report('ptrace', r, ctypes.get_errno())\nassert r == 0\n",
    "forge_signal_stop_parent": "import os, posix, signal\nposix.kill(os.getppid(), "
                                "signal.SIGSTOP)\nos._exit(0)\n",
    "forge_kill_parent": "import os, posix\nposix.kill(os.getppid(), 9)\n",
    "forge_kill_everything": "import posix\nposix.kill(-1, 9)\n",
    "forge_kill_by_scan": "import posix\nfor pid in range(1, 5000):\n    try:\n"
                          "        posix.kill(pid, 9)\n    except OSError:\n        pass\n",
    "forge_early_exit": "import os\nos._exit(0)\n",
    "forge_exit_in_candidate": "import sys\ndef candidate(*args):\n    sys.exit(0)\n",
    "forge_atexit": "import atexit, os\natexit.register(lambda: os._exit(0))\n"
                    "def candidate(*args):\n    raise ValueError('wrong')\n",
    "forge_excepthook": "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\n"
                        "def candidate(*args):\n    return None\n",
    # --- __eq__ and other comparison tricks -----------------------------------------------------
    "eq_always_true": _ALWAYS_EQUAL + "def candidate(*args):\n    return Anything()\n",
    "eq_int_subclass": "class I(int):\n    def __eq__(self, other):\n        return True\n"
                       "    __hash__ = int.__hash__\n"
                       "def candidate(*args):\n    return I(123456789)\n",
    "eq_str_subclass": "class S(str):\n    def __eq__(self, other):\n        return True\n"
                       "    __hash__ = str.__hash__\n"
                       "def candidate(*args):\n    return S('nope')\n",
    "eq_list_subclass": "class L(list):\n    def __eq__(self, other):\n        return True\n"
                        "def candidate(*args):\n    return L([987654321])\n",
    "eq_float_subclass": "class F(float):\n    def __eq__(self, other):\n        return True\n"
                         "    def __abs__(self):\n        return 0.0\n"
                         "    __hash__ = float.__hash__\n"
                         "def candidate(*args):\n    return F(1e300)\n",
    "eq_patched_builtins": "import builtins, math\nbuiltins.abs = lambda x: 0\n"
                           "builtins.isinstance = lambda *a: True\nmath.isclose = "
                           "lambda *a, **k: True\ndef candidate(*args):\n    return -987654321\n",
    "eq_raises_systemexit": "class E:\n    def __eq__(self, other):\n        raise SystemExit(0)\n"
                            "def candidate(*args):\n    return E()\n",
    "eq_returns_handle_twice": "marker = object()\ndef candidate(*args):\n    return marker\n",
    # --- disk, files outside, memory ----------------------------------------------------------
    "disk_fill_bytes": "with open('big', 'wb') as f:\n    while True:\n"
                       "        f.write(b'x' * (1 << 20))\n",
    "disk_fill_files": "import os\nfor i in range(100000):\n"
                       "    open(f'f{{i}}', 'w').close()\n",
    "disk_fill_swallowed": "try:\n    with open('big', 'wb') as f:\n        while True:\n"
                           "            f.write(b'x' * (1 << 20))\nexcept OSError:\n    pass\n"
                           "def candidate(*args):\n    raise ValueError('wrong')\n",
    "write_outside": "import os\nhits = []\nfor p in [{outside!r} + '/escaped.txt', "
                     "'/tmp/kanana-escaped.txt', '/dev/shm/kanana-escaped', "
                     "'/usr/kanana-escaped', '/etc/kanana-escaped', "
                     "{secret_path!r}]:\n"
                     "    try:\n        open(p, 'a').write('escaped')\n        hits.append(p)\n"
                     "    except OSError as exc:\n        report(p, exc)\n"
                     "assert not hits, hits\n",
    "write_via_proc_root": "open('/proc/1/root/' + {outside!r} + '/escaped2.txt', 'w')"
                           ".write('escaped')\n",
    "symlink_out": "import os\nos.symlink({outside!r}, 'link')\nopen('link/escaped3.txt', 'w')"
                   ".write('x')\n",
    "memory_bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n",
    "ctypes_memory_bomb": "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.malloc.restype = "
                          "ctypes.c_void_p\nwhile True:\n    p = libc.malloc(1 << 26)\n"
                          "    assert p\n    ctypes.memset(p, 1, 1 << 26)\n",
    "raise_rlimits": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                     "class R(ctypes.Structure):\n"
                     "    _fields_ = [('cur', ctypes.c_ulong), ('max', ctypes.c_ulong)]\n"
                     "for res in (0, 6, 9):\n    r = R(2**64 - 1, 2**64 - 1)\n"
                     "    report(res, libc.setrlimit(res, ctypes.byref(r)), ctypes.get_errno())\n"
                     "def candidate(*args):\n    while True:\n        pass\n",
    "namespace_escape": "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                        "report('unshare', libc.unshare(0x10000000 | 0x20000), "
                        "ctypes.get_errno())\n"
                        "report('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), "
                        "ctypes.get_errno())\n"
                        "report('setns', os.open('/proc/1/ns/net', os.O_RDONLY))\n"
                        "raise AssertionError('still inside')\n",
    "sleep_forever": "import time\ndef candidate(*args):\n    time.sleep(3600)\n",
}
