"""`microexp synth-dataset`: the paper's dataset layout (§3.4, Table 2: 7 subjects x 21 AUs, the EVK4 for 3 of
them) made through the real recording path: synthetic rig -> sensor topics over DDS -> recorder -> bags ->
dataset builder.

For each subject ``S01..S0n`` one ``microexp record --source synthetic`` session runs as a subprocess (the
core never imports rclpy), on a DDS domain of its own limited to localhost, so that other ROS graphs on the
machine cannot talk to it. Subjects ``S01..S0k`` (``--evk4-subjects``) are recorded with the EVK4, the
others with the DAVIS346 and the webcam only, as in the paper. Then :func:`microexp.learn.build.build_dataset`
turns every kept segment into a clip.

More data than the paper's one take per AU: ``--takes N`` records N sessions per subject, ``S01`` (trial 1
of every AU), ``S01-take2`` (trial 2), ...: the same synthetic person performing each AU again with a new
timing, intensity and sensor noise (``make_trial`` draws them from the trial number). The builder labels
every take with its subject, so leave-one-subject-out folds keep all takes of a subject together.

Folder ``OUT``::

    OUT/sessions/S01 ...        recording sessions (manifest.json, one bag per segment, summary.json)
    OUT/sessions/S01-take2 ...  further takes (``--takes``)
    OUT/logs/S01.log ...        each recording's output
    OUT/record_params.yaml      the ROS parameters given to the recordings (see below)
    OUT/dataset/                the clip dataset (index.json, clips/)
    OUT/synth_dataset.json      what was done and how long it took

Resumable: a session whose manifest is finished and holds a kept segment of every requested AU is kept;
an unfinished one is deleted and recorded again; the builder skips clips already in the index.

Recording parameters: the synthetic node publishes 5 ms event packets (``chunk_ms``; drivers batch 1-5 ms)
and the countdown is 10 s (5 s at ``--time-scale 0.5``). On a loaded machine the single recording process
(simulating the next clip while playing the current one) plays clips slower than real time; with the
default countdown a 2.5 s clip could still be playing when the protocol closed the segment, and 1 ms
packets at the EVK4's rate were lost under load. With these two settings every clip fits its segment.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from microexp.errors import MicroexpError, ParameterError

RECORD_PARAMS = """\
# ROS 2 parameters of the synthetic recording sessions made by `microexp synth-dataset`
synthetic:
  ros__parameters:
    chunk_ms: 5.0
protocol:
  ros__parameters:
    countdown_s: 10.0
"""


def subject_names(n: int) -> list[str]:
    return [f"S{i:02d}" for i in range(1, n + 1)]


def session_done(folder: Path, aus: list[str]) -> bool:
    """True when ``folder`` holds a finished session with a kept segment of every AU in ``aus``."""
    path = folder / "manifest.json"
    if not path.exists():
        return False
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    kept = {s["au"] for s in doc.get("segments", []) if s.get("status") == "kept" and s.get("bags")}
    return bool(doc.get("finished")) and set(aus) <= kept and (folder / "summary.json").exists()


def session_name(subject: str, take: int) -> str:
    """Folder of a subject's ``take`` (1-based): ``S01``, ``S01-take2``, ..."""
    return subject if take == 1 else f"{subject}-take{take}"


