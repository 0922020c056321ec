//! JSON byte-compatible with Python's `json.dumps(obj, sort_keys=True)` (D4). Not implemented yet.
