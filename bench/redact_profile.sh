#!/usr/bin/env bash
# Where the redact stage's time goes, Wasm next to native: samples each case of the redact
# bench with `perf` (plugin functions named through wasmtime's perf map) and splits the time
# into the redaction code itself, the guest's allocator, and everything else (for Wasm: the
# host lowering and lifting the batch; for native: cloning and dropping the events).
#
#   bench/redact_profile.sh            # cases: native wasm wasm_no_epoch
#   bench/redact_profile.sh native wasm wasm_v10 wasm10_passthrough wasm11_touch_two   # + floors
#
# Needs `perf` (Debian: linux-perf). Per-case times come from a criterion run of the same
# binary right after the profiles, so shares and times are from one build on one machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(native wasm wasm_no_epoch)
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }

bin=$(cargo bench -p auditflow-bench --bench redact --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "redact":
        print(m["executable"])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for case in "${cases[@]}"; do
    AUDITFLOW_WASM_PROFILER=perfmap perf record -q -F 3000 -o "$out/$case.data" \
        "$bin" --bench --profile-time 8 "redact_batch_256/$case\$" >/dev/null 2>&1
    perf report -i "$out/$case.data" --no-children --stdio -g none --sort dso,symbol 2>/dev/null \
        >"$out/$case.txt"
done
"$bin" --bench --warm-up-time 2 --measurement-time 6 "redact_batch_256/($(IFS='|'; echo "${cases[*]}"))\$" \
    2>/dev/null | tee "$out/times.txt" | grep -E '^redact|time:' || true

python3 - "$out" "${cases[@]}" <<'EOF'
import re, sys
out, cases = sys.argv[1], sys.argv[2:]
# Median time per case, from criterion's "time: [low median high]" line.
times, name = {}, None
for line in open(f"{out}/times.txt"):
    m = re.match(r"redact_batch_256/(\S+)", line)
    if m:
        name = m.group(1)
    m = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+)", line)
    if m and name:
        value, unit = float(m.group(1)), m.group(2)
        times[name] = value * {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}[unit]
        name = None
ALLOC = ("dlmalloc", "dlfree", "dlrealloc", "dispose_chunk", "__rdl_", "__rust_alloc",
         "__rust_dealloc", "__rust_realloc", "cabi_realloc", "cabi_dealloc")
CODE = ("redact::", "memchr::", "sha2::", "hmac::", "digest::")
print(f"\n{'case':<18}{'µs/batch':>10}{'redaction code':>17}{'guest alloc':>13}{'rest':>9}")
code_us, funcs = {}, {}
for case in cases:
    share = {"code": 0.0, "alloc": 0.0, "rest": 0.0}
    for line in open(f"{out}/{case}.txt"):
        m = re.match(r"\s*([\d.]+)%\s+(.+?)\s+\[.\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
        jit = dso.startswith("[JIT]")
        if any(k in sym for k in CODE) or (jit and "memcmp" in sym):
            share["code"] += pct
            name = re.sub(r"::h[0-9a-f]{16}$", "", sym.split()[0])
            funcs.setdefault(case, {}).setdefault(name, 0.0)
            funcs[case][name] += pct
        elif jit and any(k in sym for k in ALLOC):
            share["alloc"] += pct
        else:
            share["rest"] += pct
    total = sum(share.values()) or 1.0
    t = times.get(case, float("nan"))
    us = {k: t * v / total for k, v in share.items()}
    code_us[case] = us["code"]
    funcs[case] = {k: t * v / total for k, v in funcs.get(case, {}).items()}
    print(f"{case:<18}{t:>10.0f}{us['code']:>11.0f} µs{us['alloc']:>10.0f} µs{us['rest']:>6.0f} µs")
if "native" in code_us:
    for case in cases:
        if case != "native" and code_us.get(case):
            print(f"redaction code, {case} / native: {code_us[case] / code_us['native']:.2f}x")
    # A lower bound on wasm / native: the boundary (a plugin that does next to nothing) plus
    # guest redaction code no faster than the native build's. `wasm10_passthrough` moves whole
    # records in and out (contract 1.0); `wasm11_touch_two` packs two fields and takes one
    # patch per event back (contract 1.1).
    native = times.get("native")
    for floor in ("wasm10_passthrough", "wasm11_touch_two"):
        if native and floor in times:
            bound = (times[floor] + code_us["native"]) / native
            print(f"lower bound on wasm / native via {floor}: "
                  f"({times[floor]:.0f} + {code_us['native']:.0f}) / {native:.0f} = {bound:.2f}x")
    # The hottest redaction functions, each next to its native twin.
    for case in cases:
        if case == "native" or not funcs.get(case):
            continue
        print(f"\n{'hottest in ' + case:<52}{case:>10}{'native':>10}{'ratio':>8}")
        for name, us in sorted(funcs[case].items(), key=lambda kv: -kv[1])[:10]:
            native = funcs["native"].get(name, 0.0)
            ratio = f"{us / native:.2f}x" if native > 0 else "-"
            print(f"{name[:50]:<52}{us:>7.1f} µs{native:>7.1f} µs{ratio:>8}")
EOF
