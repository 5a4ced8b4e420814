#!/bin/bash
# As in docker-stacks: source *.sh hooks, run executable ones, log failures and go on.
# A sourced hook that calls `exit` stops the container, which is how a hook refuses to start Jupyter.
set +e
for hook in "$1"/*; do
    [ -e "$hook" ] || continue
    case "$hook" in
        *.sh) echo "Sourcing shell script: $hook"; source "$hook" || echo "$hook has failed, continuing execution" ;;
        *) if [ -x "$hook" ]; then echo "Running executable: $hook"; "$hook" || echo "$hook has failed, continuing execution"; fi ;;
    esac
done
set -e
