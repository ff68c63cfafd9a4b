"""mfc's safetensors -> GGUF converter against llama.cpp's `convert_hf_to_gguf.py`.

The reference is the converter in llama-cpp-python 0.3.36's source package (fetched once
into $MFC_CACHE/reference with pip). Both convert the same Hugging Face directories to
F16, each run in its own process, alternating, best wall time of --repeat runs; peak RSS
is the process's own ru_maxrss. Also reported: how many output tensors are byte-identical
between the two files. Targets: time ratio <= 1.0, peak RSS ratio <= 0.5.

(The reference identifies a BPE tokenizer by hashing its encoding of a fixed text, so it
refuses the locally trained tiny byte-level BPE and WordPiece tokenizers; tiny-llama's
SentencePiece one it accepts.)

    .venv/bin/python bench/convert.py [--repeat 3] [--models all-MiniLM-L6-v2,smollm2-hf]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))
MODELS = CACHE / "models"
VERSION = "0.3.36"
REFERENCE = CACHE / "reference" / f"llama.cpp-{VERSION}"
MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
DEFAULT_MODELS = ("all-MiniLM-L6-v2", "smollm2-hf", "tiny-llama")
TARGET_TIME, TARGET_RSS = 1.0, 0.5


def reference_converter() -> Path:
    """convert_hf_to_gguf.py (with its conversion/ and gguf-py/) from the sdist, once."""
    script = REFERENCE / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    downloads = CACHE / "reference"
    downloads.mkdir(parents=True, exist_ok=True)
    sdist = downloads / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-q",
                "-d",
                str(downloads),
                f"llama-cpp-python=={VERSION}",
            ],
            check=True,
        )
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    tmp = Path(tempfile.mkdtemp(prefix=REFERENCE.name + ".", dir=downloads))
    try:
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                rel = member.name[len(prefix) :] if member.name.startswith(prefix) else ""
                if member.isfile() and rel.startswith(MEMBERS):
                    member.name = rel
                    tar.extract(member, tmp, filter="data")
        tmp.rename(REFERENCE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return script


@dataclass
class Run:
    seconds: float
    rss: int  # bytes


def measure(cmd: list[str], cwd: Path) -> Run:
    """Wall time and peak RSS of one child process (its own, from wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode(errors='replace')[-2000:]}")
    return Run(seconds, usage.ru_maxrss * 1024)


COMPARE = """
import sys
from gguf import GGUFReader
a, b = ({t.name: (int(t.tensor_type), t.data.tobytes()) for t in GGUFReader(p).tensors}
        for p in sys.argv[1:3])
print(sum(1 for n in a if a[n] == b.get(n)), max(len(a), len(b)))
"""


def identical_tensors(ours: Path, theirs: Path) -> tuple[int, int]:
    """(byte-identical tensors, tensors), counted in a child so this process stays small:
    a child's ru_maxrss starts from its parent's resident size at fork."""
    out = subprocess.run(
        [sys.executable, "-c", COMPARE, str(ours), str(theirs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    args = parser.parse_args()
    script = reference_converter()
    env_python = sys.executable
    rows = []
    with tempfile.TemporaryDirectory(prefix="mfc-bench-convert-") as tmp_dir:
        tmp = Path(tmp_dir)
        for name in args.models.split(","):
            src = MODELS / name
            if not (src / "config.json").is_file():
                raise SystemExit(f"{src} is missing: run `make fixtures`")
            ours_out, ref_out = tmp / f"{name}.mfc.gguf", tmp / f"{name}.ref.gguf"
            ours_cmd = [
                env_python,
                "-c",
                "from toolchain.cli import main; main()",
                "convert",
                str(src),
                str(ours_out),
                "--outtype",
                "f16",
            ]
            ref_cmd = [
                env_python,
                str(script),
                str(src),
                "--outtype",
                "f16",
                "--outfile",
                str(ref_out),
            ]
            ours_runs, ref_runs = [], []
            for _ in range(args.repeat):
                ours_runs.append(measure(ours_cmd, ROOT))
                ref_runs.append(measure(ref_cmd, script.parent))
            same, total = identical_tensors(ours_out, ref_out)
            rows.append(
                (
                    name,
                    min(r.seconds for r in ours_runs),
                    min(r.seconds for r in ref_runs),
                    max(r.rss for r in ours_runs),
                    max(r.rss for r in ref_runs),
                    same,
                    total,
                )
            )
    print(
        f"{'model':<20} {'mfc s':>7} {'ref s':>7} {'time':>6} {'mfc MiB':>8} {'ref MiB':>8} "
        f"{'rss':>6}  identical tensors"
    )
    ok = True
    for name, ts, tr, rs, rr, same, total in rows:
        ok &= ts / tr <= TARGET_TIME and rs / rr <= TARGET_RSS
        print(
            f"{name:<20} {ts:7.2f} {tr:7.2f} {ts / tr:6.2f} {rs / 2**20:8.0f} "
            f"{rr / 2**20:8.0f} {rs / rr:6.2f}  {same}/{total}"
        )
    print(f"targets (time <= {TARGET_TIME}, rss <= {TARGET_RSS}): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
