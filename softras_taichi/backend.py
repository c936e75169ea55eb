"""Choosing and (re)starting the Taichi backend.

Every Taichi field dies when `ti.init` runs again, so objects that hold fields
(scenes, renderer caches) remember the `generation` they were built in and rebuild
themselves when it has moved on.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

import taichi as ti

ARCHES = ("cpu", "cuda", "vulkan", "metal")
LAYOUTS = ("auto", "cpu", "gpu")
_state = {"arch": None, "precision": None, "layout": None, "generation": 0}
_before_reset = []  # callbacks that drop what the running Taichi program owns (workspace.py)


class _VkInstanceCreateInfo(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("pApplicationInfo", ctypes.c_void_p), ("enabledLayerCount", ctypes.c_uint32),
                ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", ctypes.c_uint32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]


VK_PHYSICAL_DEVICE_TYPE_CPU = 4


def _vulkan_devices():
    """[(name, VkPhysicalDeviceType)] of every Vulkan device, asked of the Vulkan loader
    itself ([] without one): Taichi does not say which device it would pick."""
    name = ctypes.util.find_library("vulkan-1" if sys.platform == "win32" else "vulkan") or "libvulkan.so.1"
    try:
        vk = ctypes.CDLL(name)
    except OSError:
        return []
    info, instance = _VkInstanceCreateInfo(sType=1), ctypes.c_void_p()  # VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
    if vk.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
        return []
    try:
        n = ctypes.c_uint32()
        vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(n), None)
        handles = (ctypes.c_void_p * n.value)()
        vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(n), handles)
        found = []
        for h in handles[:n.value]:
            props = ctypes.create_string_buffer(4096)  # VkPhysicalDeviceProperties is 824 bytes
            vk.vkGetPhysicalDeviceProperties(ctypes.c_void_p(h), props)
            # apiVersion, driverVersion, vendorID, deviceID (4 bytes each), deviceType, deviceName[256]
            kind = int.from_bytes(props.raw[16:20], "little")
            found.append((props.raw[20:276].split(b"\0")[0].decode(errors="replace"), kind))
        return found
    finally:
        vk.vkDestroyInstance(instance, None)


def _has_real_vulkan_gpu():
    # lavapipe/llvmpipe (Mesa's CPU Vulkan driver, device type CPU) is slower than
    # Taichi's CPU backend, so "auto" only picks Vulkan for a device that is a GPU.
    try:
        return any(kind != VK_PHYSICAL_DEVICE_TYPE_CPU for _, kind in _vulkan_devices())
    except Exception:  # noqa: BLE001 - a broken loader means no usable Vulkan
        return False


def _has_cuda():
    # Asking Taichi for CUDA on a machine without it costs a start-up and a log line
    return bool(glob.glob("/dev/nvidia[0-9]*")) or (sys.platform == "win32" and bool(ctypes.util.find_library("nvcuda")))


def _candidates(arch):
    if arch != "auto":
        return [arch]
    forced = os.environ.get("TI_ARCH")  # the usual way to force a backend, e.g. TI_ARCH=x64
    forced = {"x64": "cpu", "arm64": "cpu"}.get(forced, forced)
    if forced in ARCHES:
        return [forced]
    order = ["cuda"] if _has_cuda() else []
    if sys.platform == "darwin":
        order.append("metal")
    if _has_real_vulkan_gpu():
        order.append("vulkan")
    return order + ["cpu"]


def _remember_source_positions():
    """Make Taichi's compiler remember the source-position text it builds for every AST node.

    Taichi's Python front end formats, for each node of every kernel and of every @ti.func
    inlined into it, a "File ..., line ..." text with the line and a caret under the node
    (for its error messages), whether or not an error comes; our functions are inlined
    again at each call site, so the same texts are built about three times over: 0.3-0.5 s
    of a 4-5 s first image from a cold cache.  The text depends only on the node's place and
    the source lines it spans, which the key holds, so every message is the one Taichi
    would have written.  Skipped if this Taichi has no such method."""
    try:
        from taichi.lang.ast import ast_transformer_utils as utils
        build = utils.ASTTransformerContext.get_pos_info
    except (ImportError, AttributeError):
        return
    if getattr(build, "remembered", False):
        return
    texts = {}

    def get_pos_info(self, node):
        try:
            last = node.end_lineno if node.end_lineno is not None else node.lineno
            body = getattr(node, "body", None)
            key = (self.file, self.func.func.__name__, self.lineno_offset, self.indent, type(node).__name__,
                   node.lineno, node.col_offset, node.end_lineno, node.end_col_offset,
                   body[0].lineno if isinstance(body, list) and body else None,
                   tuple(self.src[node.lineno - 1:last]))
        except (AttributeError, TypeError):
            return build(self, node)
        text = texts.get(key)
        if text is None:
            text = texts[key] = build(self, node)
        return text

    get_pos_info.remembered = True
    utils.ASTTransformerContext.get_pos_info = get_pos_info


_remember_source_positions()


def _ti_arch(name):
    return {"cpu": ti.cpu, "cuda": ti.cuda, "vulkan": ti.vulkan, "metal": ti.metal}[name]


def init(arch="auto", precision="f32", verbose=True, layout="auto", **ti_kwargs):
    """Start Taichi on `arch` ("auto", "cpu", "cuda", "vulkan", "metal"); return its name.

    precision "f64" is for gradient checks on the CPU (and CUDA): Vulkan cannot compile
    f64 transcendental functions and Metal has no f64.  `layout` arranges the soft pass
    ("cpu": soft.py, "gpu": soft_tiles.py; "auto": "cpu" on the CPU, "gpu" elsewhere);
    the results are the same, only the speed differs.  Calling init again is safe:
    every scene and cached field is rebuilt on next use.
    """
    if arch not in ARCHES + ("auto",):
        raise ValueError(f"arch must be one of 'auto', 'cpu', 'cuda', 'vulkan', 'metal'; got {arch!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of 'auto', 'cpu', 'gpu'; got {layout!r}")
    if precision not in ("f32", "f64"):
        raise ValueError(f"precision must be 'f32' or 'f64', got {precision!r}")
    if precision == "f64" and arch in ("vulkan", "metal"):
        raise ValueError(f"precision='f64' is not available on {arch}: use precision='f32', "
                         "or arch='cpu' for float64 gradient checks")
    fp = ti.f64 if precision == "f64" else ti.f32
    os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "0")
    errors = []
    for name in _candidates(arch):
        if precision == "f64" and name in ("vulkan", "metal"):
            continue
        # Taichi lets TI_ARCH override the arch we pass; an explicit request must win
        # (CI sets TI_ARCH=x64 and still tests Vulkan), so hide it during ti.init.
        saved = os.environ.pop("TI_ARCH", None)
        for release in _before_reset:
            release()
        try:
            ti.reset()
            ti.init(arch=_ti_arch(name), default_fp=fp, default_ip=ti.i32,
                    log_level=ti.ERROR, offline_cache=True, **ti_kwargs)
        except Exception as exc:  # noqa: BLE001 - report every backend that failed
            errors.append(f"{name}: {exc}")
            continue
        finally:
            if saved is not None:
                os.environ["TI_ARCH"] = saved
        chosen = _current_arch_name()
        if chosen != name:  # Taichi silently falls back to the CPU when a GPU is missing
            errors.append(f"{name}: not available (Taichi fell back to {chosen})")
            if arch != "auto":
                break
            continue
        natural = "cpu" if name == "cpu" else "gpu"
        picked = natural if layout == "auto" else layout
        _state.update(arch=name, precision=precision, layout=picked, generation=_state["generation"] + 1)
        if verbose:
            forced = "" if picked == natural else f", {picked} layout"
            print(f"softras-taichi: running on {name} ({precision}{forced})")
        return name
    raise RuntimeError(f"could not start Taichi on {arch!r}: " + "; ".join(errors)
                       + ". Try sr.init('cpu'), which works everywhere.")


def _current_arch_name():
    a = ti.lang.impl.current_cfg().arch
    if a in (ti.x64, ti.arm64):
        return "cpu"
    for name in ("cuda", "vulkan", "metal"):
        if a == _ti_arch(name):
            return name
    return str(a)


def ensure_init():
    """Start the default backend if the user has not called `init` yet."""
    if _state["arch"] is None:
        init("auto")
    return _state["generation"]


def generation():
    return _state["generation"]


def current():
    """(arch, precision) of the running backend, or (None, None) before init."""
    return _state["arch"], _state["precision"]


def layout():
    """"cpu" or "gpu": how the soft pass is laid out (init's `layout`)."""
    return _state["layout"]
