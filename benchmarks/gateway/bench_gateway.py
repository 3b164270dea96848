"""Gateway benchmark: the latency Podium's gateway adds, next to LiteLLM's proxy, in one run.

Run through ``benchmarks/run.sh gateway`` (``--quick`` for a smoke run), which builds the
``.venv-bench-litellm`` venv with the pinned LiteLLM proxy. One process tree, one run:

1. ``upstream.py``, a zero-latency OpenAI-compatible server, in its own process;
2. the direct baseline: every load phase sent straight to the upstream;
3. each gateway in turn, never two at once (LiteLLM, then Podium): started with its own command
   line over the upstream, the same load phases through it, its memory sampled after 10k, 50k
   and 100k requests, then stopped.

"Added latency" is a gateway's percentile minus the direct percentile of the same phase. A
gateway that does not get ready (Podium before its ``/v1`` exists) is skipped with the reason.
The method and the settings of both gateways are in ``benchmarks/README.md``, "Gateway".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Sibling modules: importable once this folder is on the path.
from loadgen import (
    DEFAULT_BODY,
    Phase,
    Target,
    closed_loop,
    install_uvloop,
    open_loop,
    sequential,
)
from processes import Server, base_env, cpu_seconds, free_port, http_get, log, memory
from report import markdown, rows

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG_UPSTREAM = "http://127.0.0.1:18999/v1"
"""The upstream's address as written in ``litellm.yaml`` and ``podium.yaml``."""
GATEWAYS = ("litellm", "podium")


# -- what a run does ----------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The phases every target goes through, and their sizes."""

    warmup: int = 500
    """Sequential requests before anything is measured (and after start-up)."""
    unloaded: int = 2_000
    """Sequential requests of the unloaded row."""
    unloaded_stream: int = 500
    """Sequential ``stream: true`` requests of the unloaded streaming row."""
    rates: tuple[float, ...] = (100, 250, 500, 1_000)
    """Open-loop arrival rates, requests a second."""
    open_seconds: float = 15.0
    """Seconds of each open-loop phase."""
    closed_concurrency: tuple[int, ...] = (16, 64)
    """Connections of each closed-loop phase; the best one with < 1% errors is the max RPS."""
    closed_seconds: float = 10.0
    """Seconds of each closed-loop phase."""
    memory_requests: int = 100_000
    """Requests a gateway must have served at the last memory sample."""
    memory_marks: tuple[float, ...] = (0.1, 0.5, 1.0)
    """Memory samples at these fractions of ``memory_requests`` (10k, 50k, 100k)."""
    soak_concurrency: int = 32
    """Connections of the closed loop that tops the count up to ``memory_requests``."""
    soak_max_seconds: float = 1_800.0
    """The top-up stops after this long whatever the count (a slow gateway)."""
    pause: float = 1.0
    """Before each loaded phase, the upstream must see no call and the gateway use < 5% of a CPU
    for this long, so that an overloaded gateway's backlog does not spill into the next phase."""
    settle_max_seconds: float = 60.0
    """...but the next phase starts after this long whatever the upstream sees."""
    drain: float = 10.0
    """Open loop: seconds after the last scheduled request before stragglers time out."""
    max_connections: int = 256
    """Open loop: connections at most (more requests wait for one, and that wait counts)."""

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            warmup=200,
            unloaded=300,
            unloaded_stream=100,
            rates=(100, 500, 1_000),
            open_seconds=3.0,
            closed_concurrency=(32,),
            closed_seconds=3.0,
            memory_requests=5_000,
            soak_max_seconds=120.0,
            pause=0.5,
            drain=5.0,
        )

    @property
    def marks(self) -> tuple[int, ...]:
        return tuple(round(self.memory_requests * f) for f in self.memory_marks)


def render_config(source: Path, upstream: str, directory: Path) -> Path:
    """A copy of ``source`` pointing at ``upstream`` instead of :data:`CONFIG_UPSTREAM`."""
    text = source.read_text()
    if CONFIG_UPSTREAM not in text:
        raise SystemExit(f"{source} must name the upstream as {CONFIG_UPSTREAM}")
    target = directory / source.name
    target.write_text(text.replace(CONFIG_UPSTREAM, upstream))
    return target


# -- gateways -----------------------------------------------------------------------------


@dataclass
class Gateway:
    """How to start one gateway and talk to it."""

    name: str
    server: Server
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/models"


