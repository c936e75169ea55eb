"""A folder of submissions -> a gradebook that imports (and exports for Canvas, Moodle, Gradescope).

Each notebook is identified as an exercise from the metadata the generator writes (not
from its file name), graded in its own sandboxed process (`--jobs N` at once, one progress
line each), and its row written at once: the whole CSV is rewritten to a temporary file
next to it and renamed over it, so a crash loses nothing already graded and no reader
ever sees half a file.  Submissions never see the gradebook: it is written by this
process, outside every sandbox.

Columns, the same for every row: student, score, max_score, percent, one column per check
of the exercise (its points), error.
"""
import csv
import fnmatch
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .checks import fmt
from .grade import GraderError, grade_notebook
from .report import clip
from .spec import identify, read_notebook

FIXED = ["student", "score", "max_score", "percent"]
ROSTER_COLUMNS = ("file", "id", "name", "email", "sis_login", "section")


def _skip_dir(name):
    return name.startswith(".") or name in ("__pycache__", ".ipynb_checkpoints")


def find_submissions(folder, pattern="*.ipynb"):
    """[(student key, path)]: FOLDER/<key>.ipynb, or FOLDER/<key>/.../*.ipynb."""
    out = []
    for entry in sorted(os.listdir(folder)):
        full = os.path.join(folder, entry)
        if os.path.isfile(full) and fnmatch.fnmatch(entry, pattern):
            out.append((os.path.splitext(entry)[0], full))
        elif os.path.isdir(full) and not _skip_dir(entry):
            for root, dirs, files in os.walk(full):
                dirs[:] = sorted(d for d in dirs if not _skip_dir(d))
                for f in sorted(files):
                    if fnmatch.fnmatch(f, pattern):
                        out.append((entry, os.path.join(root, f)))
    return out


def read_roster(path):
    """{file: row} of a roster CSV with columns file, id (required) and name, email,
    sis_login, section (optional)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "file" not in cols or "id" not in cols:
            raise ValueError(f"{path}: a roster needs the columns 'file' and 'id' (and optionally "
                             f"name, email, sis_login, section); it has {', '.join(cols) or 'none'}")
        rows = {}
        for r in reader:
            r = {k.strip().lower(): (v or "").strip() for k, v in r.items() if k}
            if r.get("file"):
                rows[r["file"]] = r
    return rows


def roster_match(roster, key, path):
    """The roster row of a submission: its key (file stem or folder), its file name, or the
    longest roster entry its file name starts with (LMS downloads prefix the student)."""
    if not roster:
        return None
    name = os.path.basename(path)
    for k in (key, name, os.path.splitext(name)[0]):
        if k in roster:
            return roster[k]
    best = [f for f in roster if name.startswith(f) or key.startswith(f)]
    return roster[max(best, key=len)] if best else None


def write_csv_atomic(path, header, rows):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".grades-", suffix=".csv", dir=parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=header, restval="", extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Gradebook:
    """The rows of one exercise, rewritten atomically after every new row."""

    def __init__(self, path, exercise):
        self.path, self.exercise = path, exercise
        self.header = FIXED + [self.column(c) for c in exercise.checks] + ["error"]
        self.rows = {}
        self.lock = threading.Lock()

    @staticmethod
    def column(check):
        """A check's column: its points, or a free-text answer (a 0-point check)."""
        return f"{check.name} (for the instructor)" if check.for_instructor else check.name

    def add(self, student, report, error=""):
        row = {"student": student, "score": report["score"] if report else 0.0,
               "max_score": self.exercise.max_score, "error": error}
        row["percent"] = round(100.0 * row["score"] / row["max_score"], 1) if row["max_score"] else 0.0
        mine = {c.name: c for c in self.exercise.checks}
        for c in self.exercise.checks:
            row[self.column(c)] = "" if c.for_instructor else 0.0
        for c in (report or {}).get("checks", []):
            if c["name"] in mine:
                chk = mine[c["name"]]
                row[self.column(chk)] = c.get("answer", "") if chk.for_instructor else c["points"]
        with self.lock:
            old = self.rows.get(student)
            if old is not None and old["score"] >= row["score"]:
                old["error"] = "; ".join(x for x in (old["error"], "another notebook of this student scored "
                                                     f"{fmt(row['score'])}") if x)
            else:
                if old is not None:
                    row["error"] = "; ".join(x for x in (row["error"], "another notebook of this student scored "
                                                         f"{fmt(old['score'])}") if x)
                self.rows[student] = row
            if self.path:
                write_csv_atomic(self.path, self.header, [self.rows[k] for k in sorted(self.rows)])
        return row