def record_session(
    folder: Path,
    subject: str,
    aus: list[str],
    sensors: str,
    seed: int,
    time_scale: float,
    params: Path,
    log: Path,
    timeout_s: float,
    take: int = 1,
) -> float:
    """Run one ``microexp record`` session as a subprocess; returns its wall time (s)."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(random.Random(f"{os.getpid()}-{subject}-{time.time()}").randint(1, 101))
    cmd = [
        sys.executable,
        "-m",
        "microexp.cli",
        "record",
        "--source",
        "synthetic",
        "--subject",
        subject,
        "--aus",
        ",".join(aus),
        "--out",
        str(folder),
        "--sensors",
        sensors,
        "--seed",
        str(seed),
        "--time-scale",
        str(time_scale),
        "--params",
        str(params),
        "--headless",
        "--first-trial",
        str(take),
        "--takes",
        "1",
    ]
    t0 = time.monotonic()
    with open(log, "w") as fh:
        fh.write(" ".join(cmd) + f"\n# ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}\n")
        fh.flush()
        try:
            res = subprocess.run(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise MicroexpError(f"recording {subject} took more than {timeout_s:.0f} s (log: {log})") from None
    if res.returncode != 0:
        raise MicroexpError(f"recording {subject} failed with exit code {res.returncode} (log: {log})")
    return time.monotonic() - t0


def make_synth_dataset(
    out,
    subjects: int = 7,
    evk4_subjects: int = 3,
    aus: str = "all",
    seed: int = 0,
    time_scale: float = 0.5,
    build: bool = True,
    progress: bool = True,
    retries: int = 1,
    takes: int = 1,
) -> dict:
    """Record the sessions that are missing, then build the dataset; returns the summary (also written to
    ``OUT/synth_dataset.json``)."""
    from microexp.protocol import parse_aus

    if subjects < 1 or not 0 <= evk4_subjects <= subjects:
        raise ParameterError(f"need subjects >= 1 and 0 <= evk4-subjects <= subjects (got {subjects}, {evk4_subjects})")
    if takes < 1:
        raise ParameterError(f"--takes must be >= 1 (got {takes})")
    au_list = parse_aus(aus)
    out = Path(out)
    for sub in ("sessions", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    params = out / "record_params.yaml"
    params.write_text(RECORD_PARAMS)
    summary_path = out / "synth_dataset.json"
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    sessions = previous.get("sessions", {})
    t_all = time.monotonic()
    names = subject_names(subjects)
    runs = [(take, i, subject) for take in range(1, takes + 1) for i, subject in enumerate(names)]
    folders = []
    for take, i, subject in runs:
        name = session_name(subject, take)
        folder = out / "sessions" / name
        folders.append(folder)
        sensors = "davis346,evk4,webcam" if i < evk4_subjects else "davis346,webcam"
        if session_done(folder, au_list):
            sessions.setdefault(name, {"sensors": sensors, "seconds": None})["status"] = "kept (already recorded)"
            continue
        for attempt in range(retries + 1):
            if folder.exists():
                shutil.rmtree(folder)  # an unfinished session of ours: the recorder wants an empty folder
            if progress:
                print(
                    f"synth-dataset: recording {subject} take {take} ({len(au_list)} AUs, {sensors})",
                    file=sys.stderr,
                    flush=True,
                )
            try:
                seconds = record_session(
                    folder,
                    subject,
                    au_list,
                    sensors,
                    seed,
                    time_scale,
                    params,
                    out / "logs" / f"{name}.log",
                    timeout_s=120.0 + 90.0 * len(au_list),
                    take=take,
                )
            except MicroexpError as exc:
                if attempt == retries:
                    raise
                print(f"synth-dataset: {exc}; trying again", file=sys.stderr, flush=True)
                continue
            if session_done(folder, au_list):
                break
            if attempt == retries:
                raise MicroexpError(
                    f"recording {name} ended without a kept segment of every AU (log: {out / 'logs' / (name + '.log')})"
                )
        sessions[name] = {
            "subject": subject,
            "take": take,
            "sensors": sensors,
            "seconds": round(seconds, 1),
            "status": "recorded",
            "seconds_per_au": round(seconds / len(au_list), 2),
        }
        _write(summary_path, {**previous, "sessions": sessions})
    record_s = time.monotonic() - t_all
    summary = {
        "out": str(out),
        "subjects": names,
        "evk4_subjects": names[:evk4_subjects],
        "aus": au_list,
        "takes": takes,
        "seed": seed,
        "time_scale": time_scale,
        "sessions": sessions,
        "record_seconds_this_run": round(record_s, 1),
    }
    if build:
        from microexp.learn.build import BuildOptions, build_dataset

        t0 = time.monotonic()
        built = build_dataset(folders, out / "dataset", BuildOptions(), progress=progress)
        summary["dataset"] = built
        summary["build_seconds_this_run"] = round(time.monotonic() - t0, 1)
        summary["incomplete_clips"] = incomplete_clips(out / "dataset")
    summary["total_seconds_this_run"] = round(time.monotonic() - t_all, 1)
    _write(summary_path, summary)
    return summary


def incomplete_clips(dataset) -> list[dict]:
    """Clips whose event streams lost packets or do not cover the synthetic clip's 2.5 s (within 0.2 s)."""
    from microexp.learn.dataset import ClipDataset

    bad = []
    for c in ClipDataset(dataset).clips:
        for s, info in c["sensors"].items():
            if "span_s" in info and (info["seq_missing"] > 0 or info["span_s"] < 2.3):
                bad.append({"clip": c["id"], "sensor": s, "span_s": info["span_s"], "seq_missing": info["seq_missing"]})
    return bad


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (sessions/, logs/, dataset/)")
    parser.add_argument("--subjects", type=int, default=7, help="number of synthetic subjects S01..")
    parser.add_argument("--evk4-subjects", type=int, default=3, help="how many of them (the first) also have the EVK4")
    parser.add_argument("--aus", default="all", help="Action Units, e.g. AU2,AU12 (default: the 21 of Table 1)")
    parser.add_argument(
        "--takes",
        type=int,
        default=1,
        help="takes of every AU per subject (the paper: 1); take k is recorded as session S0x-take<k>",
    )
    parser.add_argument("--seed", type=int, default=0, help="synthetic rig seed")
    parser.add_argument("--time-scale", type=float, default=0.5, help="protocol phase scale of the recordings")
    parser.add_argument("--no-build", action="store_true", help="record only; build later with `microexp dataset`")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    summary = make_synth_dataset(
        args.out,
        subjects=args.subjects,
        evk4_subjects=args.evk4_subjects,
        aus=args.aus,
        seed=args.seed,
        time_scale=args.time_scale,
        build=not args.no_build,
        takes=args.takes,
        progress=not args.quiet,
    )
    print(json.dumps(summary), flush=True)
    return 0
