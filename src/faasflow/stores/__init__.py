"""Where a flow keeps its state and data.

Public: :mod:`~faasflow.stores.base` (the contracts), :mod:`~faasflow.stores.urls`
(stores from URLs) and one module per backend — :mod:`~faasflow.stores.memory`,
:mod:`~faasflow.stores.sqlite`, :mod:`~faasflow.stores.redis`,
:mod:`~faasflow.stores.etcd`, :mod:`~faasflow.stores.postgres`,
:mod:`~faasflow.stores.s3`, :mod:`~faasflow.stores.filesystem`. Modules whose names start
with an underscore are the backends' internals.
"""
