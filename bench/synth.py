"""Synth and test wall times.

- `make synth` (subprocess, warm venv: the Makefile's install stamps already exist), wall time;
- the in-process synth of each profile as the tests do it (tests/stacks/conftest.py `synthesize`):
  jsii/CDK import, each stack's construction (Network, Data, Training, Monitoring), then
  `app.synth()` with the cdk-nag packs, in a fresh subprocess so the import cost is counted once;
- `make test` wall time: opt-in (`--with-make-test`, several minutes); otherwise the last measured
  value is carried over from bench/results/synth.json with its date.

    python -m bench.synth [--with-make-test] [--profiles dev,prod]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from . import common

TARGET_MAKE_SYNTH_SECONDS = 30.0


def _stamps_present() -> dict:
    venv = common.REPO / ".venv"
    return {name: (venv / name).exists() for name in (".created", ".synth-deps", ".dev-deps")} | {
        "node_modules/.installed": (common.REPO / "node_modules" / ".installed").exists()}


def time_make(target: str, timeout: float) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(["make", target], cwd=common.REPO, capture_output=True, text=True, timeout=timeout)
    secs = time.perf_counter() - t0
    tail = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return {"target": target, "seconds": secs, "exit_code": proc.returncode, "last_line": tail[-1] if tail else "",
            "date_utc": common.now()}


def inproc_child(profile: str) -> dict:
    """Runs in a fresh process: time import, each stack's construction, and app.synth()."""
    t0 = time.perf_counter()
    import aws_cdk as cdk

    import stacks.platform as platform_mod
    from stacks.config import load_config

    t_import = time.perf_counter() - t0
    context = json.loads((common.REPO / "cdk.json").read_text())["context"]
    per_stack: dict[str, float] = {}
    for attr in ("NetworkStack", "DataStack", "TrainingStack", "MonitoringStack"):
        cls = getattr(platform_mod, attr)

        def timed(*a, _cls=cls, _name=attr, **kw):
            t = time.perf_counter()
            obj = _cls(*a, **kw)
            per_stack[_name.replace("Stack", "")] = time.perf_counter() - t
            return obj

        setattr(platform_mod, attr, timed)
    t1 = time.perf_counter()
    config = load_config({**context, "profile": profile})
    app = cdk.App(context={k: v for k, v in context.items() if k.startswith("@aws-cdk")})
    for key, value in platform_mod.offline_az_context(config).items():
        app.node.set_context(key, value)
    platform = platform_mod.build_platform(app, config)
    t_build = time.perf_counter() - t1
    t2 = time.perf_counter()
    platform_mod.add_compliance_checks(app, config)
    assembly = app.synth()
    t_synth = time.perf_counter() - t2
    resources = {}
    for stack in platform.stacks:
        tpl = assembly.get_stack_by_name(stack.stack_name).template
        resources[stack.stack_name] = len(tpl.get("Resources", {}))
    return {"profile": profile, "import_seconds": t_import, "construct_seconds": per_stack,
            "build_platform_seconds": t_build, "nag_and_synth_seconds": t_synth,
            "total_seconds": time.perf_counter() - t0, "resources": resources}


def time_inproc(profile: str, timeout: float) -> dict:
    t0 = time.perf_counter()
    env = common.child_env(os.cpu_count() or 1, {"JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
                                                 "CDK_DISABLE_VERSION_CHECK": "true"})
    env["PATH"] = os.pathsep.join([str(common.REPO / ".venv" / "bin"), env.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-m", "bench.synth", "--inproc-child", profile], cwd=common.REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"in-process synth of {profile} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - t0
    return out


def run(*, profiles=("dev", "prod"), with_make_test: bool = False, timeout: float = 1800) -> dict:
    machine = common.machine_info()
    stamps = _stamps_present()
    print("[synth] make synth ...", flush=True)
    make_synth = time_make("synth", timeout)
    # make synth needs only these (the .dev-deps stamp is for make test)
    make_synth["warm_venv"] = all(stamps[k] for k in (".created", ".synth-deps", "node_modules/.installed"))
    make_synth["install_stamps"] = stamps
    inproc = []
    for p in profiles:
        print(f"[synth] in-process synth, profile {p} ...", flush=True)
        inproc.append(time_inproc(p, timeout))
    previous = common.read_result("synth") or {}
    if with_make_test:
        print("[synth] make test (several minutes) ...", flush=True)
        make_test = {**time_make("test", 3 * 3600), "measured_this_run": True}
    else:
        make_test = {**(previous.get("make_test") or {}), "measured_this_run": False}
        if not make_test.get("seconds"):
            make_test["note"] = "not measured yet: run python -m bench --with-make-test"
    machine["loadavg_end"] = common.loadavg()
    return {
        "benchmark": "synth",
        "machine": machine,
        "note": common.shared_machine_note(machine["loadavg_start"], machine["loadavg_end"], machine["cores"]),
        "make_synth": make_synth,
        "make_synth_target_seconds": TARGET_MAKE_SYNTH_SECONDS,
        "in_process": inproc,
        "make_test": make_test,
    }


def report(r: dict) -> str:
    ms, mt = r["make_synth"], r["make_test"]
    rows = [["make synth (warm venv)" if ms.get("warm_venv") else "make synth (venv NOT warm)",
             common.fmt_num(ms["seconds"], 1) + " s",
             f"exit {ms['exit_code']}; target < {r['make_synth_target_seconds']:g} s"]]
    for p in r["in_process"]:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in p["construct_seconds"].items())
        rows.append([f"in-process synth, {p['profile']}", common.fmt_num(p["total_seconds"], 1) + " s",
                     f"import {p['import_seconds']:.1f} s; construct {parts} s; nag + synth "
                     f"{p['nag_and_synth_seconds']:.1f} s"])
    if mt.get("seconds"):
        when = "this run" if mt.get("measured_this_run") else f"carried over, measured {mt.get('date_utc')}"
        rows.append(["make test", common.fmt_num(mt["seconds"], 0) + " s",
                     f"exit {mt.get('exit_code')}; {when}; {mt.get('last_line', '')}"])
    else:
        rows.append(["make test", "not measured", "python -m bench --with-make-test"])
    out = common.table(["", "wall time", "details"], rows, "Synth and test wall times")
    if r.get("note"):
        out += f"\nnote: {r['note']}"
    return out


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--with-make-test", action="store_true", help="also time `make test` (several minutes)")
    p.add_argument("--profiles", default="dev,prod", help="profiles for the in-process synth")
    return p


def main(args: argparse.Namespace) -> dict:
    r = run(profiles=tuple(x for x in args.profiles.split(",") if x), with_make_test=args.with_make_test)
    print(report(r), flush=True)
    path = common.write_result("synth", r)
    print(f"[synth] wrote {path.relative_to(common.REPO)}", flush=True)
    return r


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--inproc-child":
        print(json.dumps(inproc_child(sys.argv[2])))
    else:
        main(build_parser().parse_args())
