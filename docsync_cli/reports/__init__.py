"""The read-only report commands: status, explain, check, search and verify (one module each), the findability
probe verify and explain share (:mod:`.probe`), and the helpers they all share (:mod:`.shared`). They stand on the
clients, the state and the planner's pure decisions, never on the engine or the reconciler, and they print
nothing themselves: they return plain values (``collect_status``'s JSON-able data, ``SearchResult``,
``VerifyReport``) or write lines to a :class:`~.shared.Lines` as they go (explain, check), which the CLI layer
(``ui.py``, ``ui_reports.py``) renders (``tests/unit/test_import_layers.py``)."""
