#!/usr/bin/env bash
# Soak benchmark (issue 17, item 3; not in CI): drawbridge's full pipeline under mixed
# traffic at a fixed rate for MINUTES, then 10,000 idle event streams and 10,000 idle
# connections. See benches/soak/soak.py for what is sent and checked, and
# docs/RELIABILITY.md ("Soak") for the method and the figures.
#
# Usage: benches/soak/run.sh [MINUTES] [options]     (MINUTES default 10)
#   --rate R       requests per second of the soak (default 150)
#   --warmup S     seconds of the soak before growth counts (default 120)
#   --idle N       idle streams and idle connections (default 10000; 0 skips the idle runs)
#   --no-soak      only the idle runs
#   --no-build     use the drawbridge already in $CARGO_TARGET_DIR/release
#   --out DIR      results: soak.csv, soak.png, soak.md, idle.md (default benches/soak/last-run)
#   -h, --help     this text
# Environment: CARGO_TARGET_DIR (default <repo>/target/bench, shared with benches/load).
#
# The machine is shared: run it as `nice -n 10 benches/soak/run.sh`. It needs python3
# (3.11) with venv; the Python packages of requirements.txt are installed once into
# benches/soak/.venv. The idle runs need 2 descriptors per stream in the gateway and 2
# in this script: the limit is raised as far as allowed (see below).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
minutes=10 rate=150 warmup=120 idle=10000 soak=1 build=1 out="$here/last-run"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "soak/run.sh: $*" >&2; exit 1; }
while (($#)); do
    case "$1" in
    --rate) rate="${2:?}"; shift 2 ;;
    --warmup) warmup="${2:?}"; shift 2 ;;
    --idle) idle="${2:?}"; shift 2 ;;
    --no-soak) soak=0; shift ;;
    --no-build) build=0; shift ;;
    --out) out="${2:?}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    [0-9]*) minutes="$1"; shift ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $minutes =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "MINUTES must be a number"
[[ $rate =~ ^[1-9][0-9]*$ ]] || die "--rate must be a positive whole number"
[[ $idle =~ ^[0-9]+$ ]] || die "--idle must be a whole number"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup must be a whole number of seconds"

# Descriptors: an idle stream holds 2 in the gateway (which inherits the limit) and 2
# here. Raising the hard limit needs root with CAP_SYS_RESOURCE; without it soak.py opens
# as many streams as the limit allows and says so.
want=$((4 * idle + 4096))
if (($(ulimit -Hn) < want)); then
    ulimit -Hn "$want" 2>/dev/null ||
        echo "soak/run.sh: cannot raise the descriptor hard limit $(ulimit -Hn) to $want:" \
            "the idle runs may open fewer than $idle streams" >&2
fi
ulimit -n "$(ulimit -Hn)"

# Python packages, once (the stamp is the requirements file they came from).
venv="$here/.venv"
if ! cmp -s "$here/requirements.txt" "$venv/requirements.stamp" 2>/dev/null; then
    echo "installing $here/requirements.txt into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.stamp"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/bench}"
if ((build)); then
    (cd "$repo" && cargo build --release --locked --bin drawbridge)
fi
bin="$CARGO_TARGET_DIR/release/drawbridge"
[[ -x $bin ]] || die "no drawbridge at $bin (build without --no-build)"

mkdir -p "$out"
rc=0
if ((soak)); then
    "$venv/bin/python" "$here/soak.py" soak --drawbridge "$bin" --out "$out" \
        --minutes "$minutes" --rate "$rate" --warmup "$warmup" || rc=1
fi
if ((idle > 0)); then
    "$venv/bin/python" "$here/soak.py" idle --drawbridge "$bin" --out "$out" --idle "$idle" || rc=1
fi
echo "results in $out" >&2
exit "$rc"
