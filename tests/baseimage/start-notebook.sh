#!/bin/bash
# As in docker-stacks: start Jupyter through start.sh, passing any extra arguments on.
exec /usr/local/bin/start.sh jupyter server "$@"
