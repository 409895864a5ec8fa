#!/usr/bin/env bash
# Fill .whl/ with the wheels pinned in bench/gpu_wheels.txt, for the offline GPU machine (CPython 3.12,
# manylinux x86_64, no pip index). Idempotent: a wheel already present is kept, other versions of a
# listed package are removed, so .whl/ holds exactly one version of each. Sdist-only packages
# (pylatexenc, deepspeed) are built here into py3-none-any wheels.
#
#   bash bench/gpu_wheels.sh            # fill / refresh .whl/
#   bash bench/gpu_wheels.sh --check    # only verify .whl/ against the list (exit 1 on a mismatch)
#
# .whl/ is git-ignored (.git/info/exclude): a device run must carry it explicitly. On the device:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIST="$REPO/bench/gpu_wheels.txt"
WHL="$REPO/.whl"
MAX_MB=30
# Building deepspeed imports torch, so builds use the project venv when there is one.
PY="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
CHECK_ONLY=0
[ "${1:-}" = "--check" ] && CHECK_ONLY=1

# wheel file names spell a project as lower-case with runs of -_. turned into _
norm() { echo "$1" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'; }

# name==version lines, comments and blanks dropped
mapfile -t PINS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$LIST" | grep -v '^$')
[ "${#PINS[@]}" -gt 0 ] || { echo "no pins in $LIST" >&2; exit 1; }
mkdir -p "$WHL"

# the wheel(s) of project $1 (normalized) in .whl/, any version
wheels_of() {
    local want="$1" f stem
    for f in "$WHL"/*.whl; do
        [ -e "$f" ] || continue
        stem="$(basename "$f")"
        [ "$(norm "${stem%%-*}")" = "$want" ] && echo "$f"
    done
    return 0
}

fail=0
for pin in "${PINS[@]}"; do
    case "$pin" in *==*) ;; *) echo "bad line (want name==version): $pin" >&2; exit 1 ;; esac
    name="${pin%%==*}"; ver="${pin##*==}"; key="$(norm "$name")"
    have=""
    for f in $(wheels_of "$key"); do
        fver="$(basename "$f" | cut -d- -f2)"
        if [ "$fver" = "$ver" ] && [ -z "$have" ]; then
            have="$f"
        elif [ "$CHECK_ONLY" = 1 ]; then
            echo "extra wheel for $name: $(basename "$f")" >&2; fail=1
        else
            echo "removing other version: $(basename "$f")"; rm -f "$f"
        fi
    done
    if [ -n "$have" ]; then
        continue
    fi
    if [ "$CHECK_ONLY" = 1 ]; then
        echo "missing: $pin" >&2; fail=1; continue
    fi
    echo "== $pin"
    # a binary for the device's interpreter and platform first; pure-python wheels match too
    if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHL" "$pin" 2>/tmp/gpu_wheels.err; then
        # sdist only: build it here. DS_BUILD_OPS=0 keeps deepspeed pure python (its ops JIT-build on use).
        echo "   no binary wheel; building from source"
        tmp="$(mktemp -d)"
        DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp" "$pin"
        for f in "$tmp"/*.whl; do
            case "$(basename "$f")" in
                *-py3-none-any.whl|*-py2.py3-none-any.whl) mv "$f" "$WHL/" ;;
                *) echo "built $(basename "$f") is not pure python; the device cannot use it" >&2
                   rm -rf "$tmp"; exit 1 ;;
            esac
        done
        rm -rf "$tmp"
    fi
    [ -n "$(wheels_of "$key")" ] || { echo "no wheel for $pin after download/build" >&2; exit 1; }
done

# anything not on the list would be installed on the device too: report it
for f in "$WHL"/*.whl; do
    [ -e "$f" ] || continue
    k="$(norm "$(basename "$f" | cut -d- -f1)")"
    listed=0
    for pin in "${PINS[@]}"; do [ "$(norm "${pin%%==*}")" = "$k" ] && listed=1; done
    [ "$listed" = 1 ] || { echo "not on the list (delete it or add it): $(basename "$f")" >&2; fail=1; }
done

# compiled wheels must be for CPython 3.12 (the device), not this machine's interpreter
for f in "$WHL"/*.whl; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in
        *-py3-none-any.whl|*-py2.py3-none-any.whl|*-py312-none-any.whl|*-cp312-*.whl|*-cp3*-abi3-*.whl) ;;
        *) echo "wrong interpreter tag for the device (CPython 3.12): $(basename "$f")" >&2; fail=1 ;;
    esac
done

total_kb="$(du -ck "$WHL"/*.whl | tail -1 | cut -f1)"
n="$(ls "$WHL"/*.whl | wc -l)"
echo "$n wheels, $((total_kb / 1024)) MB in $WHL (limit $MAX_MB MB)"
[ "$total_kb" -le $((MAX_MB * 1024)) ] || { echo "over $MAX_MB MB" >&2; fail=1; }
exit "$fail"
