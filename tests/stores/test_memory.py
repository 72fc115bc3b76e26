"""The store contract against the in-memory reference stores."""

from __future__ import annotations

import pytest

from faasflow.stores.base import DataStore, StateStore
from faasflow.stores.memory import MemoryDataStore, MemoryStateStore

from .contract import DataStoreContract, StateStoreContract


class TestMemoryState(StateStoreContract):
    @pytest.fixture
    async def state_store(self) -> StateStore:
        return MemoryStateStore()


class TestMemoryData(DataStoreContract):
    @pytest.fixture
    async def data_store(self) -> DataStore:
        return MemoryDataStore()
