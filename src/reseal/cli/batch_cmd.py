"""`reseal batch F`: generalize every machine of an answer file, in parallel, resumably."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from reseal.cli.options import add_allow_backing, allowed_backing
from reseal.cli.output import print_report
from reseal.errors import BadInput
from reseal.formatting import format_table, print_json, terminal_safe, to_jsonable
from reseal.pipeline.answerfile import AnswerFile, load_answer_file, settings_from_plan
from reseal.pipeline.answerrules import cluster_address_problem
from reseal.pipeline.batch import (
    BatchResult,
    MachineRecord,
    default_progress,
    default_state_dir,
    read_records,
    run_batch,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "batch", help="generalize every machine of an answer file (clones of a master, or targets)"
    )
    parser.add_argument("answer_file", type=Path, help="YAML answer file (docs/answer-files.md)")
    parser.add_argument("--jobs", "-j", type=int, metavar="N",
                        help="machines at once (default: batch.jobs, or up to 4 by CPU count)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan of every machine; make and change nothing")
    parser.add_argument("--state-dir", type=Path,
                        help="where the batch keeps its state, records and undo journals "
                             "(default: batch.state_dir, or OUTPUT/.reseal-batch)")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run the machines on the Dask cluster whose scheduler is ADDRESS "
                             "(tcp://HOST:8786; default: batch.cluster); needs "
                             "reseal[cluster] and the same image store on every worker")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON line per machine, then a JSON summary line")
    add_allow_backing(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise BadInput("--jobs must be at least 1")
    if args.cluster is not None:
        problem = cluster_address_problem(args.cluster)
        if problem:
            raise BadInput(f"--cluster: {problem}")
    answer = load_answer_file(args.answer_file)
    backing = allowed_backing(args)
    for warning in answer.warnings:
        print(f"warning: {terminal_safe(warning)}", file=sys.stderr)
    if args.dry_run:
        print_plan(answer, json_mode=args.json, allowed=backing)
        return 0
    state_dir = args.state_dir or default_state_dir(answer)
    progress = default_progress(len(answer.plans), json_mode=args.json)

    def emit(record: MachineRecord) -> None:
        if args.json:
            print(json.dumps(asdict(record)), flush=True)

    result = run_batch(answer, jobs=args.jobs, state_dir=state_dir, progress=progress,
                       on_record=emit, cluster=args.cluster, on_info=progress.info,
                       allowed_backing=backing)
    summary = summarize(answer, result)
    if args.json:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        print_summary(answer, result, summary)
    return 0 if summary["failed"] == 0 and summary["pending"] == 0 else 1


def summarize(answer: AnswerFile, result: BatchResult) -> dict[str, object]:
    """Counts over the whole batch (earlier runs included), from the records on disk."""
    latest: dict[str, dict[str, object]] = {}
    for record in read_records(result.state_dir):
        latest[str(record.get("machine"))] = record
    names = [plan.machine for plan in answer.plans]
    ok = sum(1 for n in names if latest.get(n, {}).get("status") == "ok")
    failed = sum(1 for n in names if latest.get(n, {}).get("status") == "failed")
    return {
        "machines": len(names),
        "ok": ok,
        "failed": failed,
        "pending": len(names) - ok - failed,
        "run_now": len(result.records),
        "already_done": len(result.skipped),
        "state_dir": str(result.state_dir),
    }


def print_summary(answer: AnswerFile, result: BatchResult, summary: dict[str, object]) -> None:
    latest: dict[str, dict[str, object]] = {}
    for record in read_records(result.state_dir):
        latest[str(record.get("machine"))] = record
    rows = []
    this_run = {r.machine for r in result.records}
    for plan in answer.plans:
        record = latest.get(plan.machine, {})
        identity = record.get("identity") or {}
        assert isinstance(identity, dict)
        rows.append((
            plan.machine,
            record.get("status", "pending"),
            "" if plan.machine in this_run else "earlier",
            identity.get("hostname") or identity.get("computer-name")
            or plan.request.hostname or "-",
            identity.get("machine-sid") or identity.get("machine-id") or "-",
            _size(record.get("bytes")),
            f"{record.get('seconds', 0):.1f}s" if record else "-",
            record.get("error") or "",
        ))
    print(format_table(("MACHINE", "STATUS", "RUN", "HOSTNAME", "SID / MACHINE-ID", "BYTES",
                        "TIME", "ERROR"), rows))
    print(f"\n{summary['ok']} ok, {summary['failed']} failed, {summary['pending']} pending "
          f"of {summary['machines']}; records: {result.state_dir / 'machines.jsonl'}")


def print_plan(answer: AnswerFile, *, json_mode: bool, allowed: tuple[Path, ...] = ()) -> None:
    from reseal.pipeline.runner import run_generalize, select_operations

    operations = {plan.machine: [op.name for op in select_operations(settings_from_plan(plan))
                                 if not answer.os or op.os.value == answer.os]
                  for plan in answer.plans}
    # The first machine's change list, planned against its source read-only: every machine
    # changes the same places, each with its own values.
    plan0 = answer.plans[0]
    source = plan0.clone.master if plan0.clone is not None else plan0.target
    file_plan = None
    if source is not None:
        settings = settings_from_plan(plan0)
        settings.allowed_backing = allowed
        file_plan = run_generalize(source, settings, dry_run=True).report
    if json_mode:
        print_json({"answer_file": str(answer.path), "os": answer.os, "batch": answer.batch,
                    "machines": [{"plan": plan, "operations": operations[plan.machine]}
                                 for plan in answer.plans],
                    "file_plan": {"machine": plan0.machine, "source": source,
                                  "report": file_plan}})
        return
    rows = []
    for plan in answer.plans:
        request = plan.request
        made_from = (f"{plan.clone.mode} of {plan.clone.master} -> {plan.clone.path}"
                     if plan.clone is not None else str(plan.target or "-"))
        rows.append((plan.machine, request.hostname or "-", request.machine_sid or "-",
                     request.machine_id or "-", "-" if request.seed is None else request.seed,
                     made_from))
    print("plan (dry run: nothing made or written)")
    print(format_table(("MACHINE", "HOSTNAME", "MACHINE SID", "MACHINE-ID", "SEED", "TARGET"),
                       rows))
    print(f"\noperations: {', '.join(operations[plan0.machine]) or '(none)'}")
    for name, options in plan0.options.items():
        print(f"options {name}: {json.dumps(to_jsonable(options))}")
    if plan0.drivers:
        print(f"drivers: {', '.join(str(d) for d in plan0.drivers)}")
    if plan0.domain is not None:
        password = plan0.domain.password.describe() if plan0.domain.password else "none"
        print(f"domain: {plan0.domain.name} ou={plan0.domain.ou or '-'} "
              f"account={plan0.domain.account or '-'} password={password}")
    if file_plan is not None:
        print(f"\n{plan0.machine}, planned on {source} (read only; the other machines change "
              "the same places with their own values):")
        print_report(file_plan)


def _size(value: object) -> str:
    if not isinstance(value, int) or value <= 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024  # type: ignore[assignment]
    return f"{value:.1f}TiB"
