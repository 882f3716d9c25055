"""The quick start config (examples/quickstart.toml) for a benchmark run: storage at URL with
signed chain checkpoints (key from AUDITFLOW_CHAIN_KEY), listening on PORT, lookup files found
from anywhere; with PIPELINE=none, its stages removed (the store path alone).

    python3 bench/quickstart_config.py SRC DST URL PORT      # PIPELINE=quickstart|none
"""
import os
import sys

src, dst, url, port = sys.argv[1:]
text = open(src).read()
if os.environ.get("PIPELINE") == "none":
    # Everything up to the first stage: server, auth, storage, pipeline name.
    text = text.split("[[stages]]")[0]
# `[storage.chain]` goes right after the storage url, inside `[storage]`.
for old, new in [('url = "sqlite://quickstart.db"',
                  f'url = "{url}"\n\n[storage.chain]\nsigning_key = {{ env = "AUDITFLOW_CHAIN_KEY" }}'),
                 ('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')]:
    if old not in text:
        sys.exit(f"examples/quickstart.toml no longer contains {old!r}")
    text = text.replace(old, new)
# Lookup files are relative to the config file, which this copy no longer sits beside.
text = text.replace('path = "lookups/', f'path = "{os.path.dirname(os.path.abspath(src))}/lookups/')
with open(dst, "w") as f:
    f.write(text)
