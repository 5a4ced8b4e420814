#!/bin/bash
# The parts of docker-stacks' start.sh a course image relies on: hooks, then the command.
set -e
cmd=("$@")
[ ${#cmd[@]} -gt 0 ] || cmd=(bash)
source /usr/local/bin/run-hooks.sh /usr/local/bin/start-notebook.d
source /usr/local/bin/run-hooks.sh /usr/local/bin/before-notebook.d
echo "Executing the command: ${cmd[*]}"
exec "${cmd[@]}"