def grade_folder(folder, exercises, references, csv_path, pattern="*.ipynb", jobs=1, roster=None,
                 exercise=None, log=print, json_reports=None):
    """Grade every submission in `folder` against `exercises` ({name: Exercise}) with
    `references` ({name: Reference}).  Returns (gradebooks {name: Gradebook},
    unmatched [(path, why)])."""
    subs = find_submissions(folder, pattern)
    if not subs:
        raise ValueError(f"no notebooks matching {pattern!r} in {folder}")
    jobs_list, unmatched = [], []
    for key, path in subs:
        try:
            nb = read_notebook(path)
        except ValueError as exc:
            unmatched.append((key, path, str(exc)))
            continue
        name = identify(nb, exercises)
        if name is None:
            unmatched.append((key, path, "it is none of the exercises (no exercise metadata, and its cell ids "
                                         "match no solution notebook)"))
        elif exercise and name != exercise:
            unmatched.append((key, path, f"it is exercise {name}, not {exercise}"))
        else:
            jobs_list.append((key, path, nb, name))
    names = sorted({n for _, _, _, n in jobs_list} | ({exercise} if exercise else set()))
    if not names and len(exercises) == 1:
        names = list(exercises)
    stem, ext = os.path.splitext(csv_path)
    books = {n: Gradebook(csv_path if len(names) == 1 else f"{stem}-{n}{ext or '.csv'}", exercises[n])
             for n in names}
    for ref in (references[n] for n in names):
        ref.start()

    def student_of(key, path):
        r = roster_match(roster, key, path)
        return r["id"] if r else key

    for key, path, why in unmatched:
        log(f"not graded: {path}: {why}")
        if len(books) == 1:
            next(iter(books.values())).add(student_of(key, path), None, f"not graded: {clip(why, 200)}")
    total = len(jobs_list)
    done = [0]
    lock = threading.Lock()

    def one(job):
        key, path, nb, name = job
        start = time.monotonic()
        try:
            report, error = grade_notebook(path, references[name], nb=nb), ""
        except GraderError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad submission must not stop the class
            report, error = None, f"{type(exc).__name__}: {exc}"
        if report and report.get("notes"):
            error = "; ".join(([error] if error else []) + report["notes"])[:500]
        row = books[name].add(student_of(key, path), report, error)
        if json_reports is not None:
            json_reports.setdefault(row["student"], {})[os.path.relpath(path, folder)] = report
        with lock:
            done[0] += 1
            log(f"[{done[0]}/{total}] {os.path.relpath(path, folder)} ({name}): "
                f"{fmt(row['score'])}/{fmt(row['max_score'])} in {time.monotonic() - start:.1f} s"
                + (f"  ({clip(error, 80)})" if error else ""))

    if jobs > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for f in [pool.submit(one, j) for j in jobs_list]:
                f.result()
    else:
        for j in jobs_list:
            one(j)
    return books, unmatched


# --------------------------------------------------------------------------- LMS exports

def read_gradebook(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not set(FIXED) <= set(rows[0]):
        raise ValueError(f"{path} is not a gradebook written by `softras-taichi grade` "
                         f"(columns {', '.join(FIXED)}, ..., error)")
    return rows


def _by_id(roster):
    return {r["id"]: r for r in (roster or {}).values()}


def export_lms(gradebook_rows, lms, out, assignment, roster=None):
    """Write `out` in the import layout of `lms` (canvas, moodle, gradescope); see
    docs/instructors.md for where each layout comes from."""
    people = _by_id(roster)
    max_score = gradebook_rows[0]["max_score"] if gradebook_rows else ""
    if lms == "canvas":
        col = assignment
        header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", col]
        rows = [{"Student": "Points Possible", col: max_score}]
        for r in gradebook_rows:
            p = people.get(r["student"], {})
            rows.append({"Student": p.get("name") or r["student"], "ID": p.get("id") or r["student"],
                         "SIS User ID": p.get("id", ""), "SIS Login ID": p.get("sis_login", ""),
                         "Section": p.get("section", ""), col: r["score"]})
    elif lms == "moodle":
        header = ["Email address", "ID number", assignment]
        rows = [{"Email address": people.get(r["student"], {}).get("email", ""), "ID number": r["student"],
                 assignment: r["score"]} for r in gradebook_rows]
    elif lms == "gradescope":
        header = ["Name", "SID", "Email", "Total Score"]
        rows = [{"Name": people.get(r["student"], {}).get("name", ""), "SID": r["student"],
                 "Email": people.get(r["student"], {}).get("email", ""), "Total Score": r["score"]}
                for r in gradebook_rows]
    else:
        raise ValueError(f"unknown LMS {lms!r}: canvas, moodle or gradescope")
    write_csv_atomic(out, header, rows)
    return len(rows)


def print_books(books, unmatched, out=sys.stdout):
    for name, book in books.items():
        rows = [book.rows[k] for k in sorted(book.rows)]
        w = max([len("student")] + [len(r["student"]) for r in rows])
        print(f"{name}: {len(rows)} students, out of {fmt(book.exercise.max_score)} points -> {book.path}", file=out)
        for r in rows:
            s = f"{fmt(r['score'])} / {fmt(r['max_score'])}"
            print(f"  {r['student']:<{w}}  {s:>13}  {r['percent']:>6.1f}%  {clip(r['error'], 60)}", file=out)
    if unmatched:
        print(f"{len(unmatched)} file(s) not graded:", file=out)
        for _, path, why in unmatched:
            print(f"  {path}: {why}", file=out)