def litellm_gateway(
    args: argparse.Namespace, upstream: str, work: Path, cpus: set[int] | None
) -> Gateway:
    port = free_port()
    token = "sk-bench-" + secrets.token_urlsafe(24)
    config = render_config(HERE / "litellm.yaml", upstream, work)
    env = base_env() | {
        "LITELLM_MASTER_KEY": token,
        "BENCH_KEY": "sk-bench-upstream",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",  # do not read a .env file
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price list at start-up
    }
    argv = [args.litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1"]
    home = work / "litellm"
    home.mkdir()
    server = Server("litellm", argv, env, home, work / "litellm.log", cpus)
    return Gateway("litellm", server, port, token)


def podium_gateway(
    args: argparse.Namespace, upstream: str, work: Path, cpus: set[int] | None
) -> Gateway:
    port = free_port()
    token = secrets.token_urlsafe(24)
    config = render_config(HERE / "podium.yaml", upstream, work)
    home = work / "podium-home"
    env = base_env() | {
        "PODIUM_ADMIN_TOKEN": token,
        "BENCH_KEY": "sk-bench-upstream",
        "PODIUM_HOME": str(home),
    }
    argv = [args.podium, "serve", "--config", str(config), "--host", "127.0.0.1"]
    argv += ["--port", str(port)]
    if args.podium_db:
        argv += ["--db", args.podium_db]
    server = Server("podium", argv, env, ROOT, work / "podium.log", cpus)
    return Gateway("podium", server, port, token)


# -- measuring one target -----------------------------------------------------------------


@dataclass
class MemoryProbe:
    """Counts the requests a gateway served; samples its memory as the count passes marks."""

    pid: int
    marks: Sequence[int]
    served: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    _next: int = 0

    def sample(self, label: str, mark: int | None = None) -> None:
        entry = {"label": label, "mark": mark, "requests": self.served, **memory(self.pid)}
        self.samples.append(entry)
        log(
            f"  memory {label}: RSS {entry['rss_mib']:.1f} MiB, PSS {entry['pss_mib']:.1f} MiB "
            f"({entry['processes']} process(es), {self.served:,} requests)"
        )

    def done(self, n: int) -> None:
        self.served += n
        while self._next < len(self.marks) and self.served >= self.marks[self._next]:
            mark = self.marks[self._next]
            self.sample(f"after {mark:,} requests", mark)
            self._next += 1


def _body(stream: bool) -> dict[str, Any]:
    return dict(DEFAULT_BODY, stream=True) if stream else dict(DEFAULT_BODY)


def upstream_count(upstream: str) -> int:
    """How many chat completions the upstream has served."""
    status, body = http_get(upstream.removesuffix("/v1") + "/_stats")
    if status != 200:
        raise RuntimeError(f"upstream stats: HTTP {status}")
    return int(json.loads(body)["completions"])


async def settle(upstream: str, plan: Plan, pid: int | None) -> None:
    """Wait until the target is idle: for ``plan.pause`` seconds, the upstream has seen no call
    and the gateway process ``pid`` (if any) has used less than 5% of a CPU."""
    began = quiet_since = time.perf_counter()
    calls, cpu = upstream_count(upstream), cpu_seconds(pid) if pid else 0.0
    while True:
        await asyncio.sleep(0.1)
        at = time.perf_counter()
        now_calls, now_cpu = upstream_count(upstream), cpu_seconds(pid) if pid else 0.0
        if now_calls != calls or now_cpu - cpu > 0.05 * 0.1:
            quiet_since = at
        calls, cpu = now_calls, now_cpu
        if at - quiet_since >= plan.pause:
            if at - began > plan.pause + 1.0:
                log(f"  (waited {at - began:.1f} s for the target to be idle)")
            return
        if at - began > plan.settle_max_seconds:
            log(f"  still busy after {plan.settle_max_seconds:.0f} s; going on")
            return


async def measure(
    name: str, url: str, token: str | None, plan: Plan, upstream: str, probe: MemoryProbe | None
) -> dict[str, Any]:
    """Every load phase of ``plan`` against ``url``; the memory top-up when ``probe`` is set.

    Before each loaded phase the target is left to finish what it still has in flight. For a
    gateway (``probe`` set), each phase also records the CPU time the gateway spent per request,
    which other processes on the machine disturb far less than its latency.
    """
    target = Target.post_json(url, _body(False), token=token)
    streaming = Target.post_json(url, _body(True), token=token)
    on_done = probe.done if probe is not None else None
    pid = probe.pid if probe is not None else None
    phases: dict[str, Phase] = {}
    cpu_ms: dict[str, float] = {}

    async def run_phase(key: str, load: Awaitable[Phase], *, idle_first: bool = True) -> Phase:
        if idle_first:
            await settle(upstream, plan, pid)
        cpu = cpu_seconds(pid) if pid else 0.0
        phase = await load
        if pid and phase.sent:
            cpu_ms[key] = (cpu_seconds(pid) - cpu) / phase.sent * 1e3
        phases[key] = phase
        extra = f", gateway CPU {cpu_ms[key]:.2f} ms/request" if key in cpu_ms else ""
        log(f"  [{name}] {phase.line()}{extra}")
        return phase

    began = time.perf_counter()
    warm = await sequential(target, plan.warmup, name="warm-up", on_done=on_done)
    warm_stream = await sequential(
        streaming, max(10, plan.warmup // 10), name="warm-up, stream", on_done=on_done
    )
    if warm.ok == 0 or warm_stream.ok == 0:
        failed = warm if warm.ok == 0 else warm_stream
        return {"error": f"{failed.name} failed: {dict(failed.errors)}"}
    if probe is not None:
        probe.sample("after warm-up")
    await run_phase(
        "unloaded",
        sequential(target, plan.unloaded, name="unloaded", on_done=on_done),
        idle_first=False,
    )
    await run_phase(
        "unloaded_stream",
        sequential(streaming, plan.unloaded_stream, name="unloaded, stream", on_done=on_done),
        idle_first=False,
    )
    for rate in plan.rates:
        load = open_loop(
            target,
            rate,
            plan.open_seconds,
            max_connections=plan.max_connections,
            drain=plan.drain,
            on_done=on_done,
        )
        await run_phase(f"open_{rate:g}", load)
    for concurrency in plan.closed_concurrency:
        load = closed_loop(target, concurrency, plan.closed_seconds, on_done=on_done)
        await run_phase(f"closed_{concurrency}", load)
    if probe is not None and probe.served < plan.memory_requests:
        load = closed_loop(
            target,
            plan.soak_concurrency,
            plan.soak_max_seconds,
            name="memory top-up",
            on_done=on_done,
            stop_after=plan.memory_requests - probe.served,
        )
        await run_phase("soak", load)
    if probe is not None:
        probe.sample("at the end")
    closed = [p for k, p in phases.items() if k.startswith("closed_") and p.error_rate < 0.01]
    best = max(closed, key=lambda p: p.achieved_rps, default=None)
    reports = {
        k: p.report() | {"gateway_cpu_ms_per_request": cpu_ms.get(k)} for k, p in phases.items()
    }
    result: dict[str, Any] = {
        "seconds": round(time.perf_counter() - began, 1),
        "requests_ok": warm.ok + warm_stream.ok + sum(p.ok for p in phases.values()),
        "phases": reports,
        "max_sustained_rps": round(best.achieved_rps, 1) if best else None,
        "max_sustained_at_concurrency": best.concurrency if best else None,
    }
    if probe is not None:
        result["memory"] = probe.samples
    return result


async def run_gateway(
    gateway: Gateway, upstream: str, plan: Plan, ready_timeout: float
) -> dict[str, Any]:
    server = gateway.server
    if shutil.which(server.argv[0]) is None:
        problem = f"{server.argv[0]} not found (--{gateway.name} PATH names another)"
        if gateway.name == "podium":
            problem += "; `make install` builds .venv"
        log(f"[{gateway.name}] SKIPPED: {problem}")
        return {"skipped": problem}
    before = upstream_count(upstream)
    started = time.perf_counter()
    server.start()
    try:
        problem = server.wait_ready(gateway.ready_url, gateway.token, ready_timeout)
        if problem is not None:
            tail = server.log_tail()
            log(f"[{gateway.name}] SKIPPED: {problem}\n{tail}")
            return {"skipped": problem, "log_tail": tail}
        ready_s = time.perf_counter() - started
        log(f"[{gateway.name}] ready in {ready_s:.1f} s (pid {server.pid})")
        probe = MemoryProbe(server.pid, plan.marks)
        probe.sample("at start")
        result = await measure(gateway.name, gateway.url, gateway.token, plan, upstream, probe)
        result["ready_s"] = round(ready_s, 1)
    finally:
        server.stop()
    forwarded = upstream_count(upstream) - before
    result["upstream_completions"] = forwarded
    if "requests_ok" in result and forwarded < result["requests_ok"]:
        log(
            f"[{gateway.name}] warning: {result['requests_ok']:,} answers but only "
            f"{forwarded:,} upstream calls: something answered without the upstream"
        )
    if "error" in result:
        result["log_tail"] = server.log_tail()
        log(f"[{gateway.name}] FAILED: {result['error']}\n{result['log_tail']}")
    return result


# -- the run ------------------------------------------------------------------------------


def versions(args: argparse.Namespace) -> dict[str, str | None]:
    def ask(python: Path, package: str) -> str | None:
        code = f"import importlib.metadata as m; print(m.version({package!r}))"
        try:
            out = subprocess.run(
                [str(python), "-c", code], capture_output=True, text=True, timeout=60
            )
        except OSError:
            return None
        return out.stdout.strip() or None

    def commit() -> str | None:
        try:
            head = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except OSError:
            return None
        return f"{head}{' + uncommitted changes in src/' if dirty else ''}" or None

    def loop_lib(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "uvloop (load generator, upstream)": loop_lib("uvloop"),
        "litellm": ask(Path(args.litellm).parent / "python", "litellm"),
        "podium": ask(Path(args.podium).parent / "python", "podium"),
        "podium_commit": commit(),
    }


def pinning(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None]:
    """(the gateway's CPUs, the harness's CPUs): one core each on a machine with two or more."""
    if args.no_pin or not hasattr(os, "sched_setaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="podium-bench-gateway-"))
    try:
        yield path
    finally:
        if keep:
            log(f"logs and configs kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


async def run(args: argparse.Namespace, plan: Plan, work: Path) -> dict[str, Any]:
    gateway_cpus, harness_cpus = pinning(args)
    upstream_port = args.upstream_port or free_port()
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    up = Server(
        "upstream",
        [sys.executable, str(HERE / "upstream.py"), "--port", str(upstream_port)],
        base_env(),
        work,
        work / "upstream.log",
        harness_cpus,
    )
    if harness_cpus:
        os.sched_setaffinity(0, harness_cpus)
    results: dict[str, dict[str, Any]] = {}
    up.start()
    try:
        problem = up.wait_ready(f"{upstream}/models", None, 20)
        if problem:
            raise SystemExit(f"the upstream did not start: {problem}\n{up.log_tail()}")
        log(f"[direct] upstream at {upstream} (pid {up.pid})")
        direct = f"{upstream}/chat/completions"
        results["direct"] = await measure("direct", direct, None, plan, upstream, None)
        for name in args.only or GATEWAYS:
            make = litellm_gateway if name == "litellm" else podium_gateway
            gateway = make(args, upstream, work, gateway_cpus)
            results[name] = await run_gateway(gateway, upstream, plan, args.ready_timeout)
            results[name]["command"] = " ".join(gateway.server.argv)
    finally:
        up.stop()
    return {"results": results, "pinning": {"gateway": gateway_cpus, "harness": harness_cpus}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: short phases, memory at 5k requests"
    )
    parser.add_argument(
        "--only", action="append", choices=GATEWAYS, help="measure this gateway only (repeatable)"
    )
    parser.add_argument(
        "--litellm",
        default=str(Path(sys.executable).parent / "litellm"),
        help="the LiteLLM CLI (default: the one beside this Python)",
    )
    parser.add_argument(
        "--podium",
        default=str(ROOT / ".venv" / "bin" / "podium"),
        help="the Podium CLI (default: .venv/bin/podium)",
    )
    parser.add_argument("--podium-db", help="Podium's store URL (default: SQLite in a temp home)")
    parser.add_argument("--rates", help="open-loop rates, comma-separated (e.g. 100,1000)")
    parser.add_argument("--open-seconds", type=float, help="seconds of each open-loop phase")
    parser.add_argument("--memory-requests", type=int, help="requests at the last memory sample")
    parser.add_argument("--upstream-port", type=int, help="the upstream's port (default: free)")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="gateway start-up, s")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the logs and rendered configs")
    args = parser.parse_args(argv)

    plan = Plan.quick() if args.quick else Plan()
    if args.rates:
        plan = replace(plan, rates=tuple(float(r) for r in args.rates.split(",")))
    if args.open_seconds:
        plan = replace(plan, open_seconds=args.open_seconds)
    if args.memory_requests:
        plan = replace(plan, memory_requests=args.memory_requests)
    loop = install_uvloop()

    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(
            f"warning: load average {load_before[0]:.2f} before the benchmark; other processes "
            "are competing for the CPUs and will inflate the numbers (best run on an idle machine)"
        )
    began = time.perf_counter()
    with workdir(args.keep) as work:
        outcome = asyncio.run(run(args, plan, work))
    wall = time.perf_counter() - began
    load_after = os.getloadavg()
    results = outcome["results"]

    table, records = markdown(rows(plan.unloaded, plan.rates, plan.marks, results), results)
    print(table)
    print()
    print(
        "Gateway cells: latency added over the direct row (the gateway's own latency in "
        "parentheses). Open-loop latencies are timed from each request's scheduled send. "
        f"Whole benchmark {wall:.0f} s on {os.cpu_count()} CPUs (load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after); pinning {outcome['pinning']}."
    )
    for name in GATEWAYS:
        if "skipped" in results.get(name, {}):
            print(f"{name} skipped: {results[name]['skipped']}")
        elif "error" in results.get(name, {}):
            print(f"{name} failed: {results[name]['error']}")
    if args.json:
        document = {
            "benchmark": "gateway",
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in load_after],
            },
            "versions": versions(args),
            "event_loop": loop,
            "pinning": {k: sorted(v) if v else None for k, v in outcome["pinning"].items()},
            "plan": asdict(plan) | {"quick": args.quick},
            "wall_seconds": round(wall, 1),
            "rows": records,
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(args.json)
        log(f"wrote {args.json}")
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
