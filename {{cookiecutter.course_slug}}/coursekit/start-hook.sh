# coursekit: before Jupyter starts, fetch and verify the course data into ~/data, then merge the
# course's notebooks into ~/notebooks with nbgitpuller (a student's own edits win over updates).
# docker-stacks' start.sh sources this file. Jupyter starts whatever the data does: a student with one data set
# missing can still work, and `coursekit test` and `check` report what failed (the lines above this one).
if ! timeout 3600 python3 /usr/local/share/coursekit/data.py fetch /usr/local/share/coursekit/data.json "${HOME}/data"; then
    echo "coursekit: WARNING: some course data is missing or does not match its sha256 (see above); starting Jupyter anyway" >&2
fi
if [ -e "${HOME}/notebooks" ] && [ ! -d "${HOME}/notebooks/.git" ]; then
    echo "coursekit: ~/notebooks is not a copy of the course notebooks; leaving it untouched"
elif gitpuller /opt/course/notebooks.git main "${HOME}/notebooks" > /tmp/coursekit-notebooks.log 2>&1; then
    echo "coursekit: ~/notebooks is up to date with the course"
else
    echo "coursekit: WARNING: could not merge the course's notebook updates; your files are unchanged (details: /tmp/coursekit-notebooks.log)"
fi
# Jupyter migrates IPython 3 settings at every start until ~/.jupyter/migrated exists, and that needs room in the
# home: marked now, while there is room, so a student who later fills their home can still start and clean up.
[ -e "${HOME}/.jupyter/migrated" ] || { mkdir -p "${HOME}/.jupyter" && date -u +%FT%TZ > "${HOME}/.jupyter/migrated"; } 2> /dev/null || true
