#!/usr/bin/env python3
# As in docker-stacks (images/base-notebook/start-notebook.py): the image's command. Everything goes through
# start.sh (hooks, then the command); the Jupyter subcommand comes from DOCKER_STACKS_JUPYTER_CMD (lab by
# default), and NOTEBOOK_ARGS holds extra arguments, split as a shell would.
import os
import shlex
import sys

command = ["/usr/local/bin/start.sh"]
if os.environ.get("JUPYTERHUB_API_TOKEN"):
    command.append("jupyterhub-singleuser")
else:
    command += ["jupyter", os.environ.get("DOCKER_STACKS_JUPYTER_CMD", "lab")]
if "NOTEBOOK_ARGS" in os.environ:
    command += shlex.split(os.environ["NOTEBOOK_ARGS"])
command += sys.argv[1:]
os.execvp(command[0], command)
