"""Plain-text tables of grade reports, for the console and the student's `summary()`."""
from .checks import fmt


def clip(text, n):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def format_table(report, width=100, details=True):
    """A plain-text table of a report: one line per check and the total, then (details)
    the full message of every check that is not fully right."""
    checks = report["checks"]
    w = max([len("check")] + [len(c["name"]) for c in checks])
    w = min(w, 40)
    lines = [f"{'check':<{w}}  {'points':>11}  message", f"{'-' * w}  {'-' * 11}  {'-' * 20}"]
    for c in checks:
        pts = f"{fmt(c['points'])} / {fmt(c['max_points'])}"
        lines.append(f"{clip(c['name'], w):<{w}}  {pts:>11}  {clip(c['message'], max(20, width - w - 15))}")
    pct = 100.0 * report["score"] / report["max_score"] if report["max_score"] else 0.0
    total = f"{fmt(report['score'])} / {fmt(report['max_score'])}"
    lines += [f"{'-' * w}  {'-' * 11}", f"{'total':<{w}}  {total:>11}  ({pct:.1f} %)"]
    wrong = [c for c in checks if c["message"] != "ok"]
    if details and wrong:
        lines.append("\nWhat to fix:")
        for c in wrong:
            lines.append(f"- {c['name']} ({fmt(c['points'])}/{fmt(c['max_points'])}): {c['message']}")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
