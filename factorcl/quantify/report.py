"""What ``factorcl quantify`` shows and writes: the table, ``quantify.json`` and the bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fileio import atomic_write
from ..jsonio import write_json
from .pid import PARTS, PID

__all__ = ["format_table", "plot_pid", "write_report"]

NAMES = {"R": "redundancy R", "U1": "unique U1", "U2": "unique U2", "S": "synergy S"}


def format_table(pid: PID, paper: dict[str, Any] | None = None) -> str:
    """R, U1, U2, S in bits and as a share of I(X1, X2; Y), with intervals; the chapter's terms beside them."""
    shares = pid.shares()
    ci = pid.ci
    lines = [f"PID of I(X1,X2;Y) ({pid.method.upper()}, bits)"]
    head = f"{'part':<14}{'bits':>8}{'share':>8}"
    if ci:
        head += f"{'interval (bits)':>20}"
    lines.append(head)
    for k in PARTS:
        row = f"{NAMES[k]:<14}{getattr(pid, k):>8.3f}{100 * shares[k]:>7.1f}%"
        if ci:
            lo, hi = ci[k]
            row += f"{f'[{lo:.3f}, {hi:.3f}]':>20}"
        lines.append(row)
    total = f"{'total':<14}{pid.total:>8.3f}{100.0 if pid.total > 0 else 0.0:>7.1f}%"
    if ci:
        lo, hi = ci["total"]
        total += f"{f'[{lo:.3f}, {hi:.3f}]':>20}"
    lines.append(total)
    if "H(Y)" in pid.info:
        lines.append(f"H(Y) = {pid.info['H(Y)']:.3f} bits; {pid.info.get('samples', '?')} samples")
    if "discretization" in pid.info:
        d = pid.info["discretization"]
        lines.append(
            f"discretised: x1 {d['x1']}, x2 {d['x2']}; plug-in bias of the total about "
            f"{pid.info['plugin_bias_bits']:.3f} bits (Miller-Madow)"
        )
    if pid.ci:
        lines.append(f"intervals: basic bootstrap, {pid.info.get('bootstrap', {}).get('draws', '?')} draws")
    if paper:
        lines.append("")
        lines.append(f"The FactorCL chapter's terms ({paper.get('estimator', 'I_NCE')}, bits)")
        lines.append(f"  S  = I(X1;X2;Y) = {paper['I(X1;X2;Y)']:.3f}   (= R - S_PID: redundancy net of synergy)")
        lines.append(f"  U1 = I(X1;Y|X2) = {paper['I(X1;Y|X2)']:.3f}   (= U1 + S_PID)")
        lines.append(f"  U2 = I(X2;Y|X1) = {paper['I(X2;Y|X1)']:.3f}   (= U2 + S_PID)")
        lines.append(f"  I(X1,X2;Y)      = {paper['I(X1,X2;Y)']:.3f}")
    return "\n".join(lines)


def plot_pid(pid: PID, path: str | Path, title: str = "", paper: dict[str, Any] | None = None) -> Path:
    """A bar chart of R, U1, U2, S in bits (with interval whiskers), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    xs = range(len(PARTS))
    values = [getattr(pid, k) for k in PARTS]
    err = None
    if pid.ci:
        err = [
            [max(v - pid.ci[k][0], 0.0) for k, v in zip(PARTS, values)],
            [max(pid.ci[k][1] - v, 0.0) for k, v in zip(PARTS, values)],
        ]
    width = 0.38 if paper else 0.6
    ax.bar([x - (width / 2 if paper else 0) for x in xs], values, width, yerr=err, capsize=4, label="PID")
    if paper:  # the chapter has no synergy term: its three bars stand beside R, U1, U2
        ax.bar(
            [x + width / 2 for x in range(3)],
            [paper["I(X1;X2;Y)"], paper["I(X1;Y|X2)"], paper["I(X2;Y|X1)"]],
            width,
            label="chapter: I(X1;X2;Y), I(X1;Y|X2), I(X2;Y|X1) (I_NCE)",
            alpha=0.7,
        )
        ax.legend(fontsize=8)
    ax.set_xticks(list(xs), [NAMES[k] for k in PARTS])
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel("bits")
    ax.set_title(title or f"PID ({pid.method.upper()}): I(X1,X2;Y) = {pid.total:.3f} bits")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return path


def write_report(out_dir: Path, record: dict[str, Any], pid: PID, paper: dict[str, Any] | None) -> dict[str, Path]:
    """``quantify.json`` and ``quantify.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(out_dir / "quantify.json", record)
    png = plot_pid(pid, out_dir / "quantify.png", title=record.get("title", ""), paper=paper)
    return {"json": json_path, "png": png}
