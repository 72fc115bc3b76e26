"""What every runtime holds: its stores, its functions, its executor and its transport.

:class:`Core` builds them from a runtime's arguments, opens them together and closes
them together. :class:`EngineOptions` are the options every runtime shares, declared
once: the façades take them as ``**options``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

from faasflow.callables import use_thread_pool
from faasflow.config import DEFAULT_MAX_BODY_SIZE, default_state_url
from faasflow.engine.definition import Define
from faasflow.engine.executor import Executor
from faasflow.engine.settings import Settings
from faasflow.errors import ConfigurationError
from faasflow.functions.registry import FunctionRegistry
from faasflow.stores.base import DataStore, StateStore
from faasflow.stores.memory import MemoryDataStore, MemoryStateStore
from faasflow.stores.urls import data_store_from_url, state_store_from_url
from faasflow.transports.base import Transport

__all__ = ["Core", "EngineOptions", "Options"]


class EngineOptions(TypedDict, total=False):
    """The options every runtime takes (:class:`Options` says what each means)."""

    functions: Mapping[str, Callable[..., Any]] | None
    functions_dir: str | Path | None
    gateway: str | None
    threads: int
    default_timeout: float
    result_ttl: float
    failed_ttl: float
    resend_after: float | None
    stall_after: float | None
    sweep_interval: float | None
    lease_ttl: float
    store_patience: float
    max_claims: int | None
    max_input_size: int


@dataclass(frozen=True)
class Options:
    """:class:`EngineOptions` with their defaults.

    Attributes:
        functions: names used in ``apply`` mapped to local callables ``(bytes) -> bytes``.
        functions_dir: a folder of OpenFaaS python3-http handler folders.
        gateway: an OpenFaaS gateway URL for every other function name.
        threads: worker threads for synchronous user callables.
        default_timeout: seconds a function call may take when its operation sets none.
        result_ttl: seconds a finished request's result and history are kept.
        failed_ttl: seconds a failed request keeps its intermediate state for redrive.
        resend_after: seconds without progress after which a running request with no
            live node has its pending hops sent again; ``None`` never.
        stall_after: seconds without progress after which a running request with no
            live node is failed; ``None`` never.
        sweep_interval: seconds between sweeps; ``None`` never.
        lease_ttl: seconds a running step's claim lasts unless its process renews it:
            how soon a step whose process died is taken over (sooner when its pid, on
            this host, proves the process gone).
        store_patience: seconds a step whose function has run keeps trying to record
            its result while the state store fails, before giving the step up (its
            function then runs again).
        max_claims: times a step is taken over from a process that died running it
            before its request fails instead; ``None``, no limit.
        max_input_size: the largest input a new request may have, in bytes (the same
            limit as the flow server's ``max_body_size``, 16 MiB by default): a larger
            one is refused before anything is stored.
    """

    functions: Mapping[str, Callable[..., Any]] | None = None
    functions_dir: str | Path | None = None
    gateway: str | None = None
    threads: int = 32
    default_timeout: float = 30.0
    result_ttl: float = 7 * 24 * 3600.0
    failed_ttl: float = 7 * 24 * 3600.0
    resend_after: float | None = 30.0
    stall_after: float | None = 3600.0
    sweep_interval: float | None = 60.0
    lease_ttl: float = 30.0
    store_patience: float = 60.0
    max_claims: int | None = None
    max_input_size: int = DEFAULT_MAX_BODY_SIZE

    @classmethod
    def of(cls, options: EngineOptions) -> Options:
        """``options`` with the defaults of what they leave out.

        Raises:
            ConfigurationError: an option no runtime knows.
        """
        unknown = sorted(set(options) - {item.name for item in fields(cls)})
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**options)


class Core:
    """A runtime's parts, opened and closed together.

    Args:
        define: ``define(flow, context)``.
        flow_name: the flow's name.
        state_store: a :class:`StateStore`, a store URL, or ``None`` for the default
            (:func:`faasflow.config.default_state_url`).
        data_store: a :class:`DataStore` or a URL; the state store's URL by default.
        transport: how hops travel.
        options: the shared options.
        runs_hops: whether this runtime takes hops (not a client that only sends them).
    """

    def __init__(
        self,
        define: Define,
        *,
        flow_name: str,
        state_store: StateStore | str | None,
        data_store: DataStore | str | None,
        transport: Transport,
        options: Options,
        runs_hops: bool = True,
    ) -> None:
        url = None
        if state_store is None or isinstance(state_store, str):
            url = state_store or default_state_url()
            state_store = state_store_from_url(url)
        if data_store is None:
            data_store = data_store_from_url(url) if url else _memory_data_for(state_store)
        elif isinstance(data_store, str):
            data_store = data_store_from_url(data_store)
        self.flow_name = flow_name
        self.state = state_store
        self.data = data_store
        self.options = options
        self.runs_hops = runs_hops
        self.registry = FunctionRegistry.build(options.functions, options.functions_dir,
                                               options.gateway)
        self.transport = transport
        self._threads = ThreadPoolExecutor(max_workers=options.threads,
                                           thread_name_prefix="faasflow")
        self.executor = Executor(
            flow_name=flow_name,
            define=define,
            state=self.state,
            data=self.data,
            transport=transport,
            caller=self.registry,
            settings=Settings(
                default_timeout=options.default_timeout,
                result_ttl=options.result_ttl,
                lease_ttl=options.lease_ttl,
                store_patience=options.store_patience,
                max_claims=options.max_claims,
                resend_after=options.resend_after,
                stall_after=options.stall_after,
                failed_ttl=options.failed_ttl,
            ),
        )
        self.started = False

    @contextmanager
    def user_threads(self) -> Iterator[None]:
        """Run the synchronous user callables started in this context on this runtime's
        threads."""
        with use_thread_pool(self._threads):
            yield

    async def start(self) -> None:
        """Open the stores and the transport (taking hops, if this runtime runs them)."""
        if self.started:
            return
        self.started = True
        try:
            await self.state.open()
            await self.data.open()
            if self.runs_hops:
                self.executor.claims.start()
            self.transport.on_undeliverable = self.executor.undeliverable
            with self.user_threads():
                # Worker tasks copy this context, so their sync callables use our threads.
                await self.transport.start(self.executor.handle)
        except BaseException:
            await self.close()  # release whatever did open
            raise

    async def close(self) -> None:
        """Stop the transport; release stores, connections and threads."""
        if not self.started:
            return
        self.started = False
        await self.transport.close()
        # After the transport: hops cancelled while closing release their claims.
        await self.executor.claims.stop()
        await self.registry.close()
        await self.state.close()
        await self.data.close()
        self._threads.shutdown(wait=False, cancel_futures=True)


def _memory_data_for(state: StateStore) -> DataStore:
    if isinstance(state, MemoryStateStore):
        return MemoryDataStore()
    raise ConfigurationError("pass data_store= too when state_store= is a store object")
