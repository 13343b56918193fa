"""The executor of our asset jobs: a run's steps in its own process, up to two at a time in
threads.

Dagster's in-process executor runs one step after another. Our steps spend much of their time
waiting on PostgreSQL (reads, COPY, index upkeep) or in NumPy, which both let another thread
run, so a daily run that starts the next ready step while one waits finishes sooner on the same
two cores. Its multiprocess executor would instead start a process per step, and each pays the
few seconds of importing Dagster, pandas and the definitions again.

A backfill's steps each hold a chunk of the book in memory; chunks are sized for two steps in
flight (`assets.common.POSITION_DAYS_PER_CHUNK`), so running two at once does not raise the run's
peak memory. Which ready step starts first follows Dagster's `dagster/priority` op tag
(`assets.common.START_EARLY`).

Steps are started, their events handled and the run's bookkeeping kept by the calling thread,
as in Dagster's executors (`ActiveExecution`); a worker thread only runs a step's event sequence
and hands each event back. Pools (`market_data_api`, `symbol_tables`) still admit one step of
theirs at a time.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance, Field, Int, JobDefinition, executor
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import (
    PlanExecutionContext,
    PlanOrchestrationContext,
    StepExecutionContext,
)
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.execute_in_process import core_execute_in_process, merge_run_tags
from dagster._core.execution.execute_in_process_result import ExecuteInProcessResult
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.execute_plan import (
    _trigger_hook,
    dagster_event_sequence_for_step,
)
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor
from dagster._core.executor.in_process import inprocess_execution_iterator
from dagster._core.executor.init import InitExecutorContext

from sigmasight_pipeline.run_reads import kept_for_run

MAX_CONCURRENT_STEPS = 2  # this machine's cores; more threads only contend for them
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class _StepDone:
    """A worker's last word on a step: its event sequence ended (or raised `error`)."""

    step_key: str
    error: BaseException | None = None


class StepThreadsExecutor(Executor):
    """Runs a run's ready steps in up to `max_concurrent` threads of its process."""

    def __init__(
        self,
        retries: RetryMode,
        max_concurrent: int = MAX_CONCURRENT_STEPS,
    ):
        self._retries = retries
        self.max_concurrent = max_concurrent

    @property
    def retries(self) -> RetryMode:
        return self._retries

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        threads = self.max_concurrent
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in process (pid: {os.getpid()}), up to {threads} at a time",
            event_specific_data=EngineEventData.in_process(
                os.getpid(), execution_plan.step_keys_to_execute
            ),
        )

        def iterator(
            job_context: PlanExecutionContext, execution_plan: ExecutionPlan
        ) -> Iterator[DagsterEvent]:
            with kept_for_run(job_context.run_id):  # reads the run's steps share (run_reads)
                if threads == 1:  # exactly Dagster's in-process execution
                    yield from inprocess_execution_iterator(job_context, execution_plan)
                else:
                    yield from _threaded_plan_iterator(
                        job_context, execution_plan, threads, self.retries
                    )

        yield from ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=iterator,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
            ),
        )


# Worker threads live as long as the process: a thread keeps its own database reader
# (`tables._reader`), which a pool made per run would leave behind with each run.
_workers: ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()


def _worker_pool(threads: int) -> ThreadPoolExecutor:
    global _workers
    with _workers_lock:
        if _workers is None or _workers._max_workers < threads:
            _workers = ThreadPoolExecutor(threads, thread_name_prefix="step")
        return _workers


def _run_step(step_context: StepExecutionContext, events: queue.SimpleQueue) -> None:
    key = step_context.step.key
    try:
        for event in dagster_event_sequence_for_step(step_context):
            events.put(event)
    except BaseException as error:  # handed to the calling thread, which raises it
        events.put(_StepDone(key, error))
    else:
        events.put(_StepDone(key))


