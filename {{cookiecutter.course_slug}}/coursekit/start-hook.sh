# coursekit: before Jupyter starts, fetch and verify the course data into ~/data, then bring
# the course notebooks into ~/notebooks without touching files the student already has.
# docker-stacks' start.sh sources this file; `exit` here stops the container instead of starting Jupyter.
if ! python3 /usr/local/share/coursekit/data.py fetch /usr/local/share/coursekit/data.json "${HOME}/data"; then
    echo "coursekit: ERROR: course data is missing or does not match its sha256 (see above); not starting Jupyter" >&2
    exit 1
fi
mkdir -p "${HOME}/notebooks" && cp -Rn /opt/course/notebooks/. "${HOME}/notebooks/"
