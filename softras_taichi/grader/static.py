"""Did the student call the library's own implementation of what is graded?

Read from the submission's source (its AST), before anything runs.  For each graded check
the instructor lists, in `forbid`, the dotted names of the library's implementation
(`softras_taichi.probability.segment_d2`).  A use of one of them — directly, through an
alias (`import softras_taichi as sr; sr.probability.segment_d2`), `from ... import`
(with or without `as`, or `*`), an assignment of the module to a new name, a
`getattr(module, "segment_d2")` — scores 0 for that check.  Constructs that can reach any
name without spelling it (`getattr` with a computed name, `__import__`, `importlib`,
`exec`, `eval`, `compile`, `sys.modules`, `vars()`/`globals()`/`__dict__`, `__file__`,
`get_ipython()`, `inspect`, reading the package's files) score 0 for every check that
has a `forbid` list: the grader cannot follow them, so the answer must do without.

What this cannot catch is written in docs/instructors.md: code that builds the same
function from the library's pieces, a copy of the library's source pasted in, and
anything reached through a module this does not know re-exports it.
"""
import ast

from .spec import code

PACKAGE = "softras_taichi"
EVASIVE_CALLS = {"getattr": "getattr with a computed name", "__import__": "__import__", "exec": "exec",
                 "eval": "eval", "compile": "compile", "vars": "vars()", "globals": "globals()",
                 "locals": "locals()", "get_ipython": "get_ipython()", "open": None}
EVASIVE_MODULES = {"importlib", "runpy", "imp", "pkgutil", "builtins", "inspect", "ctypes", "marshal",
                   "zipimport", "code", "codeop", "types"}
EVASIVE_ATTRS = {"modules": "sys.modules", "__dict__": "__dict__", "__file__": "__file__",
                 "__path__": "__path__", "__spec__": "__spec__", "__loader__": "__loader__",
                 "__builtins__": "__builtins__", "__globals__": "__globals__", "__code__": "__code__",
                 "__wrapped__": "__wrapped__", "__closure__": "__closure__"}


