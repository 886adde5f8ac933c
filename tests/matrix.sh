#!/usr/bin/env bash
# Run the test suite under several Python versions, each in its own virtualenv.
#
#   tests/matrix.sh                          # 3.8 to 3.13, this tree installed
#   tests/matrix.sh 3.8 3.13                 # just these
#   tests/matrix.sh --wheel dist/X.whl 3.8   # test that built wheel instead
#   tests/matrix.sh --wheel dist/X.whl --reuse 3.8   # as installed before
#
# The interpreter for 3.X is $(pyenv root)/versions/3.X.*/bin/python (the newest
# patch release) or python3.X on PATH; a version with neither is skipped.  Each
# run gets .venv-3.X at the top of the tree, with ".[test]" installed, or the
# wheel with its test extra.  With --wheel the suite imports the installed
# module, not dhis2_messages.py of this tree (pytest --import-mode=append, so the
# tree comes after site-packages), and the run fails if pytest's header shows
# another file.  --reuse installs nothing, e.g. after pinning old dependencies.
# Exit status: 0 when every run that was possible passed, 1 otherwise.

set -u
wheel=""
reuse=0
while [ "$#" -gt 0 ]; do
    case $1 in
        --wheel) wheel=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
        --reuse) reuse=1; shift ;;
        *) break ;;
    esac
done
cd "$(dirname "$0")/.." || exit 2

if [ "$#" -gt 0 ]; then
    versions=("$@")
else
    versions=(3.8 3.9 3.10 3.11 3.12 3.13)
fi

# Print the path of an interpreter that really is Python $1, or nothing.
find_python() {
    local version=$1 candidate found=""
    local candidates=()
    if command -v pyenv >/dev/null 2>&1; then
        local root
        root=$(pyenv root 2>/dev/null)
        if [ -n "$root" ]; then
            # "3.1" must not pick 3.10: only 3.X exactly or 3.X.<patch>.
            while IFS= read -r candidate; do
                candidates+=("$candidate")
            done < <(ls -d "$root/versions/$version" "$root/versions/$version".* 2>/dev/null | sort -rV)
        fi
    fi
    for candidate in "${candidates[@]+"${candidates[@]}"}"; do
        candidate="$candidate/bin/python"
        if [ -x "$candidate" ]; then
            found=$candidate
            break
        fi
    done
    if [ -z "$found" ]; then
        found=$(command -v "python$version" 2>/dev/null || true)
    fi
    if [ -n "$found" ] && [ "$("$found" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$version" ]; then
        echo "$found"
    fi
}

declare -a summary
failed=0
for version in "${versions[@]}"; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        echo "== Python $version: not found (pyenv or python$version on PATH), skipped"
        summary+=("$(printf '%-5s skipped: no interpreter' "$version")")
        continue
    fi
    full=$("$python" -c 'import platform; print(platform.python_version())')
    venv=".venv-$version"
    log="$venv/pytest.log"
    echo "== Python $full ($python) in $venv"
    if [ ! -x "$venv/bin/python" ] && ! "$python" -m venv "$venv"; then
        summary+=("$(printf '%-5s FAILED: could not create %s' "$version" "$venv")")
        failed=1
        continue
    fi
    target=".[test]"
    if [ -n "$wheel" ]; then
        target="$wheel[test]"
    fi
    if [ "$reuse" -eq 0 ] && ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$target"; then
        summary+=("$(printf '%-5s FAILED: pip install "%s" failed' "$version" "$target")")
        failed=1
        continue
    fi
    started=$SECONDS
    if [ -n "$wheel" ]; then
        # The pytest script, not python -m pytest, which would put this tree first on sys.path.
        "$venv/bin/pytest" -p no:cacheprovider --import-mode=append >"$log" 2>&1
        status=$?
        if [ "$status" -eq 0 ] && ! grep -q "^dhis2_messages .* from $PWD/$venv/lib/.*/site-packages/dhis2_messages.py$" "$log"; then
            grep "^dhis2_messages " "$log"
            echo "the suite did not test the installed wheel (see the line above)"
            status=3
        fi
        grep -m 1 "^dhis2_messages " "$log"
    else
        "$venv/bin/python" -m pytest -p no:cacheprovider >"$log" 2>&1
        status=$?
    fi
    result=$(grep -E '^[=]* ?[0-9]+ (passed|failed|error)|no tests ran' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
    if [ "$status" -eq 0 ]; then
        summary+=("$(printf '%-5s passed  Python %-8s %s (%ss)' "$version" "$full" "$result" "$((SECONDS - started))")")
    else
        tail -n 40 "$log"
        summary+=("$(printf '%-5s FAILED  Python %-8s %s (exit %s; see %s)' "$version" "$full" "$result" "$status" "$log")")
        failed=1
    fi
done

echo
echo "Summary:"
for line in "${summary[@]}"; do
    echo "  $line"
done
exit "$failed"