def _threaded_plan_iterator(
    job_context: PlanExecutionContext, plan: ExecutionPlan, threads: int, retries: RetryMode
) -> Iterator[DagsterEvent]:
    """Dagster's `inner_plan_execution_iterator` with up to `threads` steps in flight."""
    compute_log_manager = job_context.instance.compute_log_manager
    step_keys = [step.key for step in plan.get_steps_to_execute_in_topo_order()]
    events: queue.SimpleQueue = queue.SimpleQueue()
    running: dict[str, tuple[StepExecutionContext, list[DagsterEvent]]] = {}
    with ExitStack() as stack:
        concurrency = stack.enter_context(
            InstanceConcurrencyContext(job_context.instance, job_context.dagster_run)
        )
        active = stack.enter_context(
            ActiveExecution(
                plan,
                retry_mode=retries,
                max_concurrent=threads,
                instance_concurrency_context=concurrency,
                step_dependency_config=job_context.step_dependency_config,
            )
        )
        log_key = compute_log_manager.build_log_key_for_run(
            job_context.run_id, create_compute_log_file_key()
        )
        log_context = stack.enter_context(compute_log_manager.capture_logs(log_key))
        yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)

        try:
            yield from _steps_in_threads(job_context, active, threads, events, running)
        except BaseException:
            _drain(events, running)  # a step's thread cannot be stopped, only awaited
            raise


def _steps_in_threads(
    job_context: PlanExecutionContext,
    active: ActiveExecution,
    threads: int,
    events: queue.SimpleQueue,
    running: dict[str, tuple[StepExecutionContext, list[DagsterEvent]]],
) -> Iterator[DagsterEvent]:
    while not active.is_complete or running:
        if not active.is_complete:
            for step in active.get_steps_to_execute(limit=threads - len(running)):
                step_context = job_context.for_step(step, active.get_known_state())
                running[step.key] = (step_context, [])
                _worker_pool(threads).submit(_run_step, step_context, events)
            yield from active.concurrency_event_iterator(job_context)
        # What is not running waits for a retry's delay or a pool's slot: look again then, and
        # at least every POLL_SECONDS (Dagster's own in-process loop spins while a pool is full:
        # the interval it gives for a pending claim is never above 0).
        wait = active.sleep_interval()
        if not running:
            yield from active.plan_events_iterator(job_context)  # steps skipped or abandoned
            time.sleep(max(wait, POLL_SECONDS))
            continue
        try:
            item = events.get(timeout=max(wait, POLL_SECONDS))
        except queue.Empty:
            continue
        if isinstance(item, _StepDone):
            step_context, step_events = running.pop(item.step_key)
            if item.error is not None:
                raise item.error
            active.verify_complete(job_context, item.step_key)
            for event in active.plan_events_iterator(job_context):
                step_events.append(event)
                yield event
            yield from _trigger_hook(step_context, step_events)
            continue
        running[item.step_key][1].append(item)
        yield item
        active.handle_event(item)


def execute_in_process(
    job: JobDefinition,
    instance: DagsterInstance,
    asset_selection: Sequence[AssetKey],
    tags: Mapping[str, str],
    run_id: str,
    run_config: Mapping[str, object],
) -> ExecuteInProcessResult:
    """`job.execute_in_process(..., raise_on_error=False)` with this module's executor: Dagster's
    own always puts its in-process executor in place of the job's."""
    ephemeral = job.as_ephemeral_job(
        resource_defs={}, input_values={}, asset_selection=asset_selection
    ).with_executor_def(step_threads_executor)
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral),
        run_config=run_config,
        instance=instance,
        output_capturing_enabled=True,
        raise_on_error=False,
        run_tags=merge_run_tags(
            job_def=job,
            partition_key=None,
            tags=tags,
            asset_selection=asset_selection,
            instance=instance,
            run_config=run_config,
        ),
        run_id=run_id,
        asset_selection=frozenset(asset_selection),
    )


def _drain(events: queue.SimpleQueue, running: dict) -> None:
    """Wait for the other running steps to end before an error leaves the run."""
    while running:
        item = events.get()
        if isinstance(item, _StepDone):
            running.pop(item.step_key, None)


@executor(
    name="step_threads",
    config_schema={
        "max_concurrent": Field(Int, default_value=MAX_CONCURRENT_STEPS, is_required=False),
    },
)
def step_threads_executor(init_context: InitExecutorContext) -> StepThreadsExecutor:
    config = init_context.executor_config
    return StepThreadsExecutor(
        retries=RetryMode.ENABLED,
        max_concurrent=config["max_concurrent"],
    )