def _dotted(node, aliases):
    """The dotted name an expression stands for ('softras_taichi.probability.segment_d2'), or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    base = aliases.get(node.id, node.id)
    return ".".join([base] + parts[::-1])


class _Scan(ast.NodeVisitor):
    def __init__(self, forbidden):
        self.forbidden = forbidden          # {dotted name: {checks}}
        self.names = {f.rsplit(".", 1)[-1] for f in forbidden if not f.startswith(".")}
        self.aliases = {}
        self.hits = []                      # (dotted name, lineno)
        self.evasions = []                  # (what, lineno)

    def _use(self, dotted, lineno):
        if not dotted:
            return
        if dotted in self.forbidden:
            self.hits.append((dotted, lineno))
            return
        head, _, last = dotted.rpartition(".")
        if last in self.names and (head == PACKAGE or head.startswith(PACKAGE + ".")):
            # re-exported elsewhere in the package (sr.segment_d2): the same function
            self.hits.append((next(f for f in self.forbidden if f.endswith("." + last)), lineno))

    def visit_Import(self, node):
        for a in node.names:
            top = a.name.split(".")[0]
            if top in EVASIVE_MODULES:
                self.evasions.append((f"import {a.name}", node.lineno))
            if a.asname:
                self.aliases[a.asname] = a.name
                self._use(a.name, node.lineno)
            else:
                self.aliases.setdefault(top, top)

    def visit_ImportFrom(self, node):
        mod = node.module or ""
        if mod.split(".")[0] in EVASIVE_MODULES:
            self.evasions.append((f"from {mod} import ...", node.lineno))
        for a in node.names:
            if a.name == "*":
                if mod.startswith(PACKAGE):
                    for f in self.forbidden:
                        if f.rsplit(".", 1)[0] == mod:
                            self.hits.append((f, node.lineno))
                continue
            if a.name in ("__import__", "import_module"):
                self.evasions.append((a.name, node.lineno))
            full = f"{mod}.{a.name}" if mod else a.name
            self.aliases[a.asname or a.name] = full
            self._use(full, node.lineno)

    def visit_Assign(self, node):
        self.generic_visit(node)
        src = _dotted(node.value, self.aliases)
        if src and src.split(".")[0] == PACKAGE:
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.aliases[t.id] = src

    def visit_Attribute(self, node):
        if "." + node.attr in self.forbidden:      # a method, on any object: ".vertex_grad"
            self.hits.append(("." + node.attr, node.lineno))
        if node.attr in EVASIVE_ATTRS:
            self.evasions.append((EVASIVE_ATTRS[node.attr], node.lineno))
        if isinstance(node.ctx, ast.Load):
            self._use(_dotted(node, self.aliases), node.lineno)
        self.generic_visit(node)

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            if node.id in ("__builtins__", "__import__"):
                self.evasions.append((node.id, node.lineno))
            self._use(self.aliases.get(node.id), node.lineno)

    def visit_Call(self, node):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else None
        if name in EVASIVE_CALLS:
            if name == "getattr":
                attr = node.args[1] if len(node.args) > 1 else None
                if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                    self.evasions.append(("getattr with a computed name", node.lineno))
                elif attr.value in self.names:
                    base = _dotted(node.args[0], self.aliases) or ""
                    self._use(f"{base}.{attr.value}" if base.startswith(PACKAGE) else None, node.lineno)
                    if not base.startswith(PACKAGE):
                        self.evasions.append((f"getattr(..., {attr.value!r})", node.lineno))
            elif name == "open":
                if any(isinstance(a, ast.Constant) and isinstance(a.value, str) and PACKAGE in a.value
                       for a in ast.walk(node)):
                    self.evasions.append(("reading the package's files", node.lineno))
            else:
                self.evasions.append((EVASIVE_CALLS[name], node.lineno))
        self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, str) and (PACKAGE + "/") in node.value:
            self.evasions.append(("a path into the package's files", node.lineno))


def scan(cells, checks, student=None):
    """{check name: message} for the checks the code in `cells` ([(cell index, source)],
    in notebook order) may not earn; only the cells in `student` (indices; default all)
    count, the others are read for their imports.  `checks`: GradedCheck objects."""
    forbidden = {}
    for c in checks:
        for f in c.forbid:
            forbidden.setdefault(f, set()).add(c.name)
    if not forbidden:
        return {}
    out = {}
    evasions = []
    s = _Scan(forbidden)
    for index, source in cells:
        try:
            tree = parse(source)
        except SyntaxError:
            continue  # it cannot run either
        s.hits, s.evasions = [], []
        s.visit(tree)
        if student is not None and index not in student:
            continue
        for dotted, line in s.hits:
            for name in sorted(forbidden[dotted]):
                shown = f"the library's {dotted[1:]}" if dotted.startswith(".") else dotted
                out.setdefault(name, f"you called `{shown}` (cell {index}, line {line}); write it yourself")
        evasions += [(what, index, line) for what, line in s.evasions]
    if evasions:
        what, index, line = evasions[0]
        msg = (f"your code uses {what} (cell {index}, line {line}), which could reach the library's own "
               "implementation; write your answer without it")
        for c in checks:
            if c.forbid:
                out.setdefault(c.name, msg)
    return out


# --------------------------------------------------------------------------- Taichi traps
# Code that Python accepts and Taichi compiles, but that does not do what it says.  Read
# from the source before anything runs; shown to the student (feedback check, grade
# report) with the cell and line.

TAICHI_DECORATORS = {"func", "kernel", "real_func"}
NUMPY_INSTEAD = {"clip": "ti.math.clamp", "sqrt": "ti.sqrt", "exp": "ti.exp", "log": "ti.log", "abs": "ti.abs",
                 "maximum": "ti.max", "minimum": "ti.min", "max": "ti.max", "min": "ti.min", "dot": "u.dot(v)",
                 "cross": "u.cross(v)", "sin": "ti.sin", "cos": "ti.cos", "tan": "ti.tan", "floor": "ti.floor",
                 "where": "ti.select", "linalg": "v.norm()", "sum": "a loop", "array": "ti.Vector",
                 "sign": "ti.math.sign", "power": "**", "tanh": "ti.tanh"}
VECTOR_MAKERS = {"Vector", "vec2", "vec3", "vec4", "Matrix"}


def _is_taichi(fn):
    for d in fn.decorator_list:
        d = d.func if isinstance(d, ast.Call) else d
        name = d.attr if isinstance(d, ast.Attribute) else (d.id if isinstance(d, ast.Name) else None)
        if name in TAICHI_DECORATORS:
            return "kernel" if name == "kernel" else "func"
    return None


def _numpy_aliases(trees):
    names = {"np", "numpy"}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.asname or a.name for a in node.names if a.name == "numpy"}
    return names


def _is_static(loop):
    it = loop.iter
    return isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "static"


class _Traps(ast.NodeVisitor):
    """The traps of one @ti.func / @ti.kernel (a FunctionDef node)."""

    def __init__(self, fn, numpy, differentiated):
        self.fn, self.numpy, self.found = fn, numpy, []
        self.kernel = _is_taichi(fn) == "kernel"
        self.differentiated = self.kernel and fn.name in differentiated
        self.vectors = set()
        self.ints = {}                     # local name -> the int it starts as
        self.first = {}                    # local name -> the loop depth of its first assignment
        self.depth = 0                     # non-static for loops around the node
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                f = node.value.func
                if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)) in VECTOR_MAKERS:
                    self.vectors |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            if isinstance(node, ast.Attribute) and node.attr in ("dot", "norm", "cross", "normalized") \
                    and isinstance(node.value, ast.Name):
                self.vectors.add(node.value.id)
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                    and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int):
                self.vectors.add(node.value.id)

    def add(self, node, message):
        self.found.append((node.lineno, message))

    def visit_For(self, node):
        static = _is_static(node)
        self.depth += 0 if static else 1
        for t in ast.walk(node.target):
            if isinstance(t, ast.Name):
                self.first.setdefault(t.id, self.depth)
        for child in node.body + node.orelse:
            self.visit(child)
        self.depth -= 0 if static else 1

    def visit_Call(self, node):
        dotted = _dotted(node.func, {}) or ""
        head, _, rest = dotted.partition(".")
        if head in self.numpy and rest:
            name = rest.split(".")[0]
            use = NUMPY_INSTEAD.get(name, "the ti. or ti.math. function of the same name")
            self.add(node, f"np.{rest} does nothing inside a Taichi function: use {use}")
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        for v in node.values:
            sides = [v.left] + list(v.comparators) if isinstance(v, ast.Compare) else [v]
            vec = next((s for s in sides if self._vector(s)), None)
            if vec is not None:
                op = "and" if isinstance(node.op, ast.And) else "or"
                self.add(node, f"Python `{op}` on a Taichi vector (`{ast.unparse(vec)}`) does not give one boolean: "
                               "compare its components, or use (v > 0).all() / .any()")
                break
        self.generic_visit(node)

    def _vector(self, node):
        if isinstance(node, ast.Name):
            return node.id in self.vectors
        if isinstance(node, ast.BinOp):
            return self._vector(node.left) or self._vector(node.right)
        if isinstance(node, ast.UnaryOp):
            return self._vector(node.operand)
        return isinstance(node, ast.Call) and getattr(node.func, "attr", None) in VECTOR_MAKERS

    def visit_BinOp(self, node):
        if isinstance(node.op, ast.FloorDiv) and any(isinstance(s, ast.Constant) and isinstance(s.value, float)
                                                     for s in (node.left, node.right)):
            self.add(node, "`//` is integer (floor) division and rounds the result down: use `/`")
        self.generic_visit(node)

    def visit_Assign(self, node):
        for t in node.targets:
            if not isinstance(t, ast.Name):
                continue
            v = node.value
            if t.id not in self.first:
                self.first[t.id] = self.depth
                if isinstance(v, ast.Constant) and type(v.value) is int:
                    self.ints[t.id] = v.value
            elif t.id in self.ints and isinstance(v, ast.Constant) and isinstance(v.value, float):
                self._int_local(node, t.id, "=")
        self.generic_visit(node)

    def _int_local(self, node, name, op):
        n = self.ints.pop(name)
        self.add(node, f"`{name}` starts as the integer {n}: Taichi fixes a local variable's type at its first "
                       f"assignment, so `{name} {op} ...` is rounded to an integer; write {n}.0")

    def visit_AugAssign(self, node):
        t = node.target
        if isinstance(t, ast.Name):
            v = node.value
            if t.id in self.ints and not (isinstance(v, ast.Constant) and type(v.value) is int):
                self._int_local(node, t.id, _OPS.get(type(node.op), "op="))
            start = self.first.get(t.id)
            if self.differentiated and start is not None and self.depth > max(start, 1):
                self.add(node, f"`{t.id}` is a local variable accumulated in a loop of `{self.fn.name}`, which is "
                               "differentiated: Taichi's autodiff then needs the adstack (lecture 00). Add into a "
                               "field instead (`loss[None] += ...`), or keep the loop out of the differentiated kernel")
                start = None
                self.first[t.id] = self.depth     # once per variable
            elif self.kernel and start == 0 and self.depth >= 1:
                self.add(node, f"`{t.id}` is a local variable of the kernel, summed inside its parallel loop: every "
                               "thread has its own copy. Add into a field instead (`count[None] += ...`)")
                self.first[t.id] = self.depth
        self.generic_visit(node)


_OPS = {ast.Add: "+=", ast.Sub: "-=", ast.Mult: "*=", ast.Div: "/=", ast.Pow: "**="}


def parse(source):
    """The AST of a cell, with the line numbers of the cell (IPython's transform drops
    leading blank lines)."""
    tree = ast.parse(code(source))
    return ast.increment_lineno(tree, len(source) - len(source.lstrip("\n")))


def _trees(cells):
    out = []
    for index, source in cells:
        try:
            out.append((index, parse(source)))
        except SyntaxError:
            pass
    return out


def differentiated(cells):
    """Names of the functions a notebook differentiates: called inside `with ti.ad.Tape(...)`
    (directly, through Python functions, or passed as an argument to a function that holds a
    tape), or whose `.grad()` it calls."""
    trees = [t for _, t in _trees(cells)]
    defs = {n.name: n for t in trees for n in ast.walk(t) if isinstance(n, ast.FunctionDef)}

    def tapes(node):
        return [w for w in ast.walk(node) if isinstance(w, ast.With) and any(
            isinstance(i.context_expr, ast.Call) and (_dotted(i.context_expr.func, {}) or "").endswith("Tape")
            for i in w.items)]

    def called(nodes):
        return {n.func.id for x in nodes for n in ast.walk(x) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}

    found = set()
    for t in trees:
        for w in tapes(t):
            found |= called(w.body)
        for n in ast.walk(t):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "grad" \
                    and isinstance(n.func.value, ast.Name):
                found.add(n.func.value.id)
    holders = {name for name, d in defs.items() if tapes(d)}
    for t in trees:
        for n in ast.walk(t):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in holders:
                found |= {a.id for a in n.args if isinstance(a, ast.Name)}
    grew = True
    while grew:                     # Python functions run under a tape differentiate what they call
        more = set()
        for name in found:
            d = defs.get(name)
            if d is not None and not _is_taichi(d):
                more |= called(d.body)
        grew = bool(more - found)
        found |= more
    return found


def taichi_traps(cells, student=None, differentiated=()):
    """[(cell index, line, function name, message)] of the Taichi traps in the @ti.func and
    @ti.kernel definitions of `cells` ([(index, source)]); only the cells in `student`
    (default all) are reported."""
    trees = _trees(cells)
    numpy = _numpy_aliases(t for _, t in trees)
    out = []
    for index, tree in trees:
        if student is not None and index not in student:
            continue
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and _is_taichi(fn):
                v = _Traps(fn, numpy, set(differentiated))
                for child in fn.body:
                    v.visit(child)
                out += [(index, line, fn.name, msg) for line, msg in v.found]
    return out


def function_traps(fn, differentiated=False):
    """[(line in its cell, message)] of the traps in one live @ti.func / @ti.kernel (the
    feedback side: its source from `inspect`); [] where the source cannot be read."""
    import inspect
    import textwrap

    try:
        lines, start = inspect.getsourcelines(getattr(fn, "__wrapped__", fn))
    except (OSError, TypeError):
        return []
    found = taichi_traps([(0, textwrap.dedent("".join(lines)))],
                         differentiated={fn.__name__} if differentiated else ())
    return [(start + line - 1, msg) for _, line, _, msg in found]


def blame(checks, traps, sources):
    """Put each trap in front of the message of the checks that lost points and whose
    hidden test (`sources`: {check name: source}) uses the function it is in."""
    import re

    for c in checks:
        if c["points"] >= c["max_points"]:
            continue
        src = sources.get(c["name"], "")
        mine = [f"{msg} (cell {i}, line {line})" for i, line, fn, msg in traps if re.search(rf"\b{re.escape(fn)}\b", src)]
        if mine:
            c["message"] = "; ".join(dict.fromkeys(mine)) + ". " + c["message"]
    return checks
