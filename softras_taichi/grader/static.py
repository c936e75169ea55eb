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
            tree = ast.parse(code(source))
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
